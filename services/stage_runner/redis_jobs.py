"""The job queue of several stage_runner replicas sharing Redis (VIDSYNTH_REDIS_URL).

Jobs are accepted by any replica into the shared waiting room (redis_queue.py); a replica
with a free run slot picks the next one by the fair rule across users (fair_share.py, with
the per-user running cap counted cluster-wide), runs it within its own limits (its run
slots here, the stage slots in stage_slots.py), heartbeats while running, and takes over
the jobs of replicas that went silent, resuming them from their checkpoints on the shared
data dir.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from redis.exceptions import RedisError

from libs.common.errors import VidsynthError
from libs.common.identity import Identity, current_identity
from services.stage_runner.capabilities import BackendRegistry, initial_mode
from services.stage_runner.config import StageRunnerSettings
from services.stage_runner.execution import TERMINAL_STATES, JobRunner, LiveJob
from services.stage_runner.fair_share import Forecast, Running, Waiting, forecast
from services.stage_runner.publisher import ProgressPublisher
from services.stage_runner.queue import (
    CANCEL_WAIT_SECONDS,
    STOP_WAIT_SECONDS,
    RunningJobs,
    cancel_until_done,
    not_cancellable,
    refuse_past_limits,
    remaining_estimate,
    snapshot,
    total_estimate,
)
from services.stage_runner.redis_queue import Entry, RedisJobStream, WaitingRoom
from services.stage_runner.redis_store import RedisJobStore
from services.stage_runner.store import StoredJob
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


class RedisJobQueue:
    def __init__(
        self,
        config: StageRunnerSettings,
        *,
        runner: JobRunner,
        store: RedisJobStore,
        stream: RedisJobStream,
        publisher: ProgressPublisher,
        registry: BackendRegistry,
        configured_mode: str,
    ) -> None:
        self._runner = runner
        self._store = store
        self._stream = stream
        self._publisher = publisher
        self._registry = registry
        self._configured_mode = configured_mode
        # Run slots of this replica; the per-user running cap holds cluster-wide, in `pick`.
        self.max_running = config.stage_runner_max_running_jobs
        self.max_running_per_user = config.stage_runner_max_running_jobs_per_user
        self._max_waiting = config.stage_runner_max_queued_jobs
        self._max_waiting_per_user = config.stage_runner_max_queued_jobs_per_user
        self._reclaim_idle_ms = int(config.stage_runner_reclaim_idle_seconds * 1000)
        self._heartbeat_seconds = config.stage_runner_heartbeat_seconds
        self._running = RunningJobs(runner.run, self._job_task_ended)
        # Jobs this replica settles as cancelled without running them.
        self._settling: dict[str, LiveJob] = {}
        # job id -> stream entry id, for the jobs this replica runs.
        self._entries: dict[str, str] = {}
        self._slot_free = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._acks: set[asyncio.Task] = set()

    @property
    def waiting_count(self) -> int:
        """Nothing waits in this process: the waiting room is in Redis."""
        return 0

    @property
    def running_count(self) -> int:
        return len(self._running)

    def live_job(self, job_id: str) -> LiveJob | None:
        return self._running.get(job_id) or self._settling.get(job_id)

    def running_task(self, job_id: str) -> asyncio.Task | None:
        return self._running.task(job_id)

    # ---- submit -------------------------------------------------------------------------------

    async def sync(self) -> None:
        """SetProcessingMode on any replica reaches every replica (the shared meta hash)."""
        self._registry.mode = await initial_mode(self._store, self._configured_mode)

    async def check_capacity(self, user_id: str) -> None:
        room = await self._stream.waiting_room()
        ahead, _ = await self._shared_forecast(room)
        refuse_past_limits(user_id, room.entries, ahead, self._max_waiting, self._max_waiting_per_user)

    async def enqueue(self, live: LiveJob) -> None:
        job = live.job
        room = await self._stream.waiting_room()
        newcomer = Waiting(job.job_id, live.user_id, total_estimate(job))
        ahead, _ = await self._shared_forecast(room, newcomer)
        job.queue_position, job.eta_seconds = ahead[job.job_id].position, ahead[job.job_id].eta_seconds
        self._runner.emit(job, progress_pb2.EVENT_TYPE_JOB_QUEUED, message="queued")
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
            Waiting(e.job_id, e.user_id, total_estimate(queued[e.job_id]))
            for e in waiting
            if e.job_id in queued
        ]
        # Unfinished and not waiting: running, or taken and about to start (its whole
        # estimate still ahead); the newcomer is stored already but not queued yet.
        ignore = waiting_ids | ({newcomer.job_id} if newcomer else set())
        running = [
            Running(s.user_id, remaining_estimate(s.job))
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

    async def _publish_positions(self, skip: str = "") -> None:
        """The queue moved (a job was taken, cancelled or went ahead): tell every waiting job."""
        ahead, queued = await self._shared_forecast(await self._stream.waiting_room())
        for job_id, place in sorted(ahead.items(), key=lambda item: item[1].position):
            if job_id == skip:
                continue
            job = queued[job_id]
            job.queue_position, job.eta_seconds = place.position, place.eta_seconds
            self._runner.emit(
                job, progress_pb2.EVENT_TYPE_JOB_QUEUED, message=f"position {place.position} in the queue"
            )

    async def place(self, job: stage_runner_pb2.Job) -> None:
        ahead, _ = await self._shared_forecast(await self._stream.waiting_room())
        if job.job_id in ahead:
            job.queue_position, job.eta_seconds = ahead[job.job_id].position, ahead[job.job_id].eta_seconds

    # ---- cancel -------------------------------------------------------------------------------

    async def cancel(self, stored: StoredJob) -> stage_runner_pb2.Job | None:
        job_id = stored.job.job_id
        live = self.live_job(job_id)
        if live is not None:
            if not_cancellable(stored, live):
                raise VidsynthError("JOB_NOT_CANCELLABLE")
            live.cancel_requested = True
            await self._running.cancel(live, self._runner.finish_cancelled)
            return snapshot(live.job)
        if stored.job.state in TERMINAL_STATES:
            raise VidsynthError("JOB_NOT_CANCELLABLE")
        verdict = await self._stream.request_cancel(job_id)
        if verdict == "done":
            raise VidsynthError("JOB_NOT_CANCELLABLE")
        if verdict == "mine":
            # Nobody took it yet, and now nobody will: settle it here.
            fresh = await self._store.get(job_id) or stored
            live = LiveJob(fresh.job, fresh.user_id, cancel_requested=True)
            await self._settle_cancelled(live)
            entry_id = await self._stream.entry_of(job_id)
            if entry_id:
                await self._stream.done(entry_id)
            await self._publish_positions()
            return snapshot(live.job)
        # Another replica runs it and stops it on its next heartbeat.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CANCEL_WAIT_SECONDS + self._heartbeat_seconds
        while loop.time() < deadline:
            current = await self._store.get(job_id)
            if current is not None and current.job.state in TERMINAL_STATES:
                return snapshot(current.job)
            await asyncio.sleep(CANCEL_POLL_SECONDS)
        return None

    async def _settle_cancelled(self, live: LiveJob) -> None:
        self._settling[live.job.job_id] = live
        try:
            await self._runner.finish_cancelled(live)
        finally:
            self._settling.pop(live.job.job_id, None)

    # ---- taking and running jobs --------------------------------------------------------------

    def _job_task_ended(self, live: LiveJob) -> None:
        entry_id = self._entries.pop(live.job.job_id, None)
        self._slot_free.set()
        if not live.ended:
            # Interrupted (shutdown, or taken over after we went silent): the entry stays
            # pending, so a live replica reclaims the job and resumes it.
            return
        if entry_id:
            # Should this fail, the entry is reclaimed later and dropped as finished.
            ack = asyncio.create_task(self._stream.done(entry_id), name=f"ack-{live.job.job_id}")
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
        self._entries[entry.job_id] = entry.entry_id
        log.info("job.taken", job_id=entry.job_id, reclaimed=entry.reclaimed, verdict=verdict)
        if verdict == "cancel":
            live.cancel_requested = True
            current_identity.set(Identity(live.user_id, via_mesh=True))
            try:
                await self._settle_cancelled(live)
            finally:
                self._entries.pop(entry.job_id, None)
            await self._stream.done(entry.entry_id)
            return
        self._running.start(live)
        if not entry.reclaimed:
            await self._publish_positions()

    async def _consume(self) -> None:
        while True:
            try:
                self._slot_free.clear()
                # Our own count: a job's task is forgotten only in a done-callback, after
                # _job_task_ended has already signalled the free slot.
                if len(self._entries) >= self.max_running:
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

    async def _heartbeat_once(self) -> None:
        await self._stream.register(self.max_running, self._reclaim_idle_ms / 1000)
        await self.sync()
        lost, cancelled = await self._stream.heartbeat(dict(self._entries))
        for job_id in lost:
            log.warning("job.lost_to_another_replica", job_id=job_id)
            task = self._running.task(job_id)
            if task is not None:
                task.cancel()
        for job_id in cancelled:
            live = self._running.get(job_id)
            task = self._running.task(job_id)
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
        await self._running.stop()
        if self._acks:
            await asyncio.wait(self._acks, timeout=CANCEL_WAIT_SECONDS)
        with contextlib.suppress(RedisError):
            await self._stream.forget()
