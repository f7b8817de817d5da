"""The shared job queue: one Redis Stream with one consumer group of stage_runner replicas.

- StartJob on any replica appends `{job_id}` to the stream (XADD).
- A replica with a free run slot takes the next entry (XREADGROUP >); the entry stays in
  its pending list while the job runs, and a heartbeat (XCLAIM ... JUSTID by the holder
  only) keeps its idle time low.
- A replica that died stops heartbeating: once an entry has been idle longer than the
  reclaim time, any replica takes it over with XAUTOCLAIM and resumes the job from its
  last completed-stage checkpoint on the shared data dir.
- A finished job's entry is acknowledged and deleted, so what remains after the group's
  last-delivered id is exactly the waiting room (positions, QUEUE_FULL).
- The job hash's `owner` field says which replica runs a job; `cancel` asks the owner
  to stop it (checked on every heartbeat), so CancelJob works from any replica.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import ResponseError

from services.stage_runner.redis_store import JobKeys
from vidsynth.v1 import common_pb2

GROUP = "runners"

# KEYS: job hash. ARGV: consumer, entry id, 'new' (fresh delivery) or 'reclaim'.
# -> 'run' (start or resume it), 'cancel' (finish it as cancelled), 'skip' (ack and drop).
_TAKE = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 'skip' end
local state = tonumber(redis.call('HGET', KEYS[1], 'state'))
if state ~= {common_pb2.JOB_STATE_QUEUED} and state ~= {common_pb2.JOB_STATE_RUNNING} then return 'skip' end
local owner = redis.call('HGET', KEYS[1], 'owner')
if ARGV[3] == 'new' and owner and owner ~= '' then return 'skip' end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'entry', ARGV[2])
if redis.call('HGET', KEYS[1], 'cancel') == '1' then return 'cancel' end
return 'run'
"""

# KEYS: job hash. ARGV: the cancelling replica.
# -> 'done' (already finished), 'mine' (nobody took it: the caller finishes it), 'owned'.
_CANCEL = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 'done' end
local state = tonumber(redis.call('HGET', KEYS[1], 'state'))
if state ~= {common_pb2.JOB_STATE_QUEUED} and state ~= {common_pb2.JOB_STATE_RUNNING} then return 'done' end
redis.call('HSET', KEYS[1], 'cancel', '1')
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner or owner == '' then
  redis.call('HSET', KEYS[1], 'owner', ARGV[1])
  return 'mine'
end
return 'owned'
"""

# KEYS: stream. ARGV: group, entry id, consumer. Resets the entry's idle time only while
# this consumer still holds it (a plain XCLAIM would steal back a reclaimed job).
_HEARTBEAT = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 or pending[1][2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
"""

# KEYS: stream. ARGV: group, min idle ms, the caller. Forgets consumers of replicas gone for
# good (nothing pending, silent for long); atomic, so no entry is dropped with one.
_PRUNE = """
local removed = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and info['idle'] > tonumber(ARGV[2]) and info['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed = removed + 1
  end
end
return removed
"""


@dataclass(frozen=True)
class Entry:
    entry_id: str
    job_id: str
    reclaimed: bool


class RedisJobStream:
    def __init__(self, client: redis.Redis, keys: JobKeys, consumer: str) -> None:
        self._redis = client
        self._keys = keys
        self.consumer = consumer
        self.stream = keys.prefix + "queue"
        self._runners = keys.prefix + "runners"
        self._member = ""
        self._take = client.register_script(_TAKE)
        self._cancel = client.register_script(_CANCEL)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._prune = client.register_script(_PRUNE)

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def add(self, job_id: str) -> str:
        entry_id = (await self._redis.xadd(self.stream, {"job_id": job_id})).decode()
        await self._redis.hset(self._keys.job(job_id), "entry", entry_id)
        return entry_id

    @staticmethod
    def _entry(raw_id: bytes, fields: dict, reclaimed: bool) -> Entry:
        return Entry(raw_id.decode(), fields.get(b"job_id", b"").decode(), reclaimed)

    async def reclaim_one(self, min_idle_ms: int) -> Entry | None:
        """An entry a dead (silent) replica held, now ours; None when there is none."""
        result = await self._redis.xautoclaim(
            self.stream, GROUP, self.consumer, min_idle_ms, start_id="0-0", count=1
        )
        claimed = result[1]
        for raw_id, fields in claimed:
            if fields:
                return self._entry(raw_id, fields, reclaimed=True)
            # Deleted from the stream while pending: nothing to run.
            await self._redis.xack(self.stream, GROUP, raw_id)
        return None

    async def read_one(self, block_ms: int) -> Entry | None:
        result = await self._redis.xreadgroup(
            GROUP, self.consumer, {self.stream: ">"}, count=1, block=block_ms
        )
        for _, entries in result or []:
            for raw_id, fields in entries:
                return self._entry(raw_id, fields, reclaimed=False)
        return None

    async def take(self, entry: Entry) -> str:
        verdict = await self._take(
            keys=[self._keys.job(entry.job_id)],
            args=[self.consumer, entry.entry_id, "reclaim" if entry.reclaimed else "new"],
        )
        return verdict.decode()

    async def done(self, entry_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, GROUP, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()

    async def request_cancel(self, job_id: str) -> str:
        return (await self._cancel(keys=[self._keys.job(job_id)], args=[self.consumer])).decode()

    async def entry_of(self, job_id: str) -> str:
        value = await self._redis.hget(self._keys.job(job_id), "entry")
        return value.decode() if value else ""

    async def heartbeat(self, entry_ids: dict[str, str]) -> tuple[set[str], set[str]]:
        """Keeps our entries alive. Returns (jobs we lost to a reclaim, jobs asked to cancel)."""
        lost, cancelled = set(), set()
        for job_id, entry_id in entry_ids.items():
            held = await self._heartbeat(keys=[self.stream], args=[GROUP, entry_id, self.consumer])
            if not held:
                lost.add(job_id)
            elif await self._redis.hget(self._keys.job(job_id), "cancel") == b"1":
                cancelled.add(job_id)
        return lost, cancelled

    async def prune_consumers(self, min_idle_ms: int) -> int:
        """Drops the group's consumers that hold nothing and were silent for `min_idle_ms`
        (every restart makes a new consumer); returns how many."""
        return int(await self._prune(keys=[self.stream], args=[GROUP, min_idle_ms, self.consumer]))

    async def waiting(self) -> list[tuple[str, str]]:
        """(entry id, job id) of every entry no replica has taken yet, oldest first."""
        last = "0-0"
        for group in await self._redis.xinfo_groups(self.stream):
            if group["name"] in (GROUP, GROUP.encode()):
                last = _text(group["last-delivered-id"])
        entries = await self._redis.xrange(self.stream, min=f"({last}", max="+")
        return [(raw_id.decode(), fields.get(b"job_id", b"").decode()) for raw_id, fields in entries]

    async def register(self, max_running: int, ttl_seconds: float) -> None:
        """Announces this replica's run slots (for cluster-wide ETAs)."""
        now = time.time()
        self._member = f"{self.consumer}|{max_running}"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._runners, {self._member: now})
            pipe.zremrangebyscore(self._runners, "-inf", now - ttl_seconds)
            await pipe.execute()

    async def capacity(self) -> int:
        """Run slots of the replicas alive now (at least 1)."""
        members = await self._redis.zrange(self._runners, 0, -1)
        return max(1, sum(int(m.decode().rpartition("|")[2]) for m in members))

    async def forget(self) -> None:
        """A replica shutting down cleanly stops counting towards capacity at once."""
        if self._member:
            await self._redis.zrem(self._runners, self._member)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
