"""Jobs as resources: submit (idempotent, within the user's and the global share of the
waiting room), read, list, cancel, estimate. Where jobs wait and run is the queue's
business (queue.JobQueue: local_queue.py, or redis_jobs.py with VIDSYNTH_REDIS_URL)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

import structlog

from libs.common import ids, tracing
from libs.common.errors import VidsynthError
from libs.common.identity import require_identity
from libs.common.outputs import OUTPUT_FILES
from libs.common.redis_outage import redis_outage_as_unavailable
from services.stage_runner import job_pages, spec_checks
from services.stage_runner.backends.builtin import CAPTION_OUTPUTS, CAPTIONED_VOICES
from services.stage_runner.capabilities import BackendRegistry
from services.stage_runner.config import StageRunnerSettings
from services.stage_runner.cost_model import CostModel, work_units
from services.stage_runner.execution import LiveJob
from services.stage_runner.pipeline import planned_stages
from services.stage_runner.queue import JobQueue, snapshot
from services.stage_runner.redis_store import IdempotencyKeyTaken
from services.stage_runner.script_text import expected_speech_seconds
from services.stage_runner.session_link import SessionLink
from services.stage_runner.storage import disk_full_as_insufficient_storage
from services.stage_runner.store import JobStore, StoredJob
from services.stage_runner.webhooks import check_webhook_url
from vidsynth.v1 import common_pb2, session_pb2, stage_runner_pb2

log = structlog.get_logger("vidsynth.stage_runner.jobs")

# Back-pressure hooks (e.g. INSUFFICIENT_STORAGE / INSUFFICIENT_MEMORY) run before a job is accepted.
AdmissionCheck = Callable[[], Awaitable[None]]


def _outage_as_unavailable(method):
    """An unreachable job store or queue (Redis) is a retryable outage for the caller."""

    @functools.wraps(method)
    async def wrapper(self: JobManager, *args, **kwargs):
        async with redis_outage_as_unavailable("Job storage"):
            return await method(self, *args, **kwargs)

    return wrapper


class JobManager:
    """Jobs as resources, composed with the queue they wait and run in (queue.JobQueue)."""

    def __init__(
        self,
        config: StageRunnerSettings,
        *,
        store: JobStore,
        registry: BackendRegistry,
        cost_model: CostModel,
        sessions: SessionLink,
        queue: JobQueue,
        words_per_minute: float,
        admission_checks: list[AdmissionCheck] | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._cost = cost_model
        self._sessions = sessions
        self.queue = queue
        self._max_script_chars = config.stage_runner_max_script_chars
        self._wpm = words_per_minute
        self._webhook_hosts = config.webhook_hosts
        self._webhook_secret_set = bool(config.stage_runner_webhook_secret.get_secret_value())
        self.admission_checks: list[AdmissionCheck] = list(admission_checks or [])
        self._submit_lock = asyncio.Lock()

    # ---- submit -------------------------------------------------------------------------------

    @_outage_as_unavailable
    async def start(self, request: stage_runner_pb2.StartJobRequest) -> stage_runner_pb2.Job:
        await self.queue.sync()
        try:
            return await self._submit(request)
        except IdempotencyKeyTaken:
            # Another replica accepted the same key a moment ago: answer with its job.
            existing = await self._store.find_idempotent(require_identity().user_id, request.request_id)
            if existing is None:
                raise VidsynthError("IDEMPOTENCY_CONFLICT") from None
            if existing.spec_hash != spec_checks.request_fingerprint(request.session_id, request.spec):
                raise VidsynthError("IDEMPOTENCY_CONFLICT") from None
            return await self.get(existing.job.job_id)

    async def _submit(self, request: stage_runner_pb2.StartJobRequest) -> stage_runner_pb2.Job:
        identity = require_identity()
        ids.check_id("session", request.session_id)
        spec_checks.check_spec(request.spec, self._max_script_chars)
        if request.request_id:
            spec_checks.check_idempotency_key(request.request_id)
        if request.spec.webhook_url:
            check_webhook_url(request.spec.webhook_url, self._webhook_hosts, self._webhook_secret_set)
        fingerprint = spec_checks.request_fingerprint(request.session_id, request.spec)
        async with self._submit_lock:
            if request.request_id:
                existing = await self._store.find_idempotent(identity.user_id, request.request_id)
                if existing is not None:
                    if existing.spec_hash != fingerprint:
                        raise VidsynthError("IDEMPOTENCY_CONFLICT")
                    return self._current(existing)
            # The single place back-pressure refuses new work.
            for admission_check in self.admission_checks:
                await admission_check()
            session = await self._sessions.get_startable(request.session_id)
            await self.queue.check_capacity(identity.user_id)
            job = self._new_job(request, session)
            await self._sessions.set_state(
                request.session_id, session_pb2.SESSION_STATE_PROCESSING, job.job_id
            )
            try:
                with disk_full_as_insufficient_storage():
                    await self._store.insert(
                        job, identity.user_id, request.request_id, fingerprint, tracing.current_traceparent()
                    )
            except BaseException:
                await self._sessions.follow_job(request.session_id, session.state, job.job_id)
                raise
            live = LiveJob(job, identity.user_id)
            await self.queue.enqueue(live)
            log.info("job.queued", job_id=job.job_id, session_id=job.session_id, position=job.queue_position)
            return snapshot(live.job)

    def _new_job(
        self, request: stage_runner_pb2.StartJobRequest, session: session_pb2.Session
    ) -> stage_runner_pb2.Job:
        job = stage_runner_pb2.Job(
            job_id=ids.new_id("job"),
            session_id=request.session_id,
            state=common_pb2.JOB_STATE_QUEUED,
            spec=request.spec,
            mode=self._registry.mode,
        )
        job.create_time.GetCurrentTime()
        megapixels = self._sessions.inputs(session).face_megapixels
        for stage_estimate in self._stage_estimates(request.spec, job.mode, megapixels):
            job.stages.add(
                stage=stage_estimate.stage,
                status=common_pb2.STAGE_STATUS_PENDING,
                backend=stage_estimate.backend,
                estimated_seconds=stage_estimate.seconds,
            )
        job.eta_seconds = sum(s.estimated_seconds for s in job.stages)
        return job

    def _stage_estimates(
        self, spec: stage_runner_pb2.JobSpec, mode: int, face_megapixels: float, strict: bool = False
    ) -> list[stage_runner_pb2.StageEstimate]:
        speech = expected_speech_seconds(spec, self._wpm)
        estimates = []
        for stage in planned_stages(spec):
            try:
                backend = self._registry.select(stage, mode, spec)
            except VidsynthError:
                if strict:
                    raise
                estimates.append(stage_runner_pb2.StageEstimate(stage=stage))
                continue
            units = work_units(stage, speech, face_megapixels, spec)
            seconds = self._cost.estimate(backend.name, backend.kind, stage, units)
            estimates.append(
                stage_runner_pb2.StageEstimate(stage=stage, backend=backend.name, seconds=seconds)
            )
        return estimates

    # ---- reads ----------------------------------------------------------------------------------

    def _current(self, stored: StoredJob) -> stage_runner_pb2.Job:
        live = self.queue.live_job(stored.job.job_id)
        return snapshot(live.job if live else stored.job)

    async def _owned(self, job_id: str) -> StoredJob:
        ids.check_id("job", job_id)
        identity = require_identity()
        live = self.queue.live_job(job_id)
        if live is not None:
            if live.user_id != identity.user_id:
                raise VidsynthError("JOB_NOT_FOUND", metadata={"job_id": job_id})
            return StoredJob(live.job, live.user_id, 0)
        stored = await self._store.get(job_id)
        if stored is None or stored.user_id != identity.user_id:
            raise VidsynthError("JOB_NOT_FOUND", metadata={"job_id": job_id})
        return stored

    @_outage_as_unavailable
    async def get(self, job_id: str) -> stage_runner_pb2.Job:
        job = self._current(await self._owned(job_id))
        if job.state == common_pb2.JOB_STATE_QUEUED:
            await self.queue.place(job)
        return job

    @_outage_as_unavailable
    async def list(self, request: stage_runner_pb2.ListJobsRequest) -> stage_runner_pb2.ListJobsResponse:
        identity = require_identity()
        if request.session_id:
            ids.check_id("session", request.session_id)
            # Another user's session answers SESSION_NOT_FOUND, as it does everywhere else.
            await self._sessions.get(request.session_id)
        return await job_pages.list_jobs(self._store, identity.user_id, request, self._current)

    # ---- cancel ---------------------------------------------------------------------------------

    @_outage_as_unavailable
    async def cancel(self, job_id: str) -> stage_runner_pb2.Job:
        cancelled = await self.queue.cancel(await self._owned(job_id))
        return cancelled if cancelled is not None else self._current(await self._owned(job_id))

    # ---- estimate -------------------------------------------------------------------------------

    @_outage_as_unavailable
    async def estimate(self, request: stage_runner_pb2.EstimateJobRequest) -> stage_runner_pb2.JobEstimate:
        require_identity()
        ids.check_id("session", request.session_id)
        spec_checks.check_spec(request.spec, self._max_script_chars)
        session = await self._sessions.get(request.session_id)
        inputs = self._sessions.inputs(session)
        stages = self._stage_estimates(request.spec, self._registry.mode, inputs.face_megapixels, strict=True)
        voice = next((s.backend for s in stages if s.stage == common_pb2.STAGE_VOICE), "")
        return stage_runner_pb2.JobEstimate(
            stages=stages,
            total_seconds=sum(s.seconds for s in stages),
            outputs=[n for n in OUTPUT_FILES if n not in CAPTION_OUTPUTS or voice in CAPTIONED_VOICES],
            speech_seconds=expected_speech_seconds(request.spec, self._wpm),
        )

    # ---- lifecycle ------------------------------------------------------------------------------

    async def resume(self) -> int:
        return await self.queue.resume()

    async def stop(self) -> None:
        await self.queue.stop()
