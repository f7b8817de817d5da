"""The job queue of one process (no VIDSYNTH_REDIS_URL): a bounded waiting room (globally
and per user), fair shares of the run slots between users (fair_share.py), bounded
concurrency globally and per user; positions and ETAs published as the queue moves."""

from __future__ import annotations

import asyncio
import itertools

import structlog

from libs.common.errors import VidsynthError
from services.stage_runner.config import StageRunnerSettings
from services.stage_runner.execution import JobRunner, LiveJob
from services.stage_runner.fair_share import Forecast, Running, Waiting, forecast, next_to_run
from services.stage_runner.queue import (
    RunningJobs,
    not_cancellable,
    refuse_past_limits,
    remaining_estimate,
    snapshot,
    total_estimate,
)
from services.stage_runner.store import JobStore, StoredJob
from vidsynth.v1 import common_pb2, progress_pb2, stage_runner_pb2

log = structlog.get_logger("vidsynth.stage_runner.queue")


class LocalJobQueue:
    def __init__(self, config: StageRunnerSettings, *, runner: JobRunner, store: JobStore) -> None:
        self.max_running = config.stage_runner_max_running_jobs
        self.max_running_per_user = config.stage_runner_max_running_jobs_per_user
        self._max_waiting = config.stage_runner_max_queued_jobs
        self._max_waiting_per_user = config.stage_runner_max_queued_jobs_per_user
        self._runner = runner
        self._store = store
        # Every job of this process, waiting or running.
        self._live: dict[str, LiveJob] = {}
        # Arrival order; the fair rule picks from it (fair_share.next_to_run).
        self._waiting: dict[str, Waiting] = {}
        self._running = RunningJobs(runner.run, self._job_ended)
        # user -> serial of their last start, for the round-robin between users.
        self.served: dict[str, int] = {}
        self._serial = itertools.count()
        self._stopping = False

    @property
    def waiting_count(self) -> int:
        return len(self._waiting)

    @property
    def running_count(self) -> int:
        return len(self._running)

    def live_job(self, job_id: str) -> LiveJob | None:
        return self._live.get(job_id)

    def running_task(self, job_id: str) -> asyncio.Task | None:
        return self._running.task(job_id)

    # ---- submit -------------------------------------------------------------------------------

    async def sync(self) -> None:
        """Nothing is shared with other processes."""

    async def check_capacity(self, user_id: str) -> None:
        refuse_past_limits(
            user_id,
            list(self._waiting.values()),
            self.forecast(),
            self._max_waiting,
            self._max_waiting_per_user,
        )

    async def enqueue(self, live: LiveJob) -> None:
        job = live.job
        self._live[job.job_id] = live
        place = self.forecast(Waiting(job.job_id, live.user_id, total_estimate(job)))[job.job_id]
        job.queue_position, job.eta_seconds = place.position, place.eta_seconds
        live.published_position = job.queue_position
        self._runner.emit(job, progress_pb2.EVENT_TYPE_JOB_QUEUED, message="queued")
        self._submit(live)

    def _submit(self, live: LiveJob, *, resumed: bool = False) -> None:
        self._live[live.job.job_id] = live
        self._waiting[live.job.job_id] = Waiting(live.job.job_id, live.user_id, resumed=resumed)
        self._pump()

    def _pump(self) -> None:
        moved = False
        while not self._stopping and len(self._running) < self.max_running:
            counts = self._running.user_counts()
            entry = next_to_run(list(self._waiting.values()), counts, self.max_running_per_user, self.served)
            if entry is None:
                break
            del self._waiting[entry.job_id]
            self.served[entry.user_id] = next(self._serial)
            self._running.start(self._live[entry.job_id])
            moved = True
        if moved or self._waiting:
            self._queue_moved()

    def _job_ended(self, live: LiveJob) -> None:
        self._live.pop(live.job.job_id, None)
        self._pump()

    # ---- positions and ETAs -------------------------------------------------------------------

    def forecast(self, newcomer: Waiting | None = None) -> dict[str, Forecast]:
        """Place in line and ETA of every waiting job (and of `newcomer`, as if queued now)."""
        waiting = [
            Waiting(e.job_id, e.user_id, total_estimate(self._live[e.job_id].job), e.resumed)
            for e in self._waiting.values()
        ]
        running = [
            Running(live.user_id, remaining_estimate(live.job))
            for live in self._running.jobs()
            if not live.ended
        ]
        return forecast(
            waiting + ([newcomer] if newcomer else []),
            running,
            self.max_running,
            self.max_running_per_user,
            self.served,
        )

    def _queue_moved(self) -> None:
        """Publishes job.queued with the new position and ETA of every waiting job that moved."""
        for job_id, place in sorted(self.forecast().items(), key=lambda item: item[1].position):
            live = self._live[job_id]
            live.job.queue_position, live.job.eta_seconds = place.position, place.eta_seconds
            if live.published_position != place.position:
                live.published_position = place.position
                self._runner.emit(
                    live.job,
                    progress_pb2.EVENT_TYPE_JOB_QUEUED,
                    message=f"position {place.position} in the queue",
                )

    async def place(self, job: stage_runner_pb2.Job) -> None:
        """A live job's place is kept current as the queue moves."""

    # ---- cancel -------------------------------------------------------------------------------

    async def cancel(self, stored: StoredJob) -> stage_runner_pb2.Job:
        job_id = stored.job.job_id
        live = self._live.get(job_id)
        if not_cancellable(stored, live):
            raise VidsynthError("JOB_NOT_CANCELLABLE")
        live.cancel_requested = True
        if self._waiting.pop(job_id, None) is not None:
            self._queue_moved()
            try:
                await self._runner.finish_cancelled(live)
            finally:
                self._live.pop(job_id, None)
        else:
            await self._running.cancel(live, self._runner.finish_cancelled)
        return snapshot(live.job)

    # ---- lifecycle ----------------------------------------------------------------------------

    async def resume(self) -> int:
        """Re-queues jobs a previous process left unfinished: running ones first, in order."""
        unfinished = await self._store.unfinished()
        running = [r for r in unfinished if r.job.state == common_pb2.JOB_STATE_RUNNING]
        queued = [r for r in unfinished if r.job.state == common_pb2.JOB_STATE_QUEUED]
        lives = {r.job.job_id: LiveJob(r.job, r.user_id) for r in running + queued}
        self._live.update(lives)
        for stored in running:
            self._submit(lives[stored.job.job_id], resumed=True)
        for stored in queued:
            self._submit(lives[stored.job.job_id])
        if unfinished:
            log.info("jobs.resumed", running=len(running), queued=len(queued))
        return len(unfinished)

    async def stop(self) -> None:
        self._stopping = True
        await self._running.stop()
