"""The state machine and TTL policy, as pure functions."""

from __future__ import annotations

import math

import pytest

from libs.common.errors import VidsynthError
from services.session import lifecycle
from services.session.lifecycle import COMPLETED, CREATED, FAILED, PROCESSING, READY, TtlPolicy
from vidsynth.v1 import common_pb2, session_pb2

FACE = common_pb2.ASSET_KIND_FACE_IMAGE
VOICE = common_pb2.ASSET_KIND_VOICE_AUDIO
ALL_STATES = [s for s in session_pb2.SessionState.values() if s]

ALLOWED = {
    (READY, PROCESSING),
    (COMPLETED, PROCESSING),
    (FAILED, PROCESSING),
    (PROCESSING, COMPLETED),
    (PROCESSING, FAILED),
    (PROCESSING, READY),
}


@pytest.mark.parametrize("current", ALL_STATES)
@pytest.mark.parametrize("target", ALL_STATES)
def test_transitions_follow_the_table(current, target):
    if (current, target) in ALLOWED:
        lifecycle.check_transition(current, target)
    else:
        with pytest.raises(VidsynthError) as info:
            lifecycle.check_transition(current, target)
        assert info.value.code == "INVALID_SESSION_STATE"


def test_ready_needs_face_and_voice():
    assert lifecycle.state_for_assets([]) == CREATED
    assert lifecycle.state_for_assets([FACE]) == CREATED
    assert lifecycle.state_for_assets([VOICE]) == CREATED
    assert lifecycle.state_for_assets([VOICE, FACE]) == READY


def test_assets_are_frozen_while_processing():
    for state in (CREATED, READY, COMPLETED, FAILED):
        lifecycle.check_assets_editable(state)
    with pytest.raises(VidsynthError) as info:
        lifecycle.check_assets_editable(PROCESSING)
    assert info.value.code == "INVALID_SESSION_STATE"


def test_processing_never_expires_but_shows_the_processing_ttl():
    ttl = TtlPolicy(idle_seconds=10, processing_seconds=100)
    assert ttl.expires_at(READY, 1000.0) == 1010.0
    assert ttl.expire_time(READY, 1000.0) == 1010.0
    assert math.isinf(ttl.expires_at(PROCESSING, 1000.0))
    assert ttl.expire_time(PROCESSING, 1000.0) == 1100.0


def test_state_names_are_lower_case():
    assert lifecycle.state_name(READY) == "ready"
    assert lifecycle.state_name(session_pb2.SESSION_STATE_EXPIRED) == "expired"
