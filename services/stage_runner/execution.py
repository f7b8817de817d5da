"""Runs a dequeued job to its end: picks backends, drives the pipeline, publishes
events, moves the session's state, fires the webhook. A job interrupted by shutdown
stays RUNNING in the store and resumes from its last checkpoint."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

import structlog

from libs.common.enums import enum_label
from libs.common.errors import VidsynthError
from libs.common.identity import Identity, current_identity
from libs.common.log import bind_context
from libs.common.metrics import JOBS_FINISHED
from libs.common.redis_outage import REDIS_OUTAGE_ERRORS
from libs.common.rpc_status import to_status_proto
from libs.common.session_paths import session_paths
from services.stage_runner import checkpoints
from services.stage_runner.backends.base import StageBackend, stage_name
from services.stage_runner.capabilities import BackendRegistry
from services.stage_runner.config import StageRunnerSettings
from services.stage_runner.cost_model import CostModel
from services.stage_runner.job_tracing import traced_job_run
from services.stage_runner.job_view import job_to_dict
from services.stage_runner.pipeline import JobRun, Pipeline
from services.stage_runner.publisher import ProgressPublisher
from services.stage_runner.script_text import expected_speech_seconds
from services.stage_runner.session_link import SessionLink
from services.stage_runner.stage_slots import StageSlots
from services.stage_runner.storage import insufficient_storage, says_disk_full
from services.stage_runner.store import JobStore
from services.stage_runner.webhooks import WebhookSender
from vidsynth.v1 import common_pb2, progress_pb2, session_pb2, stage_runner_pb2

log = structlog.get_logger("vidsynth.stage_runner.jobs")


def job_storage_lost() -> VidsynthError:
    return VidsynthError(
        "SERVICE_UNAVAILABLE", "Job storage was unreachable while the job ran; start the job again."
    )


TERMINAL_STATES = (
    common_pb2.JOB_STATE_COMPLETED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
)


@dataclass
class LiveJob:
    """A job this process is queueing or running, with the owner it acts for."""

    job: stage_runner_pb2.Job
    user_id: str
    cancel_requested: bool = False
    # Set once the job is being settled: too late to cancel.
    finishing: bool = False
    published_position: int = -1
    # Set once settled (completed, failed or cancelled); a task that ends without it was interrupted.
    ended: bool = False


class JobRunner:
    """Runs the LiveJobs its queue hands it; it keeps no list of them (the queue does)."""

    def __init__(
        self,
        config: StageRunnerSettings,
        *,
        store: JobStore,
        registry: BackendRegistry,
        cost_model: CostModel,
        slots: StageSlots,
        sessions: SessionLink,
        publisher: ProgressPublisher,
        webhooks: WebhookSender,
        sessions_dir: Path,
        words_per_minute: float,
    ) -> None:
        self._store = store
        self._registry = registry
        self._sessions = sessions
        self._publisher = publisher
        self._webhooks = webhooks
        self._sessions_dir = sessions_dir
        self._wpm = words_per_minute
        self.pipeline = Pipeline(
            config,
            cost_model=cost_model,
            slots=slots,
            emit=self.emit,
            save=store.update,
            words_per_minute=words_per_minute,
        )

    def emit(
        self,
        job: stage_runner_pb2.Job,
        event_type: int,
        stage: int = common_pb2.STAGE_UNSPECIFIED,
        *,
        stage_percent: float = 0.0,
        message: str = "",
        error: VidsynthError | None = None,
    ) -> None:
        backend = ""
        if stage:
            backend = next((s.backend for s in job.stages if s.stage == stage), "")
        event = progress_pb2.ProgressEvent(
            type=event_type,
            session_id=job.session_id,
            job_id=job.job_id,
            stage=stage,
            stage_percent=stage_percent,
            overall_percent=job.overall_percent,
            message=message,
            eta_seconds=job.eta_seconds,
            queue_position=job.queue_position,
            backend=backend,
        )
        if error is not None:
            event.error.code = error.code
            event.error.message = error.message
        self._publisher.publish(event)

    def select_backends(self, job: stage_runner_pb2.Job) -> dict[int, StageBackend]:
        """Every stage's backend before anything runs, so a missing one fails at once."""
        chosen: dict[int, StageBackend] = {}
        for state in job.stages:
            recorded = self._registry.by_name(state.backend) if state.backend else None
            if state.status == common_pb2.STAGE_STATUS_COMPLETED and recorded is not None:
                chosen[state.stage] = recorded
                continue
            try:
                chosen[state.stage] = self._registry.select(state.stage, job.mode, job.spec)
            except VidsynthError as error:
                state.status = common_pb2.STAGE_STATUS_FAILED
                state.error.code, state.error.message = error.code, error.message
                raise
        return chosen

    @traced_job_run
    async def run(self, live: LiveJob) -> None:
        job = live.job
        # Calls to other services from this task act for the job's owner.
        current_identity.set(Identity(live.user_id, via_mesh=True))
        bind_context(session_id=job.session_id, job_id=job.job_id)
        try:
            await self._execute(live)
        except asyncio.CancelledError:
            if not live.cancel_requested:
                log.info("job.interrupted", state="left running for resume")
                raise
            await self.finish_cancelled(live)
        except VidsynthError as error:
            await self._finish_failed(live, error)
        except REDIS_OUTAGE_ERRORS as error:
            # The job store went away mid-job: an outage to retry, not a stage that failed.
            log.warning("job.storage_unreachable", error=type(error).__name__)
            await self._finish_failed(live, job_storage_lost())
        except Exception as error:
            if says_disk_full(error):  # e.g. the job store's own writes
                await self._finish_failed(live, insufficient_storage())
                return
            log.exception("job.crashed")
            await self._finish_failed(live, VidsynthError("STAGE_FAILED"))

    async def _execute(self, live: LiveJob) -> None:
        job = live.job
        paths = session_paths(self._sessions_dir, job.session_id)
        session = await self._sessions.get(job.session_id)
        assets = self._sessions.inputs(session)
        backends = self.select_backends(job)
        run = JobRun(
            job=job,
            paths=paths,
            backends=backends,
            inputs={"face_image": assets.face_image, "voice_sample": assets.voice_sample},
            facts={
                "speech_seconds": expected_speech_seconds(job.spec, self._wpm),
                "face_megapixels": assets.face_megapixels,
            },
        )
        self.pipeline.estimate_stages(run)
        resumed = job.state == common_pb2.JOB_STATE_RUNNING
        job.state = common_pb2.JOB_STATE_RUNNING
        job.queue_position = 0
        if not job.HasField("start_time"):
            job.start_time.GetCurrentTime()
        job.overall_percent = run.overall_percent()
        job.eta_seconds = run.remaining_seconds()
        await self._store.update(job)
        message = "resumed from its last completed stage" if resumed else "started"
        self.emit(job, progress_pb2.EVENT_TYPE_JOB_STARTED, message=message)
        stand_ins = [
            stage_name(stage)
            for stage, backend in backends.items()
            if backend.kind == stage_runner_pb2.BACKEND_KIND_SIMULATION
        ]
        if stand_ins and job.mode == common_pb2.PROCESSING_MODE_AUTO:
            self.emit(
                job,
                progress_pb2.EVENT_TYPE_WARNING,
                message=f"No real backend is available for {', '.join(stand_ins)}; using simulated stand-ins.",
            )
        log.info("job.started", resumed=resumed)
        await self.pipeline.run(run)
        job.overall_percent = 100.0
        await self._end(live, common_pb2.JOB_STATE_COMPLETED, "video ready")
        log.info("job.completed")

    async def _finish_failed(self, live: LiveJob, error: VidsynthError) -> None:
        job = live.job
        for state in job.stages:
            if state.status == common_pb2.STAGE_STATUS_RUNNING:
                state.status = common_pb2.STAGE_STATUS_FAILED
                state.error.code, state.error.message = error.code, error.message
                state.end_time.GetCurrentTime()
                self.emit(
                    job,
                    progress_pb2.EVENT_TYPE_STAGE_FAILED,
                    state.stage,
                    stage_percent=state.percent,
                    message=f"{stage_name(state.stage)} failed",
                    error=error,
                )
            elif state.status == common_pb2.STAGE_STATUS_FAILED and state.error.code:
                self.emit(
                    job,
                    progress_pb2.EVENT_TYPE_STAGE_FAILED,
                    state.stage,
                    message=state.error.message,
                    error=error,
                )
        job.error.CopyFrom(to_status_proto(error))
        await self._end(live, common_pb2.JOB_STATE_FAILED, error.message, error)
        log.info("job.failed", code=error.code)

    async def finish_cancelled(self, live: LiveJob) -> None:
        for state in live.job.stages:
            if state.status in (common_pb2.STAGE_STATUS_RUNNING, common_pb2.STAGE_STATUS_PENDING):
                state.status = common_pb2.STAGE_STATUS_CANCELLED
        await self._end(live, common_pb2.JOB_STATE_CANCELLED, "cancelled by the user")
        log.info("job.cancelled")

    async def _end(
        self, live: LiveJob, final_state: int, message: str, error: VidsynthError | None = None
    ) -> None:
        """Shared ending. The session moves first, so once a client sees the job finished
        (GetJob or its terminal event) the session already accepts the next job."""
        job = live.job
        live.finishing = True
        paths = session_paths(self._sessions_dir, job.session_id)
        await asyncio.to_thread(shutil.rmtree, paths.work / job.job_id, True)
        await asyncio.to_thread(checkpoints.remove_partial_outputs, paths.output, job.job_id)
        await self._sessions.follow_job(job.session_id, _SESSION_STATE_AFTER[final_state], job.job_id)
        job.state = final_state
        job.done = True
        JOBS_FINISHED.labels(enum_label(common_pb2.JobState, final_state)).inc()
        job.queue_position = 0
        job.eta_seconds = 0.0
        job.end_time.GetCurrentTime()
        await self._store.update(job)
        event_type, webhook_event = _TERMINAL_EVENTS[final_state]
        self.emit(job, event_type, message=message, error=error)
        if webhook_event and job.spec.webhook_url:
            self._webhooks.deliver_later(
                job.spec.webhook_url, webhook_event, {"type": webhook_event, "job": job_to_dict(job)}
            )
        live.ended = True


_SESSION_STATE_AFTER = {
    common_pb2.JOB_STATE_COMPLETED: session_pb2.SESSION_STATE_COMPLETED,
    common_pb2.JOB_STATE_FAILED: session_pb2.SESSION_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED: session_pb2.SESSION_STATE_READY,
}
# Terminal event, and the webhook event (completion and failure only).
_TERMINAL_EVENTS = {
    common_pb2.JOB_STATE_COMPLETED: (progress_pb2.EVENT_TYPE_JOB_COMPLETED, "job.completed"),
    common_pb2.JOB_STATE_FAILED: (progress_pb2.EVENT_TYPE_JOB_FAILED, "job.failed"),
    common_pb2.JOB_STATE_CANCELLED: (progress_pb2.EVENT_TYPE_JOB_CANCELLED, ""),
}
