"""StageRunnerService RPC handlers: thin, everything lives in the domain modules."""

from __future__ import annotations

import contextlib
from pathlib import Path

from libs.common.errors import VidsynthError
from libs.common.identity import require_identity
from libs.common.log import bind_context
from services.stage_runner.capabilities import BackendRegistry, remember_mode
from services.stage_runner.jobs import JobManager
from services.stage_runner.output_reader import check_read_request, read_output
from services.stage_runner.scripts import ScriptService
from services.stage_runner.store import JobStore
from vidsynth.v1 import common_pb2, stage_runner_pb2, stage_runner_pb2_grpc


class StageRunnerService(stage_runner_pb2_grpc.StageRunnerServiceServicer):
    def __init__(
        self,
        jobs: JobManager,
        registry: BackendRegistry,
        store: JobStore,
        scripts: ScriptService,
        configured_mode: str,
        sessions_dir: Path,
    ) -> None:
        self._configured_mode = configured_mode
        self._sessions_dir = sessions_dir
        self._jobs = jobs
        self._registry = registry
        self._store = store
        self._scripts = scripts

    async def GetCapabilities(self, request, context):
        require_identity()
        if request.refresh:
            await self._registry.refresh()
        return self._registry.capabilities()

    async def SetProcessingMode(self, request, context):
        if request.mode not in (
            common_pb2.PROCESSING_MODE_AUTO,
            common_pb2.PROCESSING_MODE_PRODUCTION,
            common_pb2.PROCESSING_MODE_SIMULATION,
        ):
            raise VidsynthError("INVALID_ARGUMENT", "mode must be auto, production or simulation.")
        self._registry.mode = request.mode
        await remember_mode(self._store, request.mode, self._configured_mode)
        return self._registry.capabilities()

    async def EstimateJob(self, request, context):
        return await self._jobs.estimate(request)

    async def StartJob(self, request, context):
        return await self._jobs.start(request)

    async def GetJob(self, request, context):
        return await self._jobs.get(request.job_id)

    async def ListJobs(self, request, context):
        return await self._jobs.list(request)

    async def CancelJob(self, request, context):
        return await self._jobs.cancel(request.job_id)

    async def ReadJobOutput(self, request, context):
        span = check_read_request(request)
        job = await self._jobs.get(request.job_id)  # JOB_NOT_FOUND unless the caller owns it
        bind_context(job_id=job.job_id, session_id=job.session_id)
        # Closed at once when the client goes away mid-read, so the file is closed too.
        async with contextlib.aclosing(read_output(job, request.name, span, self._sessions_dir)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def GenerateScript(self, request, context):
        require_identity()
        script = await self._scripts.generate(request.prompt)
        return stage_runner_pb2.GenerateScriptResponse(
            text=script.text,
            model=script.model,
            word_count=script.word_count,
            estimated_seconds=script.estimated_seconds,
        )
