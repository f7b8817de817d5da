"""The words the HTTP API uses for enumerated values: lower case, one spelling everywhere.

Each enum mirrors a proto enum (without its `_UNSPECIFIED` zero) or a fixed vocabulary;
tests/gateway/test_contract.py checks them against the protos so they cannot drift.
"""

from __future__ import annotations

from enum import StrEnum

from libs.common.errors import CATALOG

ID_PATTERNS = {
    "session": r"^ses_[0-9a-f]{24}$",
    "job": r"^job_[0-9a-f]{24}$",
    "asset": r"^ast_[0-9a-f]{24}$",
    "request": r"^req_[0-9a-f]{24}$",
}


class AssetKind(StrEnum):
    FACE = "face"
    VOICE = "voice"


class SessionState(StrEnum):
    CREATED = "created"
    READY = "ready"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    DELETED = "deleted"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StageName(StrEnum):
    SCRIPT = "script"
    VOICE = "voice"
    FACE = "face"
    ANIMATE = "animate"
    ENHANCE = "enhance"
    ASSEMBLE = "assemble"


class StageStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class ProcessingMode(StrEnum):
    AUTO = "auto"
    PRODUCTION = "production"
    SIMULATION = "simulation"


class BackendKind(StrEnum):
    BUILTIN = "builtin"
    EXTERNAL = "external"
    API = "api"
    SIMULATION = "simulation"


class ScanPolicy(StrEnum):
    REQUIRED = "required"
    OPTIONAL = "optional"


class OutputName(StrEnum):
    """A finished job's downloadable files (captions ones appear once the assemble stage writes them)."""

    VIDEO = "video"
    THUMBNAIL = "thumbnail"
    AUDIO = "audio"
    SCRIPT = "script"
    CAPTIONS = "captions"
    CAPTIONS_SRT = "captions_srt"


# Media types of each output, as downloads answer them.
OUTPUT_MEDIA_TYPES: dict[OutputName, str] = {
    OutputName.VIDEO: "video/mp4",
    OutputName.THUMBNAIL: "image/jpeg",
    OutputName.AUDIO: "audio/wav",
    OutputName.SCRIPT: "text/plain",
    OutputName.CAPTIONS: "text/vtt",
    OutputName.CAPTIONS_SRT: "application/x-subrip",
}


class EventType(StrEnum):
    JOB_QUEUED = "job.queued"
    JOB_STARTED = "job.started"
    STAGE_STARTED = "stage.started"
    STAGE_PROGRESS = "stage.progress"
    STAGE_COMPLETED = "stage.completed"
    STAGE_FAILED = "stage.failed"
    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"
    JOB_CANCELLED = "job.cancelled"
    WARNING = "warning"


class ServingStatus(StrEnum):
    """A service's gRPC health, as /readyz and /v1/health spell it."""

    SERVING = "serving"
    NOT_SERVING = "not_serving"
    SERVICE_UNKNOWN = "service_unknown"
    UNKNOWN = "unknown"
    UNREACHABLE = "unreachable"


class HealthLevel(StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"


# Every catalogued error code (the Problem's `code`), straight from the catalog.
ErrorCode = StrEnum("ErrorCode", {code: code for code in CATALOG})
