"""Jobs as resources: submit (idempotent, within the user's and the global share of the
waiting room), read, list, cancel, estimate; the queue's fair positions and ETAs;
resuming unfinished jobs after a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from libs.common import ids, tracing
from libs.common.errors import VidsynthError
from libs.common.identity import require_identity
from libs.common.outputs import OUTPUT_FILES
from services.stage_runner import job_pages, spec_checks
from services.stage_runner.backends.builtin import CAPTION_OUTPUTS, CAPTIONED_VOICES
from services.stage_runner.capabilities import BackendRegistry
from services.stage_runner.cost_model import CostModel, work_units
from services.stage_runner.execution import TERMINAL_STATES, JobRunner, LiveJob
from services.stage_runner.fair_share import Forecast, Running, Waiting, forecast
from services.stage_runner.pipeline import planned_stages
from services.stage_runner.queue import JobQueue, cancel_until_done, queue_full, user_job_limit
from services.stage_runner.script_text import expected_speech_seconds
from services.stage_runner.session_link import SessionLink
from services.stage_runner.storage import disk_full_as_insufficient_storage
from services.stage_runner.store import JobStore, StoredJob
from services.stage_runner.webhooks import check_webhook_url
from vidsynth.v1 import common_pb2, progress_pb2, session_pb2, stage_runner_pb2

log = structlog.get_logger("vidsynth.stage_runner.jobs")

CANCEL_WAIT_SECONDS = 5.0
# Back-pressure hooks (e.g. INSUFFICIENT_STORAGE / INSUFFICIENT_MEMORY) run before a job is accepted.
AdmissionCheck = Callable[[], Awaitable[None]]


class JobManager:
    def __init__(
        self,
        *,
        store: JobStore,
        registry: BackendRegistry,
        cost_model: CostModel,
        sessions: SessionLink,
        runner_factory: Callable[[dict[str, LiveJob], JobQueue], JobRunner],
        max_running: int,
        max_waiting: int,
        max_running_per_user: int,
        max_waiting_per_user: int,
        stage_limits: dict[int, int],
        gpu_slots: int,
        max_script_chars: int,
        words_per_minute: float,
        webhook_hosts: frozenset[str],
        webhook_secret_set: bool,
        admission_checks: list[AdmissionCheck] | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._cost = cost_model
        self._sessions = sessions
        self._max_script_chars = max_script_chars
        self._wpm = words_per_minute
        self._webhook_hosts = webhook_hosts
        self._webhook_secret_set = webhook_secret_set
        self.admission_checks: list[AdmissionCheck] = list(admission_checks or [])
        self.live: dict[str, LiveJob] = {}
        self._max_waiting = max_waiting
        self._max_waiting_per_user = max_waiting_per_user
        self.max_running_per_user = max_running_per_user
        self.queue = JobQueue(
            max_running=max_running,
            max_running_per_user=self.max_running_per_user,
            stage_limits=stage_limits,
            gpu_slots=gpu_slots,
            run_job=self._run,
            on_moved=self._queue_moved,
            on_finished=self._job_task_ended,
        )
        self.runner = runner_factory(self.live, self.queue)
        self._submit_lock = asyncio.Lock()

    async def _run(self, job_id: str) -> None:
        await self.runner.run(job_id)

    def _job_task_ended(self, job_id: str) -> None:
        """After a job's task ended by any road (the Redis queue acknowledges it here)."""

    # ---- submit -------------------------------------------------------------------------------

    async def start(self, request: stage_runner_pb2.StartJobRequest) -> stage_runner_pb2.Job:
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
            await self._check_capacity(identity.user_id)
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
            await self._enqueue(live)
            log.info("job.queued", job_id=job.job_id, session_id=job.session_id, position=job.queue_position)
            return self._snapshot(live.job)

    # Queue hooks: this process's queue here; the Redis queue in redis_jobs.RedisJobManager.
    async def _check_capacity(self, user_id: str) -> None:
        self._refuse_past_limits(user_id, self.queue.waiting_entries, self._forecast())

    def _refuse_past_limits(self, user_id: str, waiting: list[Waiting], ahead: dict[str, Forecast]) -> None:
        """USER_JOB_LIMIT_REACHED past the user's share of the waiting room, QUEUE_FULL past
        the whole room; RetryInfo says when a place should free (a waiting job starts)."""
        mine = [entry.job_id for entry in waiting if entry.user_id == user_id]
        if len(mine) >= self._max_waiting_per_user:
            first_start = min((ahead[j].start_seconds for j in mine if j in ahead), default=0.0)
            raise user_job_limit(len(mine), self._max_waiting_per_user, first_start)
        if len(waiting) >= self._max_waiting:
            raise queue_full(len(waiting), min((f.start_seconds for f in ahead.values()), default=0.0))

    async def _enqueue(self, live: LiveJob) -> None:
        job = live.job
        self.live[job.job_id] = live
        place = self._forecast(Waiting(job.job_id, live.user_id, self._total_estimate(job)))[job.job_id]
        job.queue_position, job.eta_seconds = place.position, place.eta_seconds
        live.published_position = job.queue_position
        self.runner.emit(job, progress_pb2.EVENT_TYPE_JOB_QUEUED, message="queued")
        self.queue.submit(job.job_id, live.user_id)

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

    # ---- queue positions and ETAs ---------------------------------------------------------------

    def _forecast(self, newcomer: Waiting | None = None) -> dict[str, Forecast]:
        """Place in line and ETA of every waiting job (and of `newcomer`, as if queued now)."""
        waiting = [
            Waiting(e.job_id, e.user_id, self._total_estimate(self.live[e.job_id].job), e.resumed)
            for e in self.queue.waiting_entries
            if e.job_id in self.live
        ]
        running = []
        for job_id in self.queue.running:
            live = self.live.get(job_id)
            if live is not None:
                # Just dequeued and not started yet: its eta is still the queued one.
                started = live.job.state == common_pb2.JOB_STATE_RUNNING
                remaining = live.job.eta_seconds if started else self._total_estimate(live.job)
                running.append(Running(live.user_id, remaining))
        return forecast(
            waiting + ([newcomer] if newcomer else []),
            running,
            self.queue.max_running,
            self.queue.max_running_per_user,
            self.queue.served,
        )

    @staticmethod
    def _total_estimate(job: stage_runner_pb2.Job) -> float:
        return sum(s.estimated_seconds for s in job.stages)

    def _queue_moved(self) -> None:
        """Publishes job.queued with the new position and ETA of every waiting job that moved."""
        for job_id, place in sorted(self._forecast().items(), key=lambda item: item[1].position):
            live = self.live[job_id]
            live.job.queue_position, live.job.eta_seconds = place.position, place.eta_seconds
            if live.published_position != place.position:
                live.published_position = place.position
                self.runner.emit(
                    live.job,
                    progress_pb2.EVENT_TYPE_JOB_QUEUED,
                    message=f"position {place.position} in the queue",
                )

    # ---- reads ----------------------------------------------------------------------------------

    def _snapshot(self, job: stage_runner_pb2.Job) -> stage_runner_pb2.Job:
        copy = stage_runner_pb2.Job()
        copy.CopyFrom(job)
        return copy

    def _current(self, stored: StoredJob) -> stage_runner_pb2.Job:
        live = self.live.get(stored.job.job_id)
        return self._snapshot(live.job if live else stored.job)

    async def _owned(self, job_id: str) -> StoredJob:
        ids.check_id("job", job_id)
        identity = require_identity()
        live = self.live.get(job_id)
        if live is not None:
            if live.user_id != identity.user_id:
                raise VidsynthError("JOB_NOT_FOUND", metadata={"job_id": job_id})
            return StoredJob(live.job, live.user_id, 0)
        stored = await self._store.get(job_id)
        if stored is None or stored.user_id != identity.user_id:
            raise VidsynthError("JOB_NOT_FOUND", metadata={"job_id": job_id})
        return stored

    async def get(self, job_id: str) -> stage_runner_pb2.Job:
        return self._current(await self._owned(job_id))

    async def list(self, request: stage_runner_pb2.ListJobsRequest) -> stage_runner_pb2.ListJobsResponse:
        identity = require_identity()
        if request.session_id:
            ids.check_id("session", request.session_id)
            # Another user's session answers SESSION_NOT_FOUND, as it does everywhere else.
            await self._sessions.get(request.session_id)
        return await job_pages.list_jobs(self._store, identity.user_id, request, self._current)

    # ---- cancel ---------------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> stage_runner_pb2.Job:
        stored = await self._owned(job_id)
        live = self.live.get(job_id)
        if stored.job.state in TERMINAL_STATES or live is None or live.finishing:
            raise VidsynthError("JOB_NOT_CANCELLABLE")
        live.cancel_requested = True
        if self.queue.remove_waiting(job_id):
            await self.runner.finish_cancelled(live)
        else:
            task = self.queue.running_task(job_id)
            if task is not None:
                # Not once the job is being settled: that must run to its end.
                await cancel_until_done([task], CANCEL_WAIT_SECONDS, lambda: not live.finishing)
                if task.done() and not live.finishing:
                    # Cancelled before its first step: run() never saw the cancellation.
                    await self.runner.finish_cancelled(live)
        return self._snapshot(live.job)

    # ---- estimate -------------------------------------------------------------------------------

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
        """Re-queues jobs a previous process left unfinished: running ones first, in order."""
        unfinished = await self._store.unfinished()
        running = [r for r in unfinished if r.job.state == common_pb2.JOB_STATE_RUNNING]
        queued = [r for r in unfinished if r.job.state == common_pb2.JOB_STATE_QUEUED]
        for stored in running + queued:
            self.live[stored.job.job_id] = LiveJob(stored.job, stored.user_id)
        for stored in running:
            self.queue.submit(stored.job.job_id, stored.user_id, resumed=True)
        for stored in queued:
            self.queue.submit(stored.job.job_id, stored.user_id)
        if unfinished:
            log.info("jobs.resumed", running=len(running), queued=len(queued))
        return len(unfinished)

    async def stop(self) -> None:
        await self.queue.stop()
