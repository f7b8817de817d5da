"""The EventStore on Redis: one stream per session, so any progress replica serves any session.

Keys (after the configured namespace, e.g. `vidsynth:`):
- `progress:<session>:events`: a stream whose entry ids are `<seq>-0`, so a replay from a
  seq is one XRANGE and a live read from a seq is one XREAD; fields `job` and `body`
  (the serialized event without its seq, which the id carries);
- `progress:<session>:seq`: the session's last seq. One Lua script INCRBYs it and XADDs the
  batch, so seqs are gap-free and in stream order whichever replica publishes;
- `progress:deletions`: one entry per DeleteSessionEvents, so live readers on every
  replica learn that a session's stream is gone.

Trimming is XADD's `MAXLEN ~`: bounded, in whole stream nodes (a little above the limit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as redis

from libs.common.redis_outage import redis_outage_as_unavailable
from vidsynth.v1 import progress_pb2

STORAGE = "Progress storage"  # as SERVICE_UNAVAILABLE names it
_SCAN_PAGE = 500
# Deletion notices kept for live readers; one that falls this far behind only misses old ones.
_DELETIONS_KEPT = 10_000

# KEYS: 1 stream, 2 seq counter. ARGV: 1 max length, then job id and body per event.
_APPEND = """
local count = (#ARGV - 1) / 2
local last = redis.call('INCRBY', KEYS[2], count)
local first = last - count + 1
for i = 0, count - 1 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], string.format('%d-0', first + i),
             'job', ARGV[2 + 2 * i], 'body', ARGV[3 + 2 * i])
end
return first
"""

# KEYS: 1 stream, 2 seq counter, 3 deletions stream. ARGV: 1 session id, 2 deletions kept.
_DELETE = """
local count = redis.call('XLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'session', ARGV[1])
return count
"""


def _seq(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _event(session_id: str, entry_id: bytes, fields: dict[bytes, bytes]) -> progress_pb2.ProgressEvent:
    event = progress_pb2.ProgressEvent.FromString(fields[b"body"])
    event.seq = _seq(entry_id)
    event.session_id = session_id
    return event


@dataclass
class LiveBatch:
    """What one blocking read brought: new events, and whether the session was deleted."""

    events: list[progress_pb2.ProgressEvent]
    deleted: bool
    deletions_position: bytes


class RedisEventStore:
    def __init__(self, url: str, max_events_per_session: int, namespace: str = "vidsynth:") -> None:
        self.redis = redis.Redis.from_url(url)
        self._max_events = max_events_per_session
        self._prefix = namespace
        self._append = self.redis.register_script(_APPEND)
        self._delete = self.redis.register_script(_DELETE)

    def _stream_key(self, session_id: str) -> str:
        return f"{self._prefix}progress:{session_id}:events"

    def _seq_key(self, session_id: str) -> str:
        return f"{self._prefix}progress:{session_id}:seq"

    @property
    def _deletions_key(self) -> str:
        return f"{self._prefix}progress:deletions"

    async def open(self) -> RedisEventStore:
        async with redis_outage_as_unavailable(STORAGE):
            await self.redis.ping()
        return self

    async def close(self) -> None:
        await self.redis.aclose()

    async def append(
        self, session_id: str, events: Sequence[progress_pb2.ProgressEvent]
    ) -> list[progress_pb2.ProgressEvent]:
        stored: list[progress_pb2.ProgressEvent] = []
        args: list[str | bytes | int] = [self._max_events]
        for event in events:
            copy = progress_pb2.ProgressEvent()
            copy.CopyFrom(event)
            copy.session_id = session_id
            copy.seq = 0  # the stream entry id carries it
            args += [copy.job_id, copy.SerializeToString()]
            stored.append(copy)
        async with redis_outage_as_unavailable(STORAGE):
            first = int(
                await self._append(keys=[self._stream_key(session_id), self._seq_key(session_id)], args=args)
            )
        for offset, event in enumerate(stored):
            event.seq = first + offset
        return stored

    async def read_after(
        self, session_id: str, after_seq: int, limit: int, job_id: str = ""
    ) -> list[progress_pb2.ProgressEvent]:
        key = self._stream_key(session_id)
        found: list[progress_pb2.ProgressEvent] = []
        start = after_seq + 1
        wanted = job_id.encode()
        while len(found) < limit:
            # Unfiltered, the page is exactly what is missing; filtered, scan in larger pages.
            count = limit - len(found) if not job_id else max(limit - len(found), _SCAN_PAGE)
            async with redis_outage_as_unavailable(STORAGE):
                page = await self.redis.xrange(key, f"{start}-0", "+", count=count)
            for entry_id, fields in page:
                if not job_id or fields[b"job"] == wanted:
                    found.append(_event(session_id, entry_id, fields))
            if len(page) < count:
                break
            start = _seq(page[-1][0]) + 1
        return found[:limit]

    async def last_seq(self, session_id: str) -> int:
        async with redis_outage_as_unavailable(STORAGE):
            value = await self.redis.get(self._seq_key(session_id))
        return int(value) if value is not None else 0

    async def latest_job_id(self, session_id: str) -> str:
        key = self._stream_key(session_id)
        end = "+"
        while True:
            async with redis_outage_as_unavailable(STORAGE):
                page = await self.redis.xrevrange(key, end, "-", count=_SCAN_PAGE)
            for _, fields in page:
                if fields[b"job"]:
                    return fields[b"job"].decode()
            if len(page) < _SCAN_PAGE:
                return ""
            end = f"({page[-1][0].decode()}"

    async def delete_session(self, session_id: str) -> int:
        keys = [self._stream_key(session_id), self._seq_key(session_id), self._deletions_key]
        async with redis_outage_as_unavailable(STORAGE):
            return int(await self._delete(keys=keys, args=[session_id, _DELETIONS_KEPT]))

    # --- live reads (services/progress/redis_live.py) -------------------------------------

    async def live_anchor(self, session_id: str) -> tuple[int, bytes]:
        """The session's last seq and the newest deletion notice, read atomically: a live
        reader starting there misses nothing stored after this call."""
        async with redis_outage_as_unavailable(STORAGE), self.redis.pipeline(transaction=True) as pipe:
            pipe.get(self._seq_key(session_id))
            pipe.xrevrange(self._deletions_key, "+", "-", count=1)
            seq, newest_deletion = await pipe.execute()
        return int(seq or 0), newest_deletion[0][0] if newest_deletion else b"0-0"

    async def read_live(
        self, session_id: str, after_seq: int, deletions_position: bytes, count: int, block_ms: int
    ) -> LiveBatch:
        """Blocks up to `block_ms` for events after `after_seq` or a deletion notice."""
        stream = self._stream_key(session_id)
        async with redis_outage_as_unavailable(STORAGE):
            reply = await self.redis.xread(
                {stream: f"{after_seq}-0", self._deletions_key: deletions_position},
                count=count,
                block=block_ms,
            )
        batch = LiveBatch([], False, deletions_position)
        for key, entries in reply or []:
            name = key.decode() if isinstance(key, bytes) else key
            if name == stream:
                batch.events = [_event(session_id, entry_id, fields) for entry_id, fields in entries]
                continue
            batch.deletions_position = entries[-1][0]
            batch.deleted = any(fields[b"session"] == session_id.encode() for _, fields in entries)
        return batch
