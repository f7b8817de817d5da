"""The job queue of one process: a bounded waiting room (globally and per user), fair
shares of the run slots between users (fair_share.py), bounded concurrency globally, per
user, on the GPU and (optionally) per stage."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import structlog

from libs.common.errors import VidsynthError
from services.stage_runner.fair_share import Waiting, next_to_run

log = structlog.get_logger("vidsynth.stage_runner.queue")

MIN_RETRY_AFTER_SECONDS = 5.0
# Longer than a child's SIGTERM grace (children.TERMINATE_GRACE_SECONDS), which a second
# cancellation would cut short.
CANCEL_RETRY_SECONDS = 2.0
STOP_WAIT_SECONDS = 10.0


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


class JobQueue:
    def __init__(
        self,
        *,
        max_running: int,
        stage_limits: dict[int, int],
        gpu_slots: int,
        run_job: Callable[[str], Awaitable[None]],
        on_moved: Callable[[], None],
        on_finished: Callable[[str], None] = lambda job_id: None,
        max_running_per_user: int | None = None,
    ) -> None:
        self.max_running = max_running
        # None: no per-user cap here (the shared Redis queue enforces it cluster-wide).
        self.max_running_per_user = max_running_per_user
        self._stage_slots = {stage: asyncio.Semaphore(n) for stage, n in stage_limits.items()}
        self._gpu_slots = asyncio.Semaphore(gpu_slots)
        self._run_job = run_job
        self._on_moved = on_moved
        self._on_finished = on_finished
        # Arrival order; the fair rule picks from it (fair_share.next_to_run).
        self._waiting: dict[str, Waiting] = {}
        self._running: dict[str, asyncio.Task] = {}
        self._running_users: dict[str, str] = {}
        # user -> serial of their last start, for the round-robin between users.
        self.served: dict[str, int] = {}
        self._serial = itertools.count()
        self._stopping = False

    @property
    def waiting(self) -> list[str]:
        """Waiting job ids in arrival order (positions come from fair_share.forecast)."""
        return list(self._waiting)

    @property
    def waiting_entries(self) -> list[Waiting]:
        return list(self._waiting.values())

    @property
    def running(self) -> list[str]:
        return list(self._running)

    def submit(self, job_id: str, user_id: str, *, resumed: bool = False) -> None:
        self._waiting[job_id] = Waiting(job_id, user_id, resumed=resumed)
        self._pump()

    def remove_waiting(self, job_id: str) -> bool:
        if self._waiting.pop(job_id, None) is None:
            return False
        self._on_moved()
        return True

    def running_task(self, job_id: str) -> asyncio.Task | None:
        return self._running.get(job_id)

    @contextlib.asynccontextmanager
    async def stage_slot(self, stage: int, needs_gpu: bool) -> AsyncIterator[None]:
        """Holds one of the stage's slots (when it has a limit) and, for a backend that needs
        the GPU, a GPU slot, while the stage runs. CPU stages of different jobs (users) run
        side by side, so no user's short job waits for another's long stage on the CPU."""
        async with contextlib.AsyncExitStack() as held:
            slot = self._stage_slots.get(stage)
            if slot is not None:
                await held.enter_async_context(slot)
            if needs_gpu:
                await held.enter_async_context(self._gpu_slots)
            yield

    def _next(self) -> Waiting | None:
        counts = Counter(self._running_users.values())
        return next_to_run(list(self._waiting.values()), counts, self.max_running_per_user, self.served)

    def _pump(self) -> None:
        moved = False
        while not self._stopping and len(self._running) < self.max_running:
            entry = self._next()
            if entry is None:
                break
            del self._waiting[entry.job_id]
            task = asyncio.create_task(self._run_job(entry.job_id), name=f"job-{entry.job_id}")
            self._running[entry.job_id] = task
            self._running_users[entry.job_id] = entry.user_id
            self.served[entry.user_id] = next(self._serial)
            task.add_done_callback(lambda done, jid=entry.job_id: self._finished(jid, done))
            moved = True
        if moved or self._waiting:
            self._on_moved()

    def _finished(self, job_id: str, task: asyncio.Task) -> None:
        self._running.pop(job_id, None)
        self._running_users.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("job.task_crashed", job_id=job_id, error=repr(task.exception()))
        # However the task ended, even cancelled before its first step (its own
        # try/finally never ran then).
        self._on_finished(job_id)
        self._pump()

    async def stop(self) -> None:
        """Shutdown: stop starting jobs and interrupt running ones (they stay resumable)."""
        self._stopping = True
        await cancel_until_done(list(self._running.values()), STOP_WAIT_SECONDS)
