"""Jobs over HTTP: create (202, Idempotency-Key), estimate, read, list, cancel, capabilities,
the processing mode (admin) and generated scripts. Downloads live in routes_outputs.py."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator
from pydantic_core import PydanticCustomError

from services.gateway import api_models as m
from services.gateway.auth import CurrentUser
from services.gateway.contract import problems
from services.gateway.json_body import ContractRoute
from services.gateway.state import gateway_state
from services.gateway.views import capabilities_view, estimate_view, job_view, script_view
from vidsynth.v1 import common_pb2, stage_runner_pb2

router = APIRouter(prefix="/v1", tags=["jobs"], route_class=ContractRoute)

# The stage runner's own checks (services/stage_runner/spec_checks.py and, for prompts,
# script_writer.py with its default settings), stated in the schema.
MAX_SCRIPT_CHARS = 20_000
MAX_FIELD_CHARS = 200
MAX_PROMPT_FIELD_CHARS = 60
MAX_PROMPT_MINUTES = 10.0
# Python's str.strip (which the stage runner uses) also strips \x1c-\x1f and \x85, which
# JSON Schema's (ECMA) \s does not count as white space: name them, so both sides agree.
NOT_BLANK = r"[^\s\x1c-\x1f\x85]"
JOB_REFUSALS = (
    "SESSION_NOT_FOUND",
    "SESSION_EXPIRED",
    "INVALID_SESSION_STATE",
    "SCRIPT_TOO_LONG",
    "WEBHOOK_URL_NOT_ALLOWED",
    "STAGE_UNAVAILABLE",
)


class ScriptPromptBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: str = Field(min_length=1, max_length=500, pattern=NOT_BLANK)
    duration_minutes: float = Field(1.0, gt=0, le=MAX_PROMPT_MINUTES)
    tone: str = Field("", max_length=MAX_PROMPT_FIELD_CHARS)
    emotion: str = Field("", max_length=MAX_PROMPT_FIELD_CHARS)
    audience: str = Field("", max_length=MAX_PROMPT_FIELD_CHARS)
    content_type: str = Field("", max_length=MAX_PROMPT_FIELD_CHARS)

    def to_proto(self) -> stage_runner_pb2.ScriptPrompt:
        return stage_runner_pb2.ScriptPrompt(**self.model_dump())


class JobOptionsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enhance: bool = False
    upscale_factor: int = Field(0, ge=0, le=4, description="0: the default (2).")
    size: Literal[0] | Annotated[int, Field(ge=64, le=1024)] = Field(
        0, description="Square frame size in pixels, 64-1024; 0: the default (256)."
    )
    fps: int = Field(0, ge=0, le=60, description="0: the default (25).")
    burn_captions: bool = Field(False, description="Burn the captions into the video.")


class JobBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    emotion: str = Field("", max_length=MAX_FIELD_CHARS)
    tone: str = Field("", max_length=MAX_FIELD_CHARS)
    options: JobOptionsBody = Field(default_factory=JobOptionsBody)
    webhook_url: str = Field(
        "",
        max_length=2048,
        description="POSTed on completion or failure; only hosts the server allows (else "
        "WEBHOOK_URL_NOT_ALLOWED).",
        json_schema_extra={"format": "webhook-url"},
    )

    def to_spec(self) -> stage_runner_pb2.JobSpec:
        return stage_runner_pb2.JobSpec(
            emotion=self.emotion,
            tone=self.tone,
            webhook_url=self.webhook_url,
            options=stage_runner_pb2.JobOptions(**self.options.model_dump()),
        )


class ScriptTextJob(JobBody):
    """A job that speaks the given text."""

    script_text: str = Field(
        min_length=1, pattern=NOT_BLANK, json_schema_extra={"maxLength": MAX_SCRIPT_CHARS}
    )

    @field_validator("script_text")
    @classmethod
    def _script_length(cls, text: str) -> str:
        # Its own catalog code (422), as the stage runner answers it, rather than a bare 400.
        if len(text) > MAX_SCRIPT_CHARS:
            raise PydanticCustomError(
                "SCRIPT_TOO_LONG",
                "The script has {length} characters; the limit is {limit}.",
                {"length": len(text), "limit": MAX_SCRIPT_CHARS},
            )
        return text

    def to_spec(self) -> stage_runner_pb2.JobSpec:
        spec = super().to_spec()
        spec.script_text = self.script_text
        return spec


class ScriptPromptJob(JobBody):
    """A job whose script Gemini writes first."""

    script_prompt: ScriptPromptBody

    def to_spec(self) -> stage_runner_pb2.JobSpec:
        spec = super().to_spec()
        spec.script_prompt.CopyFrom(self.script_prompt.to_proto())
        return spec


def _script_source(body: object) -> str:
    """Which shape a body is meant to be, so a refusal names that shape's fields only."""
    if isinstance(body, dict):
        return "ScriptPromptJob" if "script_prompt" in body and "script_text" not in body else "ScriptTextJob"
    return type(body).__name__


# Exactly one of script_text and script_prompt: each shape forbids the other's field.
CreateJobBody = Annotated[
    Annotated[ScriptTextJob, Tag("ScriptTextJob")] | Annotated[ScriptPromptJob, Tag("ScriptPromptJob")],
    Discriminator(_script_source),
    Body(description="script_text or script_prompt."),
]


class ProcessingModeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: m.ProcessingMode


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern="^[\\x20-\\x7e]+$",
        description="The same key returns the same job; another request with it is IDEMPOTENCY_CONFLICT.",
    ),
]


# What a client does next with a new job (OpenAPI links).
JOB_LINKS = {
    operation: {"operationId": operation, "parameters": {"job_id": "$response.body#/job_id"}}
    for operation in ("get_job", "cancel_job", "download_output")
}


def _stub(request: Request):
    return gateway_state(request.app).clients.stage_runner


@router.post(
    "/sessions/{session_id}/jobs",
    status_code=202,
    summary="Start a job (202 with the queued job)",
    responses={202: {"headers": {"Location": {"schema": {"type": "string"}}}, "links": JOB_LINKS}},
    openapi_extra=problems(
        *JOB_REFUSALS,
        "IDEMPOTENCY_CONFLICT",
        "QUEUE_FULL",
        "USER_JOB_LIMIT_REACHED",
        "INSUFFICIENT_MEMORY",
        "INSUFFICIENT_STORAGE",
    ),
)
async def create_job(
    session_id: m.SessionIdPath,
    body: CreateJobBody,
    request: Request,
    response: Response,
    user: CurrentUser,
    idempotency_key: IdempotencyKey = None,
) -> m.Job:
    job = await _stub(request).StartJob(
        stage_runner_pb2.StartJobRequest(
            session_id=session_id, spec=body.to_spec(), request_id=idempotency_key or ""
        )
    )
    response.headers["Location"] = f"/v1/jobs/{job.job_id}"
    return job_view(job)


@router.post(
    "/sessions/{session_id}/jobs:estimate",
    summary="Estimate a job's time per stage and the outputs it would produce",
    openapi_extra=problems(*JOB_REFUSALS),
)
async def estimate_job(
    session_id: m.SessionIdPath, body: CreateJobBody, request: Request, user: CurrentUser
) -> m.Estimate:
    estimate = await _stub(request).EstimateJob(
        stage_runner_pb2.EstimateJobRequest(session_id=session_id, spec=body.to_spec())
    )
    return estimate_view(estimate)


@router.get(
    "/sessions/{session_id}/jobs",
    summary="The caller's jobs of one session, oldest first (paginated)",
    openapi_extra=problems("SESSION_NOT_FOUND"),
)
async def list_jobs(
    session_id: m.SessionIdPath,
    request: Request,
    user: CurrentUser,
    page_size: Annotated[int, Query(ge=0, le=200, description="0: the default.")] = 0,
    page_token: m.PageToken = "",
) -> m.JobList:
    listed = await _stub(request).ListJobs(
        stage_runner_pb2.ListJobsRequest(session_id=session_id, page_size=page_size, page_token=page_token)
    )
    return m.JobList(jobs=[job_view(j) for j in listed.jobs], next_page_token=listed.next_page_token)


@router.get(
    "/jobs/{job_id}",
    summary="A job: state, stages, progress, outputs",
    openapi_extra=problems("JOB_NOT_FOUND"),
)
async def get_job(job_id: m.JobIdPath, request: Request, user: CurrentUser) -> m.Job:
    return job_view(await _stub(request).GetJob(stage_runner_pb2.GetJobRequest(job_id=job_id)))


@router.post(
    "/jobs/{job_id}/cancel",
    summary="Cancel a queued or running job",
    openapi_extra=problems("JOB_NOT_FOUND", "JOB_NOT_CANCELLABLE"),
)
async def cancel_job(job_id: m.JobIdPath, request: Request, user: CurrentUser) -> m.Job:
    return job_view(await _stub(request).CancelJob(stage_runner_pb2.CancelJobRequest(job_id=job_id)))


@router.get("/capabilities", summary="Backends per stage, production readiness, the processing mode")
async def get_capabilities(
    request: Request,
    user: CurrentUser,
    refresh: Annotated[bool, Query(description="Re-run detection instead of the cached answer.")] = False,
) -> m.Capabilities:
    caps = await _stub(request).GetCapabilities(stage_runner_pb2.GetCapabilitiesRequest(refresh=refresh))
    return capabilities_view(caps)


@router.put(
    "/capabilities/mode",
    summary="Switch the processing mode (admin)",
    openapi_extra=problems("PERMISSION_DENIED"),
)
async def set_processing_mode(
    body: ProcessingModeBody, request: Request, user: CurrentUser
) -> m.Capabilities:
    mode = common_pb2.ProcessingMode.Value("PROCESSING_MODE_" + body.mode.value.upper())
    caps = await _stub(request).SetProcessingMode(stage_runner_pb2.SetProcessingModeRequest(mode=mode))
    return capabilities_view(caps)


@router.post(
    "/scripts/generate",
    summary="Write a script with Gemini",
    openapi_extra=problems("STAGE_UNAVAILABLE", "SCRIPT_GENERATION_FAILED"),
)
async def generate_script(body: ScriptPromptBody, request: Request, user: CurrentUser) -> m.GeneratedScript:
    response = await _stub(request).GenerateScript(
        stage_runner_pb2.GenerateScriptRequest(prompt=body.to_proto())
    )
    return script_view(response)
