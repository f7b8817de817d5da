"""The job queue: FIFO, bounded waiting room, bounded concurrency globally and per
stage (e.g. one GPU stage at a time across jobs), positions and ETAs."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

from libs.common.errors import VidsynthError

log = structlog.get_logger("vidsynth.stage_runner.queue")

MIN_RETRY_AFTER_SECONDS = 5.0


def queue_full(waiting: int, retry_after_seconds: float) -> VidsynthError:
    """QUEUE_FULL with RetryInfo, for this process's queue and the shared Redis one alike."""
    return VidsynthError(
        "QUEUE_FULL",
        f"{waiting} jobs are already waiting; try again later.",
        retry_after_seconds=max(MIN_RETRY_AFTER_SECONDS, retry_after_seconds),
        metadata={"waiting": str(waiting)},
    )


class JobQueue:
    def __init__(
        self,
        *,
        max_running: int,
        max_waiting: int,
        stage_limits: dict[int, int],
        run_job: Callable[[str], Awaitable[None]],
        on_moved: Callable[[], None],
    ) -> None:
        self.max_running = max_running
        self._max_waiting = max_waiting
        self._stage_slots = {stage: asyncio.Semaphore(n) for stage, n in stage_limits.items()}
        self._run_job = run_job
        self._on_moved = on_moved
        self._waiting: deque[str] = deque()
        self._running: dict[str, asyncio.Task] = {}
        self._stopping = False

    @property
    def waiting(self) -> list[str]:
        return list(self._waiting)

    @property
    def running(self) -> list[str]:
        return list(self._running)

    def check_capacity(self, retry_after_seconds: float) -> None:
        """QUEUE_FULL (with RetryInfo) when the waiting room is full."""
        if len(self._waiting) >= self._max_waiting:
            raise queue_full(len(self._waiting), retry_after_seconds)

    def position(self, job_id: str) -> int:
        """1-based place among waiting jobs; 0 when not waiting."""
        try:
            return self._waiting.index(job_id) + 1
        except ValueError:
            return 0

    def submit(self, job_id: str, *, front: bool = False) -> None:
        if front:
            self._waiting.appendleft(job_id)
        else:
            self._waiting.append(job_id)
        self._pump()

    def remove_waiting(self, job_id: str) -> bool:
        if job_id not in self._waiting:
            return False
        self._waiting.remove(job_id)
        self._on_moved()
        return True

    def running_task(self, job_id: str) -> asyncio.Task | None:
        return self._running.get(job_id)

    @contextlib.asynccontextmanager
    async def stage_slot(self, stage: int) -> AsyncIterator[None]:
        """Holds one of the stage's slots (when it has a limit) while the stage runs."""
        slot = self._stage_slots.get(stage)
        if slot is None:
            yield
            return
        async with slot:
            yield

    def _pump(self) -> None:
        moved = False
        while not self._stopping and self._waiting and len(self._running) < self.max_running:
            job_id = self._waiting.popleft()
            task = asyncio.create_task(self._run_job(job_id), name=f"job-{job_id}")
            self._running[job_id] = task
            task.add_done_callback(lambda done, jid=job_id: self._finished(jid, done))
            moved = True
        if moved or self._waiting:
            self._on_moved()

    def _finished(self, job_id: str, task: asyncio.Task) -> None:
        self._running.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("job.task_crashed", job_id=job_id, error=repr(task.exception()))
        self._pump()

    async def stop(self) -> None:
        """Shutdown: stop starting jobs and interrupt running ones (they stay resumable)."""
        self._stopping = True
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
