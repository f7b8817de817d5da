"""ProgressEvent <-> the JSON dict that SSE, WebSocket, the CLI and the web page share.

Event types are spelled like "job.queued" / "stage.progress" and stages like "voice",
never as proto enum names, so browsers and other languages see one stable vocabulary.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from libs.common.errors import FieldViolation, VidsynthError
from vidsynth.v1 import common_pb2, progress_pb2

EVENT_TYPE_NAMES: dict[int, str] = {
    progress_pb2.EVENT_TYPE_JOB_QUEUED: "job.queued",
    progress_pb2.EVENT_TYPE_JOB_STARTED: "job.started",
    progress_pb2.EVENT_TYPE_STAGE_STARTED: "stage.started",
    progress_pb2.EVENT_TYPE_STAGE_PROGRESS: "stage.progress",
    progress_pb2.EVENT_TYPE_STAGE_COMPLETED: "stage.completed",
    progress_pb2.EVENT_TYPE_STAGE_FAILED: "stage.failed",
    progress_pb2.EVENT_TYPE_JOB_COMPLETED: "job.completed",
    progress_pb2.EVENT_TYPE_JOB_FAILED: "job.failed",
    progress_pb2.EVENT_TYPE_JOB_CANCELLED: "job.cancelled",
    progress_pb2.EVENT_TYPE_WARNING: "warning",
}
EVENT_TYPES_BY_NAME: dict[str, int] = {name: value for value, name in EVENT_TYPE_NAMES.items()}

STAGE_NAMES: dict[int, str] = {
    common_pb2.STAGE_SCRIPT: "script",
    common_pb2.STAGE_VOICE: "voice",
    common_pb2.STAGE_FACE: "face",
    common_pb2.STAGE_ANIMATE: "animate",
    common_pb2.STAGE_ENHANCE: "enhance",
    common_pb2.STAGE_ASSEMBLE: "assemble",
}
STAGES_BY_NAME: dict[str, int] = {name: value for value, name in STAGE_NAMES.items()}

TERMINAL_EVENT_TYPES = frozenset(
    {
        progress_pb2.EVENT_TYPE_JOB_COMPLETED,
        progress_pb2.EVENT_TYPE_JOB_FAILED,
        progress_pb2.EVENT_TYPE_JOB_CANCELLED,
    }
)


def event_type_name(event_type: int) -> str:
    return EVENT_TYPE_NAMES.get(event_type, "unspecified")


def stage_name(stage: int) -> str | None:
    return STAGE_NAMES.get(stage)


def is_terminal(event: progress_pb2.ProgressEvent) -> bool:
    return event.type in TERMINAL_EVENT_TYPES


def _timestamp_to_iso(ts: Timestamp) -> str | None:
    if not ts.seconds and not ts.nanos:
        return None
    moment = datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_to_json(event: progress_pb2.ProgressEvent) -> dict[str, Any]:
    """The JSON shape of one event (the SSE `data:` and the WebSocket message)."""
    body: dict[str, Any] = {
        "seq": event.seq,
        "type": event_type_name(event.type),
        "session_id": event.session_id,
        "job_id": event.job_id or None,
        "stage": stage_name(event.stage),
        "stage_percent": round(event.stage_percent, 2),
        "overall_percent": round(event.overall_percent, 2),
        "message": event.message,
        "eta_seconds": round(event.eta_seconds, 3) if event.eta_seconds else None,
        "queue_position": event.queue_position if event.queue_position else None,
        "timestamp": _timestamp_to_iso(event.timestamp),
        "backend": event.backend or None,
    }
    if event.HasField("error"):
        body["error"] = {"code": event.error.code, "message": event.error.message}
    return body


def _bad(field: str, why: str) -> VidsynthError:
    return VidsynthError("INVALID_ARGUMENT", f"{field} {why}.", [FieldViolation(field, why)])


def event_from_json(body: dict[str, Any]) -> progress_pb2.ProgressEvent:
    """The inverse of `event_to_json`; unknown type or stage names are INVALID_ARGUMENT."""
    type_name = body.get("type")
    if type_name not in EVENT_TYPES_BY_NAME:
        raise _bad("type", f"must be one of {', '.join(EVENT_TYPES_BY_NAME)}")
    event = progress_pb2.ProgressEvent(
        seq=int(body.get("seq") or 0),
        type=EVENT_TYPES_BY_NAME[type_name],
        session_id=body.get("session_id") or "",
        job_id=body.get("job_id") or "",
        stage_percent=float(body.get("stage_percent") or 0.0),
        overall_percent=float(body.get("overall_percent") or 0.0),
        message=body.get("message") or "",
        eta_seconds=float(body.get("eta_seconds") or 0.0),
        queue_position=int(body.get("queue_position") or 0),
        backend=body.get("backend") or "",
    )
    stage = body.get("stage")
    if stage is not None:
        if stage not in STAGES_BY_NAME:
            raise _bad("stage", f"must be one of {', '.join(STAGES_BY_NAME)}")
        event.stage = STAGES_BY_NAME[stage]
    if body.get("timestamp"):
        moment = datetime.fromisoformat(str(body["timestamp"]).replace("Z", "+00:00"))
        event.timestamp.FromDatetime(moment.astimezone(UTC))
    error = body.get("error")
    if error:
        event.error.code = str(error.get("code", ""))
        event.error.message = str(error.get("message", ""))
    return event
