"""Sends progress events to ProgressService without ever holding up a job: events go
into a bounded buffer that one worker drains in order, retrying with backoff while
ProgressService is unreachable. Each publish is a span of the trace the event came
from (the job's), though the worker sends it later."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import grpc
import structlog

from libs.common import tracing
from libs.common.clients import MeshClients
from vidsynth.internal.v1 import progress_internal_pb2
from vidsynth.v1 import progress_pb2

log = structlog.get_logger("vidsynth.stage_runner.publisher")

BATCH_SIZE = 100
PUBLISH_TIMEOUT_SECONDS = 5.0
FIRST_RETRY_SECONDS = 0.2
MAX_RETRY_SECONDS = 5.0
# Dropped first when the buffer overflows: a later progress event supersedes them.
_DROPPABLE = (progress_pb2.EVENT_TYPE_STAGE_PROGRESS, progress_pb2.EVENT_TYPE_JOB_QUEUED)


class ProgressPublisher:
    def __init__(self, clients: MeshClients, max_buffer: int) -> None:
        self._clients = clients
        self._max_buffer = max_buffer
        self._buffer: deque[progress_pb2.ProgressEvent] = deque()
        # id(event) -> the trace context it was published in (only while tracing).
        self._contexts: dict[int, object] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task | None = None
        self.dropped = 0

    def publish(self, event: progress_pb2.ProgressEvent) -> None:
        """Queues `event`; never blocks and never raises."""
        if not event.HasField("timestamp"):
            event.timestamp.GetCurrentTime()
        self._buffer.append(event)
        ctx = tracing.current_context()
        if ctx is not None:
            self._contexts[id(event)] = ctx
        if len(self._buffer) > self._max_buffer:
            self._drop_one()
        self._idle.clear()
        self._wake.set()

    def _drop_one(self) -> None:
        for index, queued in enumerate(self._buffer):
            if queued.type in _DROPPABLE:
                del self._buffer[index]
                break
        else:
            queued = self._buffer.popleft()
        self._contexts.pop(id(queued), None)
        self.dropped += 1
        if self.dropped % 100 == 1:
            log.warning("progress.buffer_full", dropped=self.dropped, buffered=len(self._buffer))

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="progress-publisher")

    async def flush(self, limit_seconds: float) -> bool:
        """Waits until everything queued was delivered; False if `limit_seconds` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), limit_seconds)
        except TimeoutError:
            return False
        return True

    async def stop(self, flush_timeout: float = 2.0) -> None:
        await self.flush(flush_timeout)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    def _next_batch(self) -> tuple[str, list[progress_pb2.ProgressEvent]]:
        session_id = self._buffer[0].session_id
        batch = []
        for event in self._buffer:
            if event.session_id != session_id or len(batch) >= BATCH_SIZE:
                break
            batch.append(event)
        return session_id, batch

    async def _run(self) -> None:
        delay = FIRST_RETRY_SECONDS
        while True:
            if not self._buffer:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            session_id, batch = self._next_batch()
            try:
                with tracing.attached(self._contexts.get(id(batch[0]))):
                    await self._clients.progress_internal.PublishEvents(
                        progress_internal_pb2.PublishEventsRequest(session_id=session_id, events=batch),
                        timeout=PUBLISH_TIMEOUT_SECONDS,
                    )
            except grpc.RpcError as error:
                log.warning("progress.publish_failed", code=str(error.code()), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                continue
            delay = FIRST_RETRY_SECONDS
            # The buffer may have dropped some meanwhile; remove exactly the events sent.
            sent = {id(event) for event in batch}
            while self._buffer and id(self._buffer[0]) in sent:
                self._contexts.pop(id(self._buffer.popleft()), None)
