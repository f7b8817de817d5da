"""The session state machine and its time to live.

created -> ready (face and voice present) -> processing -> completed / failed,
and back to processing for the next job; expired and deleted are where a session ends.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from libs.common.enums import enum_label
from libs.common.errors import VidsynthError
from vidsynth.v1 import common_pb2, session_pb2

State = session_pb2.SessionState
CREATED = session_pb2.SESSION_STATE_CREATED
READY = session_pb2.SESSION_STATE_READY
PROCESSING = session_pb2.SESSION_STATE_PROCESSING
COMPLETED = session_pb2.SESSION_STATE_COMPLETED
FAILED = session_pb2.SESSION_STATE_FAILED
EXPIRED = session_pb2.SESSION_STATE_EXPIRED

REQUIRED_ASSET_KINDS = frozenset({common_pb2.ASSET_KIND_FACE_IMAGE, common_pb2.ASSET_KIND_VOICE_AUDIO})

# Assets may be (re)placed whenever no job is reading them.
ASSET_EDITABLE_STATES = frozenset({CREATED, READY, COMPLETED, FAILED})

# What the stage runner may do: start a job on a ready (or finished) session, and end it.
# PROCESSING -> READY is a cancelled job: the inputs are still there.
TRANSITIONS: dict[int, frozenset[int]] = {
    READY: frozenset({PROCESSING}),
    COMPLETED: frozenset({PROCESSING}),
    FAILED: frozenset({PROCESSING}),
    PROCESSING: frozenset({COMPLETED, FAILED, READY}),
}

# A processing session never expires; this sorts after every real time.
NEVER = math.inf


def state_name(state: int) -> str:
    """`SESSION_STATE_READY` -> `ready`."""
    return enum_label(session_pb2.SessionState, state)


def check_transition(current: int, target: int) -> None:
    if target not in TRANSITIONS.get(current, frozenset()):
        raise VidsynthError(
            "INVALID_SESSION_STATE",
            f"A session cannot go from {state_name(current)} to {state_name(target)}.",
        )


def check_assets_editable(state: int) -> None:
    if state not in ASSET_EDITABLE_STATES:
        raise VidsynthError(
            "INVALID_SESSION_STATE", f"Assets cannot change while the session is {state_name(state)}."
        )


def state_for_assets(kinds: Iterable[int]) -> int:
    """READY once every required kind is present, else CREATED."""
    return READY if set(kinds) >= REQUIRED_ASSET_KINDS else CREATED


@dataclass(frozen=True)
class TtlPolicy:
    idle_seconds: float
    processing_seconds: float

    def expire_time(self, state: int, last_active: float) -> float:
        """The expiry a caller is shown."""
        ttl = self.processing_seconds if state == PROCESSING else self.idle_seconds
        return last_active + ttl

    def expires_at(self, state: int, last_active: float) -> float:
        """When the session really expires (and may be swept): never while processing."""
        return NEVER if state == PROCESSING else last_active + self.idle_seconds
