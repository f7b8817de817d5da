"""Runs one job's stages in order through the backend interface, checkpointing each
completed stage so a restarted runner resumes from the last one."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from libs.common.errors import VidsynthError
from libs.common.session_paths import SessionPaths
from services.stage_runner import checkpoints, storage
from services.stage_runner.backends.base import STAGE_ORDER, StageBackend, StageInput, stage_name
from services.stage_runner.config import StageRunnerSettings
from services.stage_runner.cost_model import CostModel, work_units
from services.stage_runner.job_tracing import traced_stage
from services.stage_runner.media.ffmpeg import duration_of, probe
from services.stage_runner.media.progress import ProgressCallback
from services.stage_runner.script_text import speech_seconds_for_text
from services.stage_runner.stage_slots import StageSlots
from vidsynth.v1 import common_pb2, progress_pb2, stage_runner_pb2

log = structlog.get_logger("vidsynth.stage_runner.pipeline")

# Emits an event of `type` about the job: (job, type, stage, extra fields).
Emit = Callable[..., None]
Save = Callable[[stage_runner_pb2.Job], Awaitable[None]]
PROGRESS_EVENT_INTERVAL_SECONDS = 0.25
TIMEOUT_GRACE_SECONDS = 5.0
FINAL_OUTPUTS = ("video", "thumbnail", "audio", "script", "captions", "captions_srt")


def planned_stages(spec: stage_runner_pb2.JobSpec) -> list[int]:
    return [s for s in STAGE_ORDER if s != common_pb2.STAGE_ENHANCE or spec.options.enhance]


@dataclass
class JobRun:
    """One run of a job (first or resumed): the live Job and what its stages need."""

    job: stage_runner_pb2.Job
    paths: SessionPaths
    backends: dict[int, StageBackend]
    inputs: dict[str, Path]
    facts: dict[str, float] = field(default_factory=dict)

    @property
    def work_root(self) -> Path:
        return self.paths.work / self.job.job_id

    def stage_state(self, stage: int) -> stage_runner_pb2.StageState:
        return next(s for s in self.job.stages if s.stage == stage)

    # The one computation of a job's overall percent and ETA: every event carries both, and
    # GetProgress's snapshot takes them from the job's last event.
    def overall_percent(self, current: int | None = None, current_percent: float = 0.0) -> float:
        total = sum(max(s.estimated_seconds, 0.01) for s in self.job.stages) or 1.0
        done = sum(
            max(s.estimated_seconds, 0.01)
            for s in self.job.stages
            if s.status == common_pb2.STAGE_STATUS_COMPLETED
        )
        if current is not None:
            done += max(self.stage_state(current).estimated_seconds, 0.01) * current_percent / 100.0
        return min(100.0, 100.0 * done / total)

    def remaining_seconds(self) -> float:
        remaining = 0.0
        for s in self.job.stages:
            if s.status != common_pb2.STAGE_STATUS_COMPLETED:
                remaining += s.estimated_seconds * (1.0 - s.percent / 100.0)
        return remaining


class Pipeline:
    def __init__(
        self,
        config: StageRunnerSettings,
        *,
        cost_model: CostModel,
        slots: StageSlots,
        emit: Emit,
        save: Save,
        words_per_minute: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Seconds for progress-event spacing and measured stage times (tests pass a fake one).
        self._clock = clock
        self._cost = cost_model
        self._slots = slots
        self._emit = emit
        self._save = save
        self._stage_timeout = config.stage_runner_stage_timeout_seconds
        self._wpm = words_per_minute

    def estimate_stages(self, run: JobRun) -> None:
        """Sets each pending stage's backend and estimated seconds from the cost model."""
        for state in run.job.stages:
            if state.status == common_pb2.STAGE_STATUS_COMPLETED:
                continue
            backend = run.backends[state.stage]
            units = self._units(state.stage, run)
            state.backend = backend.name
            state.estimated_seconds = self._cost.estimate(backend.name, backend.kind, state.stage, units)

    def _units(self, stage: int, run: JobRun) -> float:
        return work_units(
            stage, run.facts.get("speech_seconds", 1.0), run.facts.get("face_megapixels", 0.0), run.job.spec
        )

    async def run(self, run: JobRun) -> None:
        try:
            await self._run_stages(run)
            await self._publish(run)
        except (OSError, sqlite3.Error, VidsynthError) as error:
            # The runner then removes the job's work dir and any half-published outputs.
            if await asyncio.to_thread(storage.ran_out_of_space, error, run.work_root):
                log.warning("job.out_of_disk", error=repr(error))
                raise storage.insufficient_storage() from error
            raise

    async def _run_stages(self, run: JobRun) -> None:
        for stage in planned_stages(run.job.spec):
            stage_dir = run.work_root / stage_name(stage)
            checkpoint = await asyncio.to_thread(checkpoints.read_checkpoint, stage_dir)
            if checkpoint is not None:
                await self._restore(run, stage, checkpoint)
                continue
            await self._run_stage(run, stage, stage_dir)

    @staticmethod
    async def _publish(run: JobRun) -> None:
        files = {name: run.inputs[name] for name in FINAL_OUTPUTS if name in run.inputs}
        published = await asyncio.to_thread(
            checkpoints.publish_outputs, files, run.paths.output, run.job.job_id
        )
        del run.job.outputs[:]
        for output in published:
            run.job.outputs.add(
                name=output.name,
                content_type=output.content_type,
                size_bytes=output.size_bytes,
                sha256=output.sha256,
            )

    @traced_stage(restored=True)
    async def _restore(self, run: JobRun, stage: int, checkpoint: checkpoints.StageCheckpoint) -> None:
        """A stage finished before a restart: take its outputs, redo nothing."""
        run.inputs.update(checkpoint.outputs)
        run.facts.update(checkpoint.facts)
        state = run.stage_state(stage)
        if state.status != common_pb2.STAGE_STATUS_COMPLETED:
            # Killed between the manifest and the job row: finish the bookkeeping now.
            state.status = common_pb2.STAGE_STATUS_COMPLETED
            state.percent = 100.0
            state.backend = checkpoint.backend
            state.end_time.GetCurrentTime()
            run.job.overall_percent = run.overall_percent()
            run.job.eta_seconds = run.remaining_seconds()
            await self._save(run.job)
            self._emit(
                run.job,
                progress_pb2.EVENT_TYPE_STAGE_COMPLETED,
                stage,
                stage_percent=100.0,
                message=f"{stage_name(stage)} done (from checkpoint)",
            )

    async def _run_stage(self, run: JobRun, stage: int, stage_dir: Path) -> None:
        # The stage's slots (e.g. one GPU stage at a time) cover the whole stage, bookkeeping included.
        async with self._slots.hold(stage, run.backends[stage].needs_gpu):
            await self._run_stage_in_slot(run, stage, stage_dir)

    @traced_stage(restored=False)
    async def _run_stage_in_slot(self, run: JobRun, stage: int, stage_dir: Path) -> None:
        """One stage from a clean dir to its checkpoint (a checkpointed one is skipped in
        _run_stages, and its slot is held by _run_stage)."""
        await self._stage_started(run, stage, stage_dir)
        outputs, seconds = await self._run_backend(run, stage, stage_dir)
        await self._checkpoint(run, stage, stage_dir, outputs, seconds)
        await self._stage_completed(run, stage, seconds)

    # ---- a stage's events ---------------------------------------------------------------------

    async def _stage_started(self, run: JobRun, stage: int, stage_dir: Path) -> None:
        """A clean stage dir, the stage RUNNING in the store, and stage.started."""
        backend = run.backends[stage]
        state = run.stage_state(stage)
        await asyncio.to_thread(checkpoints.reset_dir, stage_dir)
        state.status = common_pb2.STAGE_STATUS_RUNNING
        state.backend = backend.name
        state.percent = 0.0
        state.ClearField("error")
        state.start_time.GetCurrentTime()
        await self._save(run.job)
        self._emit(
            run.job, progress_pb2.EVENT_TYPE_STAGE_STARTED, stage, message=f"{stage_name(stage)} started"
        )

    def _progress_reporter(self, run: JobRun, stage: int) -> ProgressCallback:
        """The backend's progress into the job's percent and ETA, published as stage.progress
        at most every PROGRESS_EVENT_INTERVAL_SECONDS (and always at 100 %)."""
        state = run.stage_state(stage)
        last_event = 0.0

        async def on_progress(percent: float, message: str) -> None:
            nonlocal last_event
            percent = max(0.0, min(100.0, percent))
            state.percent = percent
            run.job.overall_percent = run.overall_percent(stage, percent)
            run.job.eta_seconds = run.remaining_seconds()
            now = self._clock()
            if now - last_event >= PROGRESS_EVENT_INTERVAL_SECONDS or percent >= 100.0:
                last_event = now
                self._emit(
                    run.job,
                    progress_pb2.EVENT_TYPE_STAGE_PROGRESS,
                    stage,
                    stage_percent=percent,
                    message=message,
                )

        return on_progress

    async def _stage_completed(self, run: JobRun, stage: int, seconds: float) -> None:
        """The stage COMPLETED in the store, the job's percent and ETA, and stage.completed."""
        state = run.stage_state(stage)
        state.status = common_pb2.STAGE_STATUS_COMPLETED
        state.percent = 100.0
        state.end_time.GetCurrentTime()
        run.job.overall_percent = run.overall_percent()
        run.job.eta_seconds = run.remaining_seconds()
        await self._save(run.job)
        self._emit(
            run.job,
            progress_pb2.EVENT_TYPE_STAGE_COMPLETED,
            stage,
            stage_percent=100.0,
            message=f"{stage_name(stage)} done in {seconds:.1f} s",
        )

    # ---- running and checkpointing ------------------------------------------------------------

    async def _run_backend(self, run: JobRun, stage: int, stage_dir: Path) -> tuple[dict[str, Path], float]:
        """The stage's backend within its time limit: its outputs, and how long it took."""
        backend = run.backends[stage]
        stage_input = StageInput(
            job_id=run.job.job_id,
            session_id=run.job.session_id,
            stage=stage,
            work_dir=stage_dir,
            inputs=dict(run.inputs),
            spec=run.job.spec,
            on_progress=self._progress_reporter(run, stage),
            facts=dict(run.facts),
            timeout_seconds=self._stage_timeout,
        )
        outer_timeout = max(self._stage_timeout, backend.timeout_seconds)
        started = self._clock()
        try:
            async with asyncio.timeout(outer_timeout + TIMEOUT_GRACE_SECONDS):
                outputs = await backend.run(stage_input)
        except TimeoutError:
            raise VidsynthError("STAGE_TIMEOUT", f"The {stage_name(stage)} stage took too long.") from None
        return outputs, self._clock() - started

    async def _checkpoint(
        self, run: JobRun, stage: int, stage_dir: Path, outputs: dict[str, Path], seconds: float
    ) -> None:
        """Writes the stage's checkpoint (a restarted runner skips the stage), hands its
        outputs and measured facts to later stages, and teaches the cost model its time."""
        backend = run.backends[stage]
        facts = await self._measure(stage, outputs)
        await asyncio.to_thread(
            checkpoints.write_checkpoint,
            stage_dir,
            checkpoints.StageCheckpoint(stage_name(stage), backend.name, outputs, facts, seconds),
        )
        run.inputs.update(outputs)
        run.facts.update(facts)
        await self._cost.record(backend.name, stage, self._units(stage, run), seconds)

    async def _measure(self, stage: int, outputs: dict[str, Path]) -> dict[str, float]:
        """Facts later stages and estimates use: the real speech length once known."""
        if stage == common_pb2.STAGE_SCRIPT and "script" in outputs:
            text = await asyncio.to_thread(outputs["script"].read_text, "utf-8")
            return {"speech_seconds": speech_seconds_for_text(text, self._wpm)}
        if stage == common_pb2.STAGE_VOICE and "audio" in outputs:
            seconds = duration_of(await probe(outputs["audio"]))
            return {"speech_seconds": seconds} if seconds > 0 else {}
        return {}
