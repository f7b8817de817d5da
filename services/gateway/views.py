"""JSON shapes of mesh messages for HTTP responses (reused by every route that shows one)."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from libs.common.enums import enum_label
from services.validator.policy import KIND_NAMES
from vidsynth.v1 import common_pb2, session_pb2


def iso_time(stamp: timestamp_pb2.Timestamp, present: bool = True) -> str | None:
    """RFC 3339 / ISO-8601 in UTC (`2026-11-24T04:27:46.123Z`), or None when unset."""
    return stamp.ToJsonString() if present else None


def session_state_name(state: int) -> str:
    return enum_label(session_pb2.SessionState, state)


def asset_json(asset: common_pb2.Asset) -> dict:
    report = asset.report
    body: dict = {
        "asset_id": asset.asset_id,
        "kind": KIND_NAMES.get(asset.kind, "unspecified"),
        "content_type": asset.content_type,
        "sha256": asset.sha256,
        "size_bytes": asset.size_bytes,
        "create_time": iso_time(asset.create_time, asset.HasField("create_time")),
    }
    if asset.HasField("report"):
        body["width"] = report.width or None
        body["height"] = report.height or None
        body["duration_seconds"] = report.duration_seconds or None
        body["warnings"] = list(report.warnings)
    return body


def session_json(session: session_pb2.Session) -> dict:
    return {
        "session_id": session.session_id,
        "user_id": session.user_id,
        "state": session_state_name(session.state),
        "display_name": session.display_name,
        "assets": [asset_json(asset) for asset in session.assets],
        "active_job_id": session.active_job_id or None,
        "create_time": iso_time(session.create_time, session.HasField("create_time")),
        "update_time": iso_time(session.update_time, session.HasField("update_time")),
        "last_active_time": iso_time(session.last_active_time, session.HasField("last_active_time")),
        "expire_time": iso_time(session.expire_time, session.HasField("expire_time")),
    }
