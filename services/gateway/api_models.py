"""The HTTP API's response shapes, reused by every route that answers one (and so by the
OpenAPI document and every client generated from it).

One spelling: enum words in lower case (services/gateway/api_enums.py), integers as JSON
numbers, timestamps as RFC 3339 in UTC. Built from protobufs by services/gateway/views.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from libs.common.pagination import MAX_TOKEN_CHARS
from services.gateway.api_enums import (
    ID_PATTERNS,
    AssetKind,
    BackendKind,
    ErrorCode,
    EventType,
    HealthLevel,
    JobState,
    OutputName,
    ProcessingMode,
    ScanPolicy,
    ServingStatus,
    SessionState,
    StageName,
    StageStatus,
)

SessionId = Annotated[str, Field(pattern=ID_PATTERNS["session"], examples=["ses_0123456789abcdef01234567"])]
JobId = Annotated[str, Field(pattern=ID_PATTERNS["job"], examples=["job_0123456789abcdef01234567"])]
AssetId = Annotated[str, Field(pattern=ID_PATTERNS["asset"])]
SessionIdPath = Annotated[str, Path(pattern=ID_PATTERNS["session"], description="A session id.")]
JobIdPath = Annotated[str, Path(pattern=ID_PATTERNS["job"], description="A job id.")]
PageToken = Annotated[
    str,
    Query(
        max_length=MAX_TOKEN_CHARS,
        json_schema_extra={"format": "page-token"},
        description="The next_page_token of the previous page (opaque); empty for the first page.",
    ),
]
Timestamp = Annotated[AwareDatetime | None, Field(description="RFC 3339, UTC; null when not (yet) set.")]


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors -------------------------------------------------------------------------------


class FieldViolation(ApiModel):
    field: str = Field(description="The request field, parameter or header at fault.")
    description: str


class Problem(ApiModel):
    """An error (RFC 9457 application/problem+json); `code` is the stable catalog code."""

    type: str = Field(description="`urn:vidsynth:error:<code>`.")
    code: ErrorCode
    title: str
    status: int = Field(description="The HTTP status, repeated.")
    detail: str = Field(description="What went wrong, in words a user can act on.")
    request_id: str = Field(description="Also sent as X-Request-ID; quote it in support requests.")
    errors: list[FieldViolation] | None = Field(None, description="Field violations, when they apply.")
    retry_after: float | None = Field(None, description="Seconds to wait before retrying (also Retry-After).")


class ErrorSummary(ApiModel):
    """A catalogued error inside a resource or an event."""

    code: str
    message: str


# --- sessions and assets ------------------------------------------------------------------


class Asset(ApiModel):
    asset_id: AssetId
    kind: AssetKind
    content_type: str
    sha256: str
    size_bytes: int
    create_time: Timestamp
    width: int | None = Field(description="Pixels (photos).")
    height: int | None = Field(description="Pixels (photos).")
    duration_seconds: float | None = Field(description="Seconds (voice samples).")
    warnings: list[str]


class Session(ApiModel):
    session_id: SessionId
    user_id: str
    state: SessionState
    display_name: str
    assets: list[Asset]
    active_job_id: JobId | None
    create_time: Timestamp
    update_time: Timestamp
    last_active_time: Timestamp
    expire_time: Timestamp


class SessionList(ApiModel):
    sessions: list[Session]
    next_page_token: str = Field(description="Pass as page_token for the next page; empty on the last.")


class DeletedSession(ApiModel):
    session_id: SessionId
    bytes_freed: int


class ActiveSession(ApiModel):
    """A session as operators list it (admin)."""

    session: Session
    age_seconds: float = Field(description="Seconds since the session was created.")
    disk_used_bytes: int = Field(description="Bytes of the files in its directory (uploads, work, outputs).")


class ActiveSessionList(ApiModel):
    sessions: list[ActiveSession]
    next_page_token: str = Field(description="Pass as page_token for the next page; empty on the last.")


class EndedSession(ApiModel):
    """What an admin's force-end did."""

    session_id: SessionId
    user_id: str = Field(description="Whose session it was.")
    cancelled_job_id: JobId | None = Field(description="The job cancelled by `force`, if one was processing.")
    bytes_freed: int
    events_deleted: int = Field(description="Progress events removed.")


class FaceBox(ApiModel):
    x: int
    y: int
    width: int
    height: int


class ScanResult(ApiModel):
    engine: str = Field(description="`clamd` or `none`.")
    signature_db: str = Field(description="`official` or `test-signatures`.")
    scanned: bool
    clean: bool
    signature: str = Field(description="The signature's name when the file was infected.")


class CheckResult(ApiModel):
    name: str
    passed: bool
    detail: str


class ValidationReport(ApiModel):
    """What the validator found out about an upload."""

    accepted: bool
    kind: AssetKind
    detected_type: str = Field(description="The MIME type detected from the content.")
    sha256: str
    size_bytes: int
    width: int | None
    height: int | None
    duration_seconds: float | None
    sample_rate: int | None
    channels: int | None
    face_box: FaceBox | None
    scan: ScanResult | None
    checks: list[CheckResult]
    warnings: list[str]
    error: ErrorSummary | None


class UploadResult(ApiModel):
    asset: Asset
    report: ValidationReport


class KindPolicy(ApiModel):
    kind: AssetKind
    max_bytes: int
    allowed_content_types: list[str]
    allowed_extensions: list[str]
    min_width: int
    min_height: int
    max_width: int
    max_height: int
    max_pixels: int
    min_duration_seconds: float
    max_duration_seconds: float


class UploadPolicy(ApiModel):
    kinds: list[KindPolicy]
    scan_policy: ScanPolicy | None
    scanner_available: bool
    signature_db: str | None = Field(description="`official` or `test-signatures`; null when unknown.")
    chunk_size_bytes: int


# --- jobs ---------------------------------------------------------------------------------


class ScriptPrompt(ApiModel):
    topic: str
    duration_minutes: float
    tone: str
    emotion: str
    audience: str
    content_type: str


class JobOptions(ApiModel):
    enhance: bool
    upscale_factor: int
    size: int
    fps: int
    burn_captions: bool


class JobSpec(ApiModel):
    """The job's request as stored: exactly one of script_text and script_prompt is set."""

    script_text: str | None
    script_prompt: ScriptPrompt | None
    emotion: str
    tone: str
    options: JobOptions
    webhook_url: str


class StageState(ApiModel):
    stage: StageName
    status: StageStatus
    backend: str
    percent: float
    estimated_seconds: float
    start_time: Timestamp
    end_time: Timestamp
    error: ErrorSummary | None


class JobOutput(ApiModel):
    name: OutputName
    content_type: str
    size_bytes: int
    sha256: str


class Job(ApiModel):
    job_id: JobId
    session_id: SessionId
    state: JobState
    done: bool
    mode: ProcessingMode
    overall_percent: float
    queue_position: int = Field(description="1-based while queued, 0 otherwise.")
    eta_seconds: float
    spec: JobSpec
    stages: list[StageState]
    outputs: list[JobOutput]
    create_time: Timestamp
    start_time: Timestamp
    end_time: Timestamp
    error: ErrorSummary | None


class JobList(ApiModel):
    jobs: list[Job]
    next_page_token: str


class StageEstimate(ApiModel):
    stage: StageName
    backend: str
    seconds: float


class Estimate(ApiModel):
    total_seconds: float
    speech_seconds: float
    outputs: list[OutputName]
    stages: list[StageEstimate]


class Backend(ApiModel):
    name: str
    stage: StageName
    kind: BackendKind
    available: bool
    reason: str
    needs_gpu: bool


class StageCapability(ApiModel):
    stage: StageName
    selected_backend: str = Field(
        description="The backend the current mode would pick; empty when none fits."
    )
    production_available: bool


class Capabilities(ApiModel):
    mode: ProcessingMode
    production_ready: bool
    gpu_available: bool
    gpu_name: str
    detect_time: Timestamp
    missing: list[str] = Field(description="Why production is not ready, in words.")
    stages: list[StageCapability]
    backends: list[Backend]


class GeneratedScript(ApiModel):
    text: str
    model: str
    word_count: int
    estimated_seconds: float


# --- progress -----------------------------------------------------------------------------


class StreamToken(ApiModel):
    token: str = Field(description="Pass as ?token= to the events (SSE) or ws (WebSocket) URL.")
    session_id: SessionId
    expires_at: int = Field(description="Unix time after which the token no longer opens a stream.")
    expires_in: int = Field(description="Seconds the token stays valid.")


class ProgressEvent(ApiModel):
    """One progress event: the SSE `data:` of an event frame, and one WebSocket message."""

    seq: int = Field(description="Per session, strictly increasing, no gaps; the SSE `id:`.")
    type: EventType
    session_id: SessionId
    job_id: JobId | None
    stage: StageName | None
    stage_percent: float
    overall_percent: float
    message: str
    eta_seconds: float | None
    queue_position: int | None
    timestamp: Timestamp
    backend: str | None
    error: ErrorSummary | None = Field(None, description="On stage.failed and job.failed only.")


class StreamError(ApiModel):
    """The SSE `data:` of an `event: error` frame, and the last WebSocket message before a close."""

    type: Literal["error"]
    error: Problem


# --- operations ---------------------------------------------------------------------------


class Liveness(ApiModel):
    status: Literal["ok"]


class Readiness(ApiModel):
    ready: bool
    services: dict[str, ServingStatus]


class UsageSummary(ApiModel):
    level: HealthLevel
    used_percent: float
    used_bytes: int
    total_bytes: int


class ResourceSummary(ApiModel):
    level: HealthLevel
    immediate_actions_needed: bool
    memory: UsageSummary
    disk: UsageSummary
    cpu_percent: float
    open_files: int
    processes: int
    actions: list[str]


class CapabilitySummary(ApiModel):
    mode: ProcessingMode
    production_ready: bool
    gpu_available: bool
    stages: dict[str, str] = Field(description="The selected backend per stage.")
    missing: list[str]


class ScannerSummary(ApiModel):
    available: bool
    signature_db: str | None


class MeshHealth(ApiModel):
    status: Literal["ok", "degraded"]
    services: dict[str, ServingStatus]
    resources: ResourceSummary | None
    capabilities: CapabilitySummary | None
    scanner: ScannerSummary | None
    active_sessions: int | None
    queue_length: int | None
