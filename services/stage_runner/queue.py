"""The job queue's shape: the JobQueue protocol the JobManager is composed with (this
process alone, local_queue.py; every replica on one Redis, redis_jobs.py), the jobs this
process runs (one task each), and the refusals both queues answer with."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol

import structlog

from libs.common.errors import VidsynthError
from services.stage_runner.execution import TERMINAL_STATES, LiveJob
from services.stage_runner.fair_share import Forecast, Waiting
from services.stage_runner.store import StoredJob
from vidsynth.v1 import common_pb2, stage_runner_pb2

log = structlog.get_logger("vidsynth.stage_runner.queue")

MIN_RETRY_AFTER_SECONDS = 5.0
# Longer than a child's SIGTERM grace (children.TERMINATE_GRACE_SECONDS), which a second
# cancellation would cut short.
CANCEL_RETRY_SECONDS = 2.0
CANCEL_WAIT_SECONDS = 5.0
STOP_WAIT_SECONDS = 10.0


class JobQueue(Protocol):
    """Where accepted jobs wait for a run slot and who runs them. The JobManager owns the
    resources (submit, read, cancel); the queue owns the jobs' places and run tasks."""

    @property
    def waiting_count(self) -> int:
        """Jobs waiting in this process (for the gauges)."""

    @property
    def running_count(self) -> int: ...

    async def sync(self) -> None:
        """Before a submit: bring state shared with other replicas (the processing mode) up to date."""

    async def check_capacity(self, user_id: str) -> None:
        """QUEUE_FULL or USER_JOB_LIMIT_REACHED when the waiting room has no place for the user."""

    async def enqueue(self, live: LiveJob) -> None:
        """Sets the stored new job's place and ETA, publishes job.queued and queues it."""

    def live_job(self, job_id: str) -> LiveJob | None:
        """The job, when this process queues or runs it."""

    def running_task(self, job_id: str) -> asyncio.Task | None: ...

    async def place(self, job: stage_runner_pb2.Job) -> None:
        """Sets a queued job's current place in line and ETA (a read's view)."""

    async def cancel(self, stored: StoredJob) -> stage_runner_pb2.Job | None:
        """Cancels an owned job wherever it waits or runs; JOB_NOT_CANCELLABLE once it is
        settled. None when another replica runs it and has not stopped it yet: read it again."""

    async def resume(self) -> int:
        """Starts taking work, with the jobs a previous process left unfinished; returns how many."""

    async def stop(self) -> None:
        """Shutdown: start nothing more, interrupt running jobs (they stay resumable)."""


async def cancel_until_done(
    tasks: Iterable[asyncio.Task], patience: float, still_cancellable: Callable[[], bool] = lambda: True
) -> None:
    """Cancels `tasks` and waits for them to end (at most `patience` seconds), cancelling again every
    CANCEL_RETRY_SECONDS while `still_cancellable()`: a cancellation that lands inside a Redis
    command can be lost in redis-py (redis/redis-py#2028), and the task would run on."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    pending = {task for task in tasks if not task.done()}
    while pending and (left := deadline - loop.time()) > 0:
        if still_cancellable():
            for task in pending:
                task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(CANCEL_RETRY_SECONDS, left))


def queue_full(waiting: int, retry_after_seconds: float) -> VidsynthError:
    """QUEUE_FULL with RetryInfo, for this process's queue and the shared Redis one alike."""
    return VidsynthError(
        "QUEUE_FULL",
        f"{waiting} jobs are already waiting; try again later.",
        retry_after_seconds=max(MIN_RETRY_AFTER_SECONDS, retry_after_seconds),
        metadata={"waiting": str(waiting)},
    )


def user_job_limit(waiting: int, limit: int, retry_after_seconds: float) -> VidsynthError:
    """USER_JOB_LIMIT_REACHED with RetryInfo: when the user's first waiting job should start."""
    return VidsynthError(
        "USER_JOB_LIMIT_REACHED",
        f"You already have {waiting} jobs waiting; try again when one has started, or cancel one.",
        retry_after_seconds=max(MIN_RETRY_AFTER_SECONDS, retry_after_seconds),
        metadata={"waiting": str(waiting), "limit": str(limit)},
    )


def refuse_past_limits(
    user_id: str,
    waiting: list[Waiting],
    ahead: Mapping[str, Forecast],
    max_waiting: int,
    max_waiting_per_user: int,
) -> None:
    """USER_JOB_LIMIT_REACHED past the user's share of the waiting room, QUEUE_FULL past
    the whole room; RetryInfo says when a place should free (a waiting job starts)."""
    mine = [entry.job_id for entry in waiting if entry.user_id == user_id]
    if len(mine) >= max_waiting_per_user:
        first_start = min((ahead[j].start_seconds for j in mine if j in ahead), default=0.0)
        raise user_job_limit(len(mine), max_waiting_per_user, first_start)
    if len(waiting) >= max_waiting:
        raise queue_full(len(waiting), min((f.start_seconds for f in ahead.values()), default=0.0))


def total_estimate(job: stage_runner_pb2.Job) -> float:
    return sum(s.estimated_seconds for s in job.stages)


def remaining_estimate(job: stage_runner_pb2.Job) -> float:
    """A running job's ETA; a job dequeued but not started yet still has its whole estimate."""
    started = job.state == common_pb2.JOB_STATE_RUNNING
    return job.eta_seconds if started else total_estimate(job)


def snapshot(job: stage_runner_pb2.Job) -> stage_runner_pb2.Job:
    copy = stage_runner_pb2.Job()
    copy.CopyFrom(job)
    return copy


def not_cancellable(stored: StoredJob, live: LiveJob | None) -> bool:
    return stored.job.state in TERMINAL_STATES or live is None or live.finishing


class RunningJobs:
    """The jobs this process runs now, one asyncio task each."""

    def __init__(
        self, run: Callable[[LiveJob], Awaitable[None]], on_ended: Callable[[LiveJob], None]
    ) -> None:
        self._run = run
        self._on_ended = on_ended
        self._jobs: dict[str, tuple[LiveJob, asyncio.Task]] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def start(self, live: LiveJob) -> None:
        job_id = live.job.job_id
        task = asyncio.create_task(self._run(live), name=f"job-{job_id}")
        self._jobs[job_id] = (live, task)
        task.add_done_callback(lambda done: self._finished(live, done))

    def get(self, job_id: str) -> LiveJob | None:
        entry = self._jobs.get(job_id)
        return entry[0] if entry else None

    def task(self, job_id: str) -> asyncio.Task | None:
        entry = self._jobs.get(job_id)
        return entry[1] if entry else None

    def jobs(self) -> list[LiveJob]:
        return [live for live, _ in self._jobs.values()]

    def user_counts(self) -> Counter[str]:
        return Counter(live.user_id for live, _ in self._jobs.values())

    def _finished(self, live: LiveJob, task: asyncio.Task) -> None:
        self._jobs.pop(live.job.job_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("job.task_crashed", job_id=live.job.job_id, error=repr(task.exception()))
        # However the task ended, even cancelled before its first step (its own
        # try/finally never ran then).
        self._on_ended(live)

    async def cancel(self, live: LiveJob, finish_cancelled: Callable[[LiveJob], Awaitable[None]]) -> None:
        task = self.task(live.job.job_id)
        if task is None:
            return
        # Not once the job is being settled: that must run to its end.
        await cancel_until_done([task], CANCEL_WAIT_SECONDS, lambda: not live.finishing)
        if task.done() and not live.finishing:
            # Cancelled before its first step: run() never saw the cancellation.
            await finish_cancelled(live)

    async def stop(self) -> None:
        await cancel_until_done([task for _, task in self._jobs.values()], STOP_WAIT_SECONDS)
