"""An in-process rig for the job queue: the real LocalJobQueue on a real SQLite job store,
driven by a runner whose jobs take their estimated time on a fake clock. The queue has no
clock of its own (it moves when jobs end), so the fake clock is the jobs' run time: tests
advance it and see who starts, who waits, and what positions and ETAs were published."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field

from libs.common import ids
from services.stage_runner.config import StageRunnerSettings
from services.stage_runner.execution import LiveJob
from services.stage_runner.local_queue import LocalJobQueue
from services.stage_runner.store import SqliteJobStore
from vidsynth.v1 import common_pb2, progress_pb2, stage_runner_pb2

# Loop turns that let ended tasks' callbacks start the next jobs.
SETTLE_TURNS = 20


class FakeClock:
    """Monotonic seconds that move only when the test advances them."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        waker = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), waker))
        await waker

    async def advance(self, seconds: float) -> None:
        """Moves time on by `seconds`, waking every sleeper in order as its time comes."""
        target = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            wake_at, _, waker = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake_at)
            if not waker.done():
                waker.set_result(None)
            await settle()
        self.now = target
        await settle()

    async def advance_to_next_sleeper(self) -> bool:
        """Moves time to the earliest sleeper's wake-up and wakes it; False when none sleeps."""
        while self._sleepers:
            wake_at, _, waker = heapq.heappop(self._sleepers)
            if waker.done():
                continue
            self.now = max(self.now, wake_at)
            waker.set_result(None)
            await settle()
            return True
        return False


async def settle() -> None:
    for _ in range(SETTLE_TURNS):
        await asyncio.sleep(0)


@dataclass
class Event:
    job_id: str
    type: int
    position: int
    eta_seconds: float
    at: float


@dataclass
class ClockedRunner:
    """Stands in for JobRunner: a job runs for its estimated seconds on the clock, its ETA
    counting down each second, and ends as JobRunner's jobs do (or is cancelled)."""

    clock: FakeClock
    events: list[Event] = field(default_factory=list)
    started: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)

    def emit(self, job: stage_runner_pb2.Job, event_type: int, stage: int = 0, **_: object) -> None:
        self.events.append(Event(job.job_id, event_type, job.queue_position, job.eta_seconds, self.clock.now))

    def queued_events(self, job_id: str) -> list[Event]:
        return [e for e in self.events if e.job_id == job_id and e.type == progress_pb2.EVENT_TYPE_JOB_QUEUED]

    async def run(self, live: LiveJob) -> None:
        job = live.job
        job.state = common_pb2.JOB_STATE_RUNNING
        job.queue_position = 0
        self.started[job.job_id] = self.clock.now
        remaining = sum(s.estimated_seconds for s in job.stages)
        job.eta_seconds = remaining
        try:
            while remaining > 0:
                step = min(1.0, remaining)
                await self.clock.sleep(step)
                remaining -= step
                job.eta_seconds = remaining
        except asyncio.CancelledError:
            if not live.cancel_requested:
                raise
            await self.finish_cancelled(live)
            return
        self._end(live, common_pb2.JOB_STATE_COMPLETED)

    async def finish_cancelled(self, live: LiveJob) -> None:
        self._end(live, common_pb2.JOB_STATE_CANCELLED)

    def _end(self, live: LiveJob, state: int) -> None:
        live.finishing = True
        live.job.state = state
        live.job.eta_seconds = 0.0
        self.finished[live.job.job_id] = self.clock.now
        live.ended = True


def new_job(seconds: float, stages: int = 5) -> stage_runner_pb2.Job:
    job = stage_runner_pb2.Job(
        job_id=ids.new_id("job"), session_id=ids.new_id("session"), state=common_pb2.JOB_STATE_QUEUED
    )
    for stage in range(1, stages + 1):
        job.stages.add(stage=stage, estimated_seconds=seconds / stages)
    return job


@dataclass
class QueueRig:
    queue: LocalJobQueue
    runner: ClockedRunner
    clock: FakeClock
    store: SqliteJobStore
    lives: dict[str, LiveJob] = field(default_factory=dict)

    async def submit(self, user: str, seconds: float = 5.0) -> stage_runner_pb2.Job:
        """What JobManager.start does once a job is accepted: store it, then queue it."""
        await self.queue.check_capacity(user)
        job = new_job(seconds)
        await self.store.insert(job, user, "", "")
        live = LiveJob(job, user)
        self.lives[job.job_id] = live
        await self.queue.enqueue(live)
        copy = stage_runner_pb2.Job()
        copy.CopyFrom(job)
        return copy

    def job(self, job_id: str) -> stage_runner_pb2.Job:
        return self.lives[job_id].job

    def states(self, jobs: list[stage_runner_pb2.Job]) -> list[int]:
        return [self.job(j.job_id).state for j in jobs]


def make_rig(tmp_path, **settings) -> QueueRig:
    clock = FakeClock()
    runner = ClockedRunner(clock)
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    config = StageRunnerSettings(**settings)
    return QueueRig(LocalJobQueue(config, runner=runner, store=store), runner, clock, store)
