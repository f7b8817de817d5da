"""Checks of what callers send, before anything is stored."""

from __future__ import annotations

import re

from libs.common import ids
from libs.common.errors import FieldViolation, VidsynthError
from services.session.lifecycle import REQUIRED_ASSET_KINDS
from vidsynth.v1 import common_pb2, session_pb2

DISPLAY_NAME_MAX_CHARS = 100
# The validator generates stored names; anything that could leave the assets directory is refused.
_STORED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# States a caller may ask the stage-runner transitions for (the rest are reached otherwise).
_REQUESTABLE_STATES = frozenset(
    {
        session_pb2.SESSION_STATE_READY,
        session_pb2.SESSION_STATE_PROCESSING,
        session_pb2.SESSION_STATE_COMPLETED,
        session_pb2.SESSION_STATE_FAILED,
    }
)


def _invalid(field: str, description: str) -> VidsynthError:
    return VidsynthError("INVALID_ARGUMENT", f"{field} {description}.", [FieldViolation(field, description)])


def clean_display_name(value: str) -> str:
    name = value.strip()
    if len(name) > DISPLAY_NAME_MAX_CHARS:
        raise _invalid("display_name", f"must be at most {DISPLAY_NAME_MAX_CHARS} characters")
    if not name.isprintable():
        raise _invalid("display_name", "must not contain control characters")
    return name


def check_asset(asset: common_pb2.Asset) -> None:
    if asset.kind not in REQUIRED_ASSET_KINDS:
        raise _invalid("asset.kind", "must be ASSET_KIND_FACE_IMAGE or ASSET_KIND_VOICE_AUDIO")
    if not _STORED_NAME.fullmatch(asset.stored_name) or ".." in asset.stored_name:
        raise _invalid("asset.stored_name", "must be a generated file name without path separators")
    if asset.asset_id:
        ids.check_id("asset", asset.asset_id, field="asset.asset_id")


def check_requested_state(state: int) -> None:
    if state == session_pb2.SESSION_STATE_UNSPECIFIED:
        raise _invalid("state", "must name the state to move to")
    if state not in session_pb2.SessionState.values():
        raise _invalid("state", "is not a known session state")
    if state not in _REQUESTABLE_STATES:
        raise VidsynthError(
            "INVALID_SESSION_STATE", "Sessions reach that state on their own, not by request."
        )


USER_ID_MAX_CHARS = 128


def check_user_filter(user_id: str) -> None:
    """The owner an admin narrows a listing to: a plain, bounded user id."""
    if len(user_id) > USER_ID_MAX_CHARS or not user_id.isprintable() or user_id != user_id.strip():
        raise _invalid("user_id", f"must be a user id of at most {USER_ID_MAX_CHARS} printable characters")
