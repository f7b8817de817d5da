"""Jobs over HTTP: create (202, Idempotency-Key), read, list, cancel, download outputs
(Range requests), capabilities, the processing mode (admin) and generated scripts."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from libs.common import ids
from libs.common.enums import enum_label
from libs.common.errors import VidsynthError
from services.gateway.auth import CurrentUser
from services.stage_runner.job_view import capabilities_to_dict, job_to_dict
from services.stage_runner.jobs import output_path
from vidsynth.v1 import common_pb2, stage_runner_pb2

router = APIRouter(prefix="/v1", tags=["jobs"])


class ScriptPromptBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: str = Field(min_length=1, max_length=500)
    duration_minutes: float = Field(1.0, gt=0, le=30)
    tone: str = Field("", max_length=200)
    emotion: str = Field("", max_length=200)
    audience: str = Field("", max_length=200)
    content_type: str = Field("", max_length=200)

    def to_proto(self) -> stage_runner_pb2.ScriptPrompt:
        return stage_runner_pb2.ScriptPrompt(**self.model_dump())


class JobOptionsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enhance: bool = False
    upscale_factor: int = Field(0, ge=0, le=4)
    size: int = Field(0, ge=0, le=1024)
    fps: int = Field(0, ge=0, le=60)
    burn_captions: bool = False


class CreateJobBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    script_text: str | None = None
    script_prompt: ScriptPromptBody | None = None
    emotion: str = Field("", max_length=200)
    tone: str = Field("", max_length=200)
    options: JobOptionsBody = Field(default_factory=JobOptionsBody)
    webhook_url: str = Field("", max_length=2048)

    @model_validator(mode="after")
    def _one_script(self) -> CreateJobBody:
        if (self.script_text is None) == (self.script_prompt is None):
            raise ValueError("send exactly one of script_text and script_prompt")
        return self

    def to_spec(self) -> stage_runner_pb2.JobSpec:
        spec = stage_runner_pb2.JobSpec(
            emotion=self.emotion,
            tone=self.tone,
            webhook_url=self.webhook_url,
            options=stage_runner_pb2.JobOptions(**self.options.model_dump()),
        )
        if self.script_text is not None:
            spec.script_text = self.script_text
        else:
            assert self.script_prompt is not None
            spec.script_prompt.CopyFrom(self.script_prompt.to_proto())
        return spec


class ProcessingModeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["auto", "production", "simulation"]


def _stub(request: Request):
    return request.app.state.clients.stage_runner


def _regular_file_stat(path: Path) -> os.stat_result | None:
    """Blocking: the file's stat when it is a regular file (handed to FileResponse, which
    would otherwise stat it again), else None."""
    try:
        found = path.stat()
    except (OSError, ValueError):
        return None
    return found if stat.S_ISREG(found.st_mode) else None


@router.post("/sessions/{session_id}/jobs", status_code=202, summary="Start a job (202 with the queued job)")
async def create_job(
    session_id: str,
    body: CreateJobBody,
    request: Request,
    user: CurrentUser,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)] = None,
) -> JSONResponse:
    ids.check_id("session", session_id)
    job = await _stub(request).StartJob(
        stage_runner_pb2.StartJobRequest(
            session_id=session_id, spec=body.to_spec(), request_id=idempotency_key or ""
        )
    )
    return JSONResponse(job_to_dict(job), status_code=202, headers={"Location": f"/v1/jobs/{job.job_id}"})


@router.post("/sessions/{session_id}/jobs:estimate", summary="Estimate a job's time per stage")
async def estimate_job(session_id: str, body: CreateJobBody, request: Request, user: CurrentUser) -> dict:
    ids.check_id("session", session_id)
    estimate = await _stub(request).EstimateJob(
        stage_runner_pb2.EstimateJobRequest(session_id=session_id, spec=body.to_spec())
    )
    return {
        "total_seconds": round(estimate.total_seconds, 2),
        "speech_seconds": round(estimate.speech_seconds, 2),
        "outputs": list(estimate.outputs),
        "stages": [
            {
                "stage": enum_label(common_pb2.Stage, s.stage),
                "backend": s.backend,
                "seconds": round(s.seconds, 2),
            }
            for s in estimate.stages
        ],
    }


@router.get("/sessions/{session_id}/jobs", summary="The caller's jobs of one session")
async def list_jobs(
    session_id: str,
    request: Request,
    user: CurrentUser,
    page_size: Annotated[int, Query(ge=0, le=200)] = 0,
    page_token: Annotated[str, Query(max_length=32)] = "",
) -> dict:
    ids.check_id("session", session_id)
    response = await _stub(request).ListJobs(
        stage_runner_pb2.ListJobsRequest(session_id=session_id, page_size=page_size, page_token=page_token)
    )
    return {"jobs": [job_to_dict(j) for j in response.jobs], "next_page_token": response.next_page_token}


@router.get("/jobs/{job_id}", summary="A job: state, stages, progress, outputs")
async def get_job(job_id: str, request: Request, user: CurrentUser) -> dict:
    ids.check_id("job", job_id)
    return job_to_dict(await _stub(request).GetJob(stage_runner_pb2.GetJobRequest(job_id=job_id)))


@router.post("/jobs/{job_id}/cancel", summary="Cancel a queued or running job")
async def cancel_job(job_id: str, request: Request, user: CurrentUser) -> dict:
    ids.check_id("job", job_id)
    return job_to_dict(await _stub(request).CancelJob(stage_runner_pb2.CancelJobRequest(job_id=job_id)))


@router.get(
    "/jobs/{job_id}/outputs/{name}",
    summary="Download an output (video, thumbnail, audio, script, captions, captions_srt)",
)
async def download_output(job_id: str, name: str, request: Request, user: CurrentUser) -> FileResponse:
    ids.check_id("job", job_id)
    job = await _stub(request).GetJob(stage_runner_pb2.GetJobRequest(job_id=job_id))
    output = next((o for o in job.outputs if o.name == name), None)
    path = output_path(request.app.state.settings.sessions_dir, job.session_id, job.job_id, name)
    found = await asyncio.to_thread(_regular_file_stat, path) if path is not None else None
    if output is None or path is None or found is None:
        raise VidsynthError("OUTPUT_NOT_FOUND")
    return FileResponse(
        path,
        stat_result=found,
        media_type=output.content_type,
        filename=f"{job.job_id}-{path.name}",
        content_disposition_type="inline",
        headers={"Cache-Control": "private, no-cache", "ETag": f'"{output.sha256}"'},
    )


@router.get("/capabilities", summary="Backends per stage, production readiness, the processing mode")
async def get_capabilities(request: Request, user: CurrentUser, refresh: bool = False) -> dict:
    caps = await _stub(request).GetCapabilities(stage_runner_pb2.GetCapabilitiesRequest(refresh=refresh))
    return capabilities_to_dict(caps)


@router.put("/capabilities/mode", summary="Switch the processing mode (admin)")
async def set_processing_mode(body: ProcessingModeBody, request: Request, user: CurrentUser) -> dict:
    mode = common_pb2.ProcessingMode.Value("PROCESSING_MODE_" + body.mode.upper())
    caps = await _stub(request).SetProcessingMode(stage_runner_pb2.SetProcessingModeRequest(mode=mode))
    return capabilities_to_dict(caps)


@router.post("/scripts/generate", summary="Write a script with Gemini")
async def generate_script(body: ScriptPromptBody, request: Request, user: CurrentUser) -> dict:
    response = await _stub(request).GenerateScript(
        stage_runner_pb2.GenerateScriptRequest(prompt=body.to_proto())
    )
    return {
        "text": response.text,
        "model": response.model,
        "word_count": response.word_count,
        "estimated_seconds": round(response.estimated_seconds, 2),
    }
