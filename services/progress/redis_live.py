"""Live delivery across replicas: one XREAD BLOCK reader per session with local subscribers.

With Redis, a replica never fans its own publishes out directly: every event, whichever
replica stored it, reaches local subscribers through the session's reader, in stream
(seq) order, into the broker's bounded per-subscriber buffers. A subscriber's replay is
read only after the reader is anchored (its start seq fixed), so every event is either
in the replay or in the buffer; the event log drops the seqs it already delivered.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog

from services.progress.broker import Broker
from services.progress.redis_store import RedisEventStore

log = structlog.get_logger("vidsynth.progress.live")

# How long one XREAD waits; a reader whose last subscriber left ends within this.
DEFAULT_BLOCK_SECONDS = 2.0


@dataclass
class _Reader:
    session_id: str
    anchored: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    task: asyncio.Task | None = None


class RedisLiveFeed:
    def __init__(
        self, store: RedisEventStore, broker: Broker, block_seconds: float = DEFAULT_BLOCK_SECONDS
    ) -> None:
        self._store = store
        self._broker = broker
        self._block_ms = max(1, round(block_seconds * 1000))
        self._readers: dict[str, _Reader] = {}

    def reader_count(self) -> int:
        return len(self._readers)

    async def watch(self, session_id: str) -> None:
        """Ensures a reader for the session (call after subscribing); returns once it is
        anchored, i.e. every event stored from now on will reach the broker."""
        reader = self._readers.get(session_id)
        if reader is None:
            reader = _Reader(session_id)
            # A failed anchor reaches every watcher that still waits; none left is no error.
            reader.anchored.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._readers[session_id] = reader
            reader.task = asyncio.create_task(self._run(reader), name=f"progress-live-{session_id}")
        # Shielded: one subscriber giving up must not cancel the reader the others share.
        await asyncio.shield(reader.anchored)

    async def close(self) -> None:
        tasks = {reader.task for reader in self._readers.values() if reader.task is not None}
        self._readers.clear()
        # redis-py (8.1) can absorb a cancel that lands while it starts a command, leaving
        # the task blocked in XREAD; cancelling again until it ends keeps shutdown prompt.
        while tasks:
            for task in tasks:
                task.cancel()
            _, tasks = await asyncio.wait(tasks, timeout=0.1)

    async def _run(self, reader: _Reader) -> None:
        session_id = reader.session_id
        try:
            try:
                position, deletions = await self._store.live_anchor(session_id)
            except Exception as error:
                reader.anchored.set_exception(error)
                return
            reader.anchored.set_result(None)
            # The check and the exit below run without an await in between, so a subscriber
            # that joins later always finds either this reader still running or none at all.
            while self._broker.subscriber_count(session_id):
                batch = await self._store.read_live(
                    session_id, position, deletions, self._broker.capacity, self._block_ms
                )
                deletions = batch.deletions_position
                if batch.deleted:
                    self._broker.end_session(session_id)
                    position = 0
                elif batch.events:
                    position = batch.events[-1].seq
                    self._broker.publish(session_id, batch.events)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # Subscribers end with SERVICE_UNAVAILABLE and resume by seq, here or elsewhere.
            log.warning("live_reader.failed", session_id=session_id, error=str(error))
            self._broker.shut_down_session(session_id)
        finally:
            if self._readers.get(session_id) is reader:
                del self._readers[session_id]
            if not reader.anchored.done():
                reader.anchored.cancel()
