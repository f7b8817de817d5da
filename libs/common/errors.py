"""The error catalog: one table of stable codes, each with its gRPC status, HTTP
status and user-facing message, and the typed exception services raise.

Translation to the wire happens in `libs.common.rpc_status` (gRPC rich error model)
and `services.gateway.problems` (application/problem+json); nothing else formats
errors, so every failure a user sees comes from this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc


@dataclass(frozen=True)
class ErrorSpec:
    code: str
    grpc_code: grpc.StatusCode
    http_status: int
    title: str
    message: str


def _spec(code: str, grpc_code: grpc.StatusCode, http: int, title: str, message: str) -> ErrorSpec:
    return ErrorSpec(code, grpc_code, http, title, message)


_C = grpc.StatusCode
CATALOG: dict[str, ErrorSpec] = {
    s.code: s
    for s in [
        # Requests and identity
        _spec("INVALID_ARGUMENT", _C.INVALID_ARGUMENT, 400, "Invalid request", "The request is not valid."),
        _spec("INVALID_ID", _C.INVALID_ARGUMENT, 400, "Invalid id", "That id is not well formed."),
        _spec(
            "MALFORMED_JSON",
            _C.INVALID_ARGUMENT,
            400,
            "Malformed JSON",
            "The request body is not valid JSON.",
        ),
        _spec(
            "UNSUPPORTED_MEDIA_TYPE",
            _C.INVALID_ARGUMENT,
            415,
            "Unsupported media type",
            "Send the request body as application/json.",
        ),
        _spec(
            "REQUEST_TOO_LARGE",
            _C.INVALID_ARGUMENT,
            413,
            "Request too large",
            "The request body is too large.",
        ),
        _spec(
            "REQUEST_HEADERS_TOO_LARGE",
            _C.INVALID_ARGUMENT,
            431,
            "Request headers too large",
            "The request line and headers are too large.",
        ),
        _spec("UNAUTHENTICATED", _C.UNAUTHENTICATED, 401, "Unauthenticated", "A valid API key is required."),
        _spec(
            "STREAM_TOKEN_INVALID",
            _C.UNAUTHENTICATED,
            401,
            "Invalid stream token",
            "The stream token is invalid, expired or for another session.",
        ),
        _spec(
            "PERMISSION_DENIED",
            _C.PERMISSION_DENIED,
            403,
            "Permission denied",
            "This action needs the admin role.",
        ),
        _spec("NOT_FOUND", _C.NOT_FOUND, 404, "Not found", "There is nothing here."),
        _spec(
            "METHOD_NOT_ALLOWED",
            _C.UNIMPLEMENTED,
            405,
            "Method not allowed",
            "That method is not allowed here.",
        ),
        _spec(
            "RATE_LIMITED", _C.RESOURCE_EXHAUSTED, 429, "Too many requests", "Too many requests; slow down."
        ),
        _spec(
            "ORIGIN_NOT_ALLOWED",
            _C.PERMISSION_DENIED,
            403,
            "Origin not allowed",
            "This page's origin may not open connections to the API.",
        ),
        _spec(
            "RANGE_NOT_SATISFIABLE",
            _C.OUT_OF_RANGE,
            416,
            "Range not satisfiable",
            "The requested byte range is outside the file.",
        ),
        # Sessions
        _spec("SESSION_NOT_FOUND", _C.NOT_FOUND, 404, "Session not found", "That session does not exist."),
        _spec(
            "SESSION_EXPIRED",
            _C.FAILED_PRECONDITION,
            410,
            "Session expired",
            "That session has expired; create a new one.",
        ),
        _spec(
            "SESSION_LIMIT_REACHED",
            _C.RESOURCE_EXHAUSTED,
            429,
            "Session limit reached",
            "Too many active sessions; delete one or try again later.",
        ),
        _spec(
            "INVALID_SESSION_STATE",
            _C.FAILED_PRECONDITION,
            409,
            "Invalid session state",
            "The session is not in a state that allows this.",
        ),
        # Uploads
        _spec(
            "FILE_TOO_LARGE", _C.INVALID_ARGUMENT, 413, "File too large", "The file is larger than allowed."
        ),
        _spec("FILE_EMPTY", _C.INVALID_ARGUMENT, 422, "Empty file", "The file is empty."),
        _spec(
            "FILE_TYPE_NOT_ALLOWED",
            _C.INVALID_ARGUMENT,
            415,
            "File type not allowed",
            "This type of file is not accepted here.",
        ),
        _spec(
            "FILE_CONTENT_MISMATCH",
            _C.INVALID_ARGUMENT,
            415,
            "File content mismatch",
            "The file's content does not match its name or declared type.",
        ),
        _spec("FILE_CORRUPT", _C.INVALID_ARGUMENT, 422, "Corrupt file", "The file is damaged or incomplete."),
        _spec(
            "INVALID_FILENAME",
            _C.INVALID_ARGUMENT,
            400,
            "Invalid file name",
            "The file name is not acceptable.",
        ),
        _spec(
            "IMAGE_TOO_SMALL",
            _C.INVALID_ARGUMENT,
            422,
            "Image too small",
            "The image is smaller than allowed.",
        ),
        _spec(
            "IMAGE_TOO_LARGE",
            _C.INVALID_ARGUMENT,
            422,
            "Image too large",
            "The image has more pixels than allowed.",
        ),
        _spec(
            "IMAGE_TOO_COMPLEX",
            _C.INVALID_ARGUMENT,
            422,
            "Image too complex",
            "The image would take too much time or memory to decode.",
        ),
        _spec(
            "TOO_MANY_UPLOADS",
            _C.RESOURCE_EXHAUSTED,
            429,
            "Too many uploads",
            "You have too many uploads in progress; wait for one to finish.",
        ),
        _spec(
            "UPLOAD_TOO_SLOW",
            _C.DEADLINE_EXCEEDED,
            408,
            "Upload too slow",
            "The upload arrived too slowly; send it again over a faster connection.",
        ),
        _spec(
            "NO_FACE_DETECTED",
            _C.INVALID_ARGUMENT,
            422,
            "No face detected",
            "No face was found in the photo.",
        ),
        _spec(
            "MULTIPLE_FACES_DETECTED",
            _C.INVALID_ARGUMENT,
            422,
            "Multiple faces detected",
            "The photo must show exactly one face.",
        ),
        _spec(
            "AUDIO_TOO_SHORT", _C.INVALID_ARGUMENT, 422, "Audio too short", "The voice sample is too short."
        ),
        _spec("AUDIO_TOO_LONG", _C.INVALID_ARGUMENT, 422, "Audio too long", "The voice sample is too long."),
        _spec("AUDIO_SILENT", _C.INVALID_ARGUMENT, 422, "Silent audio", "The voice sample is silent."),
        _spec(
            "AUDIO_FORMAT_UNSUPPORTED",
            _C.INVALID_ARGUMENT,
            422,
            "Audio format unsupported",
            "The voice sample's sample rate or channel count is not supported.",
        ),
        _spec(
            "MALWARE_DETECTED",
            _C.INVALID_ARGUMENT,
            422,
            "Malware detected",
            "The file was flagged by the virus scanner and quarantined.",
        ),
        _spec(
            "SCAN_UNAVAILABLE",
            _C.UNAVAILABLE,
            503,
            "Virus scanner unavailable",
            "Uploads cannot be scanned right now; try again later.",
        ),
        _spec(
            "SCAN_FAILED",
            _C.INVALID_ARGUMENT,
            422,
            "Scan failed",
            "The virus scanner could not check this file.",
        ),
        # Jobs and stages
        _spec("JOB_NOT_FOUND", _C.NOT_FOUND, 404, "Job not found", "That job does not exist."),
        _spec("OUTPUT_NOT_FOUND", _C.NOT_FOUND, 404, "Output not found", "That output does not exist (yet)."),
        _spec(
            "JOB_NOT_CANCELLABLE",
            _C.FAILED_PRECONDITION,
            409,
            "Job not cancellable",
            "The job has already finished.",
        ),
        _spec(
            "IDEMPOTENCY_CONFLICT",
            _C.ALREADY_EXISTS,
            409,
            "Idempotency conflict",
            "That idempotency key was used with a different request.",
        ),
        _spec(
            "QUEUE_FULL",
            _C.RESOURCE_EXHAUSTED,
            429,
            "Queue full",
            "Too many jobs are waiting; try again later.",
        ),
        _spec(
            "USER_JOB_LIMIT_REACHED",
            _C.RESOURCE_EXHAUSTED,
            429,
            "Job limit reached",
            "You have too many jobs waiting; try again when one has started.",
        ),
        _spec(
            "STAGE_UNAVAILABLE",
            _C.FAILED_PRECONDITION,
            503,
            "Stage unavailable",
            "A processing backend this job needs is not installed.",
        ),
        _spec("STAGE_FAILED", _C.INTERNAL, 500, "Stage failed", "A processing stage failed."),
        _spec(
            "STAGE_TIMEOUT", _C.DEADLINE_EXCEEDED, 504, "Stage timed out", "A processing stage took too long."
        ),
        _spec(
            "STAGE_OUTPUT_INVALID",
            _C.INTERNAL,
            500,
            "Stage output invalid",
            "A processing stage produced unusable output.",
        ),
        _spec(
            "SCRIPT_GENERATION_FAILED",
            _C.UNAVAILABLE,
            502,
            "Script generation failed",
            "The script could not be written; try again or write it yourself.",
        ),
        _spec(
            "SCRIPT_NOT_SPEAKABLE",
            _C.INVALID_ARGUMENT,
            422,
            "Script not speakable",
            "The script has no words the built-in voice can speak (it reads English letters and numbers).",
        ),
        _spec(
            "SCRIPT_TOO_LONG",
            _C.INVALID_ARGUMENT,
            422,
            "Script too long",
            "The script is longer than allowed.",
        ),
        _spec(
            "WEBHOOK_URL_NOT_ALLOWED",
            _C.INVALID_ARGUMENT,
            400,
            "Webhook URL not allowed",
            "That webhook URL is not on the allowed list.",
        ),
        # Progress streams
        _spec(
            "SUBSCRIBER_TOO_SLOW",
            _C.RESOURCE_EXHAUSTED,
            429,
            "Subscriber too slow",
            "The event stream fell behind; reconnect to resume from the last event received.",
        ),
        _spec(
            "EVENT_SEQ_AHEAD",
            _C.OUT_OF_RANGE,
            409,
            "Event id ahead of the stream",
            "Last-Event-ID (or after) is beyond the session's last event; resume from a seq it sent, "
            "or from 0.",
        ),
        # Resources
        _spec(
            "INSUFFICIENT_STORAGE",
            _C.RESOURCE_EXHAUSTED,
            507,
            "Insufficient storage",
            "The server is low on disk space; try again later.",
        ),
        _spec(
            "INSUFFICIENT_MEMORY",
            _C.RESOURCE_EXHAUSTED,
            503,
            "Insufficient memory",
            "The server is low on memory; try again later.",
        ),
        # Platform
        _spec(
            "SERVICE_UNAVAILABLE",
            _C.UNAVAILABLE,
            503,
            "Service unavailable",
            "A service is unavailable; try again shortly.",
        ),
        _spec("DEADLINE_EXCEEDED", _C.DEADLINE_EXCEEDED, 504, "Timed out", "The request took too long."),
        _spec(
            "NOT_IMPLEMENTED",
            _C.UNIMPLEMENTED,
            501,
            "Not implemented",
            "This operation is not available yet.",
        ),
        _spec("INTERNAL", _C.INTERNAL, 500, "Internal error", "Something went wrong on our side."),
    ]
}


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass
class VidsynthError(Exception):
    """A catalogued failure. `detail` overrides the catalog's user message."""

    code: str
    detail: str | None = None
    field_violations: list[FieldViolation] = field(default_factory=list)
    retry_after_seconds: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in CATALOG:
            raise ValueError(f"unknown error code {self.code!r}")
        super().__init__(self.code, self.message)

    @property
    def spec(self) -> ErrorSpec:
        return CATALOG[self.code]

    @property
    def message(self) -> str:
        return self.detail or self.spec.message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


_FALLBACK_BY_GRPC_CODE: dict[grpc.StatusCode, str] = {
    _C.UNAVAILABLE: "SERVICE_UNAVAILABLE",
    _C.DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
    _C.UNIMPLEMENTED: "NOT_IMPLEMENTED",
    _C.UNAUTHENTICATED: "UNAUTHENTICATED",
    _C.PERMISSION_DENIED: "PERMISSION_DENIED",
    _C.NOT_FOUND: "NOT_FOUND",
    _C.INVALID_ARGUMENT: "INVALID_ARGUMENT",
    # Without ErrorInfo this is gRPC itself refusing an oversized message.
    _C.RESOURCE_EXHAUSTED: "REQUEST_TOO_LARGE",
    _C.CANCELLED: "SERVICE_UNAVAILABLE",
}


def code_for_grpc_status(status: grpc.StatusCode) -> str:
    """Catalog code for a gRPC failure that carried no ErrorInfo (e.g. a dead peer)."""
    return _FALLBACK_BY_GRPC_CODE.get(status, "INTERNAL")
