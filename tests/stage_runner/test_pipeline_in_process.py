"""The pipeline's timing in-process, on a fake clock: progress events at most every
PROGRESS_EVENT_INTERVAL_SECONDS (and always at 100 %), stage times measured on the
pipeline's clock and learned by the cost model, and, once the estimates are learned, an
ETA in every event that comes true to the (fake) second. Stages are backends that take a
set time on the clock, reporting progress as they go; the store and cost model are real."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.common import ids
from libs.common.session_paths import session_paths
from services.stage_runner.backends.base import StageInput, stage_name
from services.stage_runner.config import StageRunnerSettings
from services.stage_runner.cost_model import CostModel
from services.stage_runner.pipeline import PROGRESS_EVENT_INTERVAL_SECONDS, JobRun, Pipeline, planned_stages
from services.stage_runner.stage_slots import StageSlots
from services.stage_runner.store import SqliteJobStore
from tests.stage_runner.queue_rig import FakeClock
from vidsynth.v1 import common_pb2, progress_pb2, stage_runner_pb2

E = progress_pb2
SCRIPT = "Twelve words of script, enough to time the speech of this job."
# Fake seconds each stage takes; progress is reported every TICK.
STAGE_SECONDS = {
    common_pb2.STAGE_SCRIPT: 1.0,
    common_pb2.STAGE_VOICE: 2.0,
    common_pb2.STAGE_FACE: 1.0,
    common_pb2.STAGE_ANIMATE: 4.0,
    common_pb2.STAGE_ASSEMBLE: 2.0,
}
TICK = 0.1
WORDS_PER_MINUTE = 150.0
# Like time.monotonic, far from zero (the first progress report is always sent).
CLOCK_START = 1000.0


@dataclass
class ClockedBackend:
    """A stage that takes STAGE_SECONDS[stage] on the clock and writes a small file."""

    stage: int
    clock: FakeClock
    kind: int = stage_runner_pb2.BACKEND_KIND_SIMULATION
    needs_gpu: bool = False
    timeout_seconds: float = 0.0

    @property
    def name(self) -> str:
        return f"clocked-{stage_name(self.stage)}"

    def available(self) -> tuple[bool, str]:
        return True, ""

    async def run(self, inp: StageInput) -> dict[str, Path]:
        ticks = round(STAGE_SECONDS[self.stage] / TICK)
        for tick in range(1, ticks + 1):
            await self.clock.sleep(TICK)
            await inp.on_progress(100.0 * tick / ticks, f"tick {tick}")
        # Names the pipeline measures nothing from, but for the script (its words).
        name = {common_pb2.STAGE_SCRIPT: "script", common_pb2.STAGE_ASSEMBLE: "video"}.get(
            self.stage, stage_name(self.stage)
        )
        path = inp.work_dir / f"{name}.out"
        await asyncio.to_thread(path.write_text, SCRIPT if name == "script" else name)
        return {name: path}


@dataclass
class Seen:
    type: int
    stage: int
    stage_percent: float
    eta_seconds: float
    at: float


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(CLOCK_START)
        self.store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        self.sessions_dir = tmp_path / "sessions"
        self.seen: list[Seen] = []
        config = StageRunnerSettings(stage_runner_simulation_seconds=0.3)
        self.pipeline = Pipeline(
            config,
            cost_model=CostModel(self.store, config.stage_runner_simulation_seconds),
            slots=StageSlots.from_settings(config),
            emit=self.emit,
            save=self.store.update,
            words_per_minute=WORDS_PER_MINUTE,
            clock=self.clock,
        )

    def emit(self, job: stage_runner_pb2.Job, event_type: int, stage: int = 0, **fields) -> None:
        self.seen.append(
            Seen(event_type, stage, fields.get("stage_percent", 0.0), job.eta_seconds, self.clock.now)
        )

    async def run_job(self) -> tuple[stage_runner_pb2.Job, list[Seen]]:
        """One job through every planned stage, as JobRunner drives it; the clock jumps to
        the next tick whenever the job waits on it."""
        job = stage_runner_pb2.Job(
            job_id=ids.new_id("job"),
            session_id=ids.new_id("session"),
            state=common_pb2.JOB_STATE_RUNNING,
            spec=stage_runner_pb2.JobSpec(script_text=SCRIPT),
        )
        for stage in planned_stages(job.spec):
            job.stages.add(stage=stage, status=common_pb2.STAGE_STATUS_PENDING)
        await self.store.insert(job, "alice", "", "")
        run = JobRun(
            job=job,
            paths=session_paths(self.sessions_dir, job.session_id),
            backends={stage: ClockedBackend(stage, self.clock) for stage in STAGE_SECONDS},
            inputs={},
            # As the script's words will say (12 words at 150 a minute).
            facts={"speech_seconds": 4.8, "face_megapixels": 0.1},
        )
        self.pipeline.estimate_stages(run)
        job.eta_seconds = run.remaining_seconds()
        first = len(self.seen)
        task = asyncio.create_task(self.pipeline.run(run))
        while not task.done():
            if not await self.clock.advance_to_next_sleeper():
                # The job is on a thread (a checkpoint, the store): real time, briefly.
                await asyncio.sleep(0.001)
        await task
        return job, self.seen[first:]


@pytest.fixture
async def rig(tmp_path):
    made = Rig(tmp_path)
    yield made
    await made.store.close()


async def test_progress_events_are_spaced_and_the_last_one_is_sent(rig):
    job, seen = await rig.run_job()
    assert job.state == common_pb2.JOB_STATE_RUNNING  # the runner, not the pipeline, ends it
    for stage in STAGE_SECONDS:
        progress = [e for e in seen if e.type == E.EVENT_TYPE_STAGE_PROGRESS and e.stage == stage]
        # One report per tick, events no closer than the interval, and the 100 % report sent.
        ticks = round(STAGE_SECONDS[stage] / TICK)
        assert len(progress) < ticks and progress[-1].stage_percent == 100.0
        # Every gap but the one before the 100 % report (sent whatever the interval).
        gaps = [b.at - a.at for a, b in itertools.pairwise(progress[:-1])]
        assert all(gap >= PROGRESS_EVENT_INTERVAL_SECONDS for gap in gaps), (stage, gaps)
        assert progress[0].stage_percent == pytest.approx(100.0 / ticks)


async def test_stage_times_are_measured_on_the_clock_and_learned(rig):
    job, _ = await rig.run_job()
    assert [s.status for s in job.stages] == [common_pb2.STAGE_STATUS_COMPLETED] * len(STAGE_SECONDS)
    # Before any measurement the simulation estimate is the 0.3 s default per stage, plus units.
    second, _ = await rig.run_job()
    learned = {s.stage: s.estimated_seconds for s in second.stages}
    assert learned == pytest.approx(STAGE_SECONDS)
    # The job as a whole took the sum of its stages on the clock.
    assert rig.clock.now == pytest.approx(CLOCK_START + 2 * sum(STAGE_SECONDS.values()))


async def test_once_estimates_are_learned_every_events_eta_comes_true(rig):
    await rig.run_job()  # teaches the cost model each stage's time
    _, seen = await rig.run_job()
    end = seen[-1].at
    assert seen[-1].type == E.EVENT_TYPE_STAGE_COMPLETED and seen[-1].eta_seconds == pytest.approx(0.0)
    for event in seen:
        assert event.eta_seconds == pytest.approx(end - event.at, abs=1e-6), event
    etas = [e.eta_seconds for e in seen]
    assert etas == sorted(etas, reverse=True)
