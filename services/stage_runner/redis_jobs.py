"""JobManager for several stage_runner replicas sharing Redis (VIDSYNTH_REDIS_URL).

Jobs are accepted by any replica into the shared waiting room (redis_queue.py); a replica
with a free run slot picks the next one by the fair rule across users (fair_share.py, with
the per-user running cap counted cluster-wide), runs it within its own limits (the local
JobQueue still bounds running jobs and per-stage slots), heartbeats while running, and
takes over the jobs of replicas that went silent, resuming them from their checkpoints on
the shared data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from libs.common.errors import VidsynthError
from libs.common.identity import Identity, current_identity, require_identity
from services.stage_runner import spec_checks
from services.stage_runner.capabilities import BackendRegistry, initial_mode
from services.stage_runner.execution import TERMINAL_STATES, LiveJob
from services.stage_runner.fair_share import Forecast, Running, Waiting, forecast
from services.stage_runner.jobs import CANCEL_WAIT_SECONDS, JobManager
from services.stage_runner.publisher import ProgressPublisher
from services.stage_runner.queue import STOP_WAIT_SECONDS, cancel_until_done
from services.stage_runner.redis_queue import Entry, RedisJobStream, WaitingRoom
from services.stage_runner.redis_store import IdempotencyKeyTaken, RedisJobStore
from vidsynth.v1 import common_pb2, progress_pb2, stage_runner_pb2

log = structlog.get_logger("vidsynth.stage_runner.redis_jobs")

READ_BLOCK_MS = 1000
REDIS_RETRY_SECONDS = 1.0
# job.queued goes out before the stream entry exists, so no replica's job.started overtakes it.
QUEUED_EVENT_FLUSH_SECONDS = 2.0
CANCEL_POLL_SECONDS = 0.1
# Consumers of replicas gone for good are forgotten now and then (never one holding a job).
PRUNE_EVERY_BEATS = 60
PRUNE_MIN_IDLE_MS = 10 * 60 * 1000


def redis_outage_as_unavailable(method):
    """An unreachable Redis is a retryable outage for the caller, not an internal error."""

    @functools.wraps(method)
    async def wrapper(*args, **kwargs):
        try:
            return await method(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError) as error:
            raise VidsynthError("SERVICE_UNAVAILABLE", "Job storage is unreachable; try again.") from error

    return wrapper


class RedisJobManager(JobManager):
    def __init__(
        self,
        *,
        stream: RedisJobStream,
        publisher: ProgressPublisher,
        registry: BackendRegistry,
        store: RedisJobStore,
        configured_mode: str,
        max_waiting: int,
        reclaim_idle_seconds: float,
        heartbeat_seconds: float,
        **kwargs,
    ) -> None:
        super().__init__(registry=registry, store=store, max_waiting=max_waiting, **kwargs)
        # The per-user running cap holds cluster-wide, in `pick`; locally any taken job runs.
        self.queue.max_running_per_user = None
        self._stream = stream
        self._publisher = publisher
        self._configured_mode = configured_mode
        self._reclaim_idle_ms = int(reclaim_idle_seconds * 1000)
        self._heartbeat_seconds = heartbeat_seconds
        # job id -> stream entry id, for the jobs this replica runs.
        self._entries: dict[str, str] = {}
        self._slot_free = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._acks: set[asyncio.Task] = set()

    # ---- submit -------------------------------------------------------------------------------

    @redis_outage_as_unavailable
    async def start(self, request: stage_runner_pb2.StartJobRequest) -> stage_runner_pb2.Job:
        await self._sync_mode()
        try:
            return await super().start(request)
        except IdempotencyKeyTaken:
            # Another replica accepted the same key a moment ago: answer with its job.
            existing = await self._store.find_idempotent(require_identity().user_id, request.request_id)
            if existing is None:
                raise VidsynthError("IDEMPOTENCY_CONFLICT") from None
            if existing.spec_hash != spec_checks.request_fingerprint(request.session_id, request.spec):
                raise VidsynthError("IDEMPOTENCY_CONFLICT") from None
            return await self.get(existing.job.job_id)

    async def _check_capacity(self, user_id: str) -> None:
        room = await self._stream.waiting_room()
        ahead, _ = await self._shared_forecast(room)
        self._refuse_past_limits(user_id, room.entries, ahead)

    async def _enqueue(self, live: LiveJob) -> None:
        job = live.job
        room = await self._stream.waiting_room()
        newcomer = Waiting(job.job_id, live.user_id, self._total_estimate(job))
        ahead, _ = await self._shared_forecast(room, newcomer)
        job.queue_position, job.eta_seconds = ahead[job.job_id].position, ahead[job.job_id].eta_seconds
        self.runner.emit(job, progress_pb2.EVENT_TYPE_JOB_QUEUED, message="queued")
        await self._publisher.flush(QUEUED_EVENT_FLUSH_SECONDS)
        await self._stream.add(job.job_id, live.user_id)
        if job.queue_position <= len(room.entries):
            # It went ahead of other users' jobs: they moved back.
            await self._publish_positions(skip=job.job_id)

    # ---- positions and ETAs across replicas ---------------------------------------------------

    async def _shared_forecast(
        self, room: WaitingRoom, newcomer: Waiting | None = None
    ) -> tuple[dict[str, Forecast], dict[str, stage_runner_pb2.Job]]:
        """(place in line and ETA of every waiting job, and of `newcomer` as if queued now;
        the waiting jobs as stored)."""
        waiting = room.entries
        waiting_ids = {entry.job_id for entry in waiting}
        stored = await self._store.get_many(waiting_ids)
        queued = {s.job.job_id: s.job for s in stored if s.job.state == common_pb2.JOB_STATE_QUEUED}
        entries = [
            Waiting(e.job_id, e.user_id, self._total_estimate(queued[e.job_id]))
            for e in waiting
            if e.job_id in queued
        ]
        # Unfinished and not waiting: running, or taken and about to start (its whole
        # estimate still ahead); the newcomer is stored already but not queued yet.
        ignore = waiting_ids | ({newcomer.job_id} if newcomer else set())
        running = [
            Running(s.user_id, self._remaining(s.job))
            for s in await self._store.unfinished()
            if s.job.job_id not in ignore
        ]
        capacity = await self._stream.capacity()
        ahead = forecast(
            entries + ([newcomer] if newcomer else []),
            running,
            capacity,
            self.max_running_per_user,
            room.served,
        )
        return ahead, queued

    def _remaining(self, job: stage_runner_pb2.Job) -> float:
        started = job.state == common_pb2.JOB_STATE_RUNNING
        return job.eta_seconds if started else self._total_estimate(job)

    async def _publish_positions(self, skip: str = "") -> None:
        """The queue moved (a job was taken, cancelled or went ahead): tell every waiting job."""
        ahead, queued = await self._shared_forecast(await self._stream.waiting_room())
        for job_id, place in sorted(ahead.items(), key=lambda item: item[1].position):
            if job_id == skip:
                continue
            job = queued[job_id]
            job.queue_position, job.eta_seconds = place.position, place.eta_seconds
            self.runner.emit(
                job, progress_pb2.EVENT_TYPE_JOB_QUEUED, message=f"position {place.position} in the queue"
            )

    # ---- reads and cancel ---------------------------------------------------------------------

    @redis_outage_as_unavailable
    async def get(self, job_id: str) -> stage_runner_pb2.Job:
        job = self._current(await self._owned(job_id))
        if job.state == common_pb2.JOB_STATE_QUEUED:
            ahead, _ = await self._shared_forecast(await self._stream.waiting_room())
            if job_id in ahead:
                job.queue_position, job.eta_seconds = ahead[job_id].position, ahead[job_id].eta_seconds
        return job

    @redis_outage_as_unavailable
    async def cancel(self, job_id: str) -> stage_runner_pb2.Job:
        stored = await self._owned(job_id)
        if job_id in self.live:
            return await super().cancel(job_id)
        if stored.job.state in TERMINAL_STATES:
            raise VidsynthError("JOB_NOT_CANCELLABLE")
        verdict = await self._stream.request_cancel(job_id)
        if verdict == "done":
            raise VidsynthError("JOB_NOT_CANCELLABLE")
        if verdict == "mine":
            # Nobody took it yet, and now nobody will: settle it here.
            fresh = await self._store.get(job_id) or stored
            live = LiveJob(fresh.job, fresh.user_id, cancel_requested=True)
            self.live[job_id] = live
            try:
                await self.runner.finish_cancelled(live)
            finally:
                self.live.pop(job_id, None)
            entry_id = await self._stream.entry_of(job_id)
            if entry_id:
                await self._stream.done(entry_id)
            await self._publish_positions()
            return self._snapshot(live.job)
        # Another replica runs it and stops it on its next heartbeat.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CANCEL_WAIT_SECONDS + self._heartbeat_seconds
        while loop.time() < deadline:
            current = await self._store.get(job_id)
            if current is not None and current.job.state in TERMINAL_STATES:
                return self._snapshot(current.job)
            await asyncio.sleep(CANCEL_POLL_SECONDS)
        return self._current(await self._owned(job_id))

    @redis_outage_as_unavailable
    async def list(self, request: stage_runner_pb2.ListJobsRequest) -> stage_runner_pb2.ListJobsResponse:
        return await super().list(request)

    @redis_outage_as_unavailable
    async def estimate(self, request: stage_runner_pb2.EstimateJobRequest) -> stage_runner_pb2.JobEstimate:
        return await super().estimate(request)

    # ---- taking and running jobs --------------------------------------------------------------

    def _job_task_ended(self, job_id: str) -> None:
        entry_id = self._entries.pop(job_id, None)
        self._slot_free.set()
        if job_id in self.live:
            # Interrupted (shutdown, or taken over after we went silent): the entry stays
            # pending, so a live replica reclaims the job and resumes it.
            del self.live[job_id]
        elif entry_id:
            # Should this fail, the entry is reclaimed later and dropped as finished.
            ack = asyncio.create_task(self._stream.done(entry_id), name=f"ack-{job_id}")
            self._acks.add(ack)
            ack.add_done_callback(self._acked)

    def _acked(self, ack: asyncio.Task) -> None:
        self._acks.discard(ack)
        if not ack.cancelled() and ack.exception() is not None:
            log.warning("queue.ack_failed", error=repr(ack.exception()))

    async def _take(self, entry: Entry) -> None:
        verdict = await self._stream.take(entry)
        stored = await self._store.get(entry.job_id) if verdict != "skip" else None
        if stored is None:
            await self._stream.done(entry.entry_id)
            return
        live = LiveJob(stored.job, stored.user_id)
        self.live[entry.job_id] = live
        self._entries[entry.job_id] = entry.entry_id
        log.info("job.taken", job_id=entry.job_id, reclaimed=entry.reclaimed, verdict=verdict)
        if verdict == "cancel":
            live.cancel_requested = True
            current_identity.set(Identity(live.user_id, via_mesh=True))
            try:
                await self.runner.finish_cancelled(live)
            finally:
                self._entries.pop(entry.job_id, None)
                self.live.pop(entry.job_id, None)
            await self._stream.done(entry.entry_id)
            return
        self.queue.submit(entry.job_id, live.user_id)
        if not entry.reclaimed:
            await self._publish_positions()

    async def _consume(self) -> None:
        while True:
            try:
                self._slot_free.clear()
                # Our own count: the local queue forgets a job only in a done-callback, after
                # _job_task_ended has already signalled the free slot.
                if len(self._entries) >= self.queue.max_running:
                    await self._slot_free.wait()
                    continue
                entry = await self._stream.reclaim_one(self._reclaim_idle_ms)
                if entry is None:
                    tick, entry = await self._stream.pick(self.max_running_per_user)
                    if entry is None:
                        # Nothing may start: sleep until a job is added or one ends anywhere.
                        await self._stream.wait_for_tick(tick, READ_BLOCK_MS)
                        continue
                await self._take(entry)
            except (RedisError, VidsynthError) as error:
                log.warning("queue.consume_failed", error=repr(error))
                await asyncio.sleep(REDIS_RETRY_SECONDS)

    async def _sync_mode(self) -> None:
        """SetProcessingMode on any replica reaches every replica (the shared meta hash)."""
        self._registry.mode = await initial_mode(self._store, self._configured_mode)

    async def _heartbeat_once(self) -> None:
        await self._stream.register(self.queue.max_running, self._reclaim_idle_ms / 1000)
        await self._sync_mode()
        lost, cancelled = await self._stream.heartbeat(dict(self._entries))
        for job_id in lost:
            log.warning("job.lost_to_another_replica", job_id=job_id)
            task = self.queue.running_task(job_id)
            if task is not None:
                task.cancel()
        for job_id in cancelled:
            live = self.live.get(job_id)
            task = self.queue.running_task(job_id)
            # Again on every beat until it is being settled: a cancellation can be lost.
            if live is not None and task is not None and not live.finishing:
                live.cancel_requested = True
                task.cancel()

    async def _heartbeat(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            beats += 1
            try:
                await self._heartbeat_once()
                if beats % PRUNE_EVERY_BEATS == 0:
                    await self._stream.prune_consumers(max(self._reclaim_idle_ms * 10, PRUNE_MIN_IDLE_MS))
            except RedisError as error:
                log.warning("queue.heartbeat_failed", error=repr(error))

    # ---- lifecycle ----------------------------------------------------------------------------

    async def resume(self) -> int:
        """Starts taking work; jobs of dead replicas (this one before a restart included)
        come back through the stream's pending entries, not a local scan."""
        await self._stream.ensure_group()
        if adopted := await self._stream.adopt_undelivered():
            log.info("queue.adopted_entries_of_an_older_version", count=adopted)
        await self._heartbeat_once()
        self._tasks = [
            asyncio.create_task(self._consume(), name="redis-queue-consumer"),
            asyncio.create_task(self._heartbeat(), name="redis-queue-heartbeat"),
        ]
        return 0

    async def stop(self) -> None:
        await cancel_until_done(self._tasks, STOP_WAIT_SECONDS)
        await self.queue.stop()
        if self._acks:
            await asyncio.wait(self._acks, timeout=CANCEL_WAIT_SECONDS)
        with contextlib.suppress(RedisError):
            await self._stream.forget()
