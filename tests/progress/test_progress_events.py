"""The shared JSON shape of events (libs/common/progress_events.py)."""

from __future__ import annotations

import pytest

from libs.common.errors import VidsynthError
from libs.common.progress_events import (
    EVENT_TYPE_NAMES,
    STAGE_NAMES,
    event_from_json,
    event_to_json,
    is_terminal,
)
from vidsynth.v1 import common_pb2, progress_pb2


def test_every_proto_enum_value_has_a_json_name():
    types = {v.number for v in progress_pb2.EventType.DESCRIPTOR.values if v.number}
    stages = {v.number for v in common_pb2.Stage.DESCRIPTOR.values if v.number}
    assert set(EVENT_TYPE_NAMES) == types
    assert set(STAGE_NAMES) == stages
    assert set(EVENT_TYPE_NAMES.values()) >= {"job.queued", "stage.progress", "job.cancelled", "warning"}


def test_round_trip_with_error_and_timestamp():
    event = progress_pb2.ProgressEvent(
        seq=7,
        type=progress_pb2.EVENT_TYPE_STAGE_FAILED,
        session_id="ses_" + "a" * 24,
        job_id="job_" + "b" * 24,
        stage=common_pb2.STAGE_ANIMATE,
        stage_percent=42.5,
        overall_percent=30.25,
        message="boom",
        eta_seconds=12.5,
        queue_position=0,
        backend="sadtalker",
        error=common_pb2.ErrorSummary(code="STAGE_FAILED", message="A processing stage failed."),
    )
    event.timestamp.FromMilliseconds(1_700_000_000_123)
    body = event_to_json(event)
    assert body["type"] == "stage.failed"
    assert body["stage"] == "animate"
    assert body["timestamp"] == "2023-11-14T22:13:20.123Z"
    assert body["error"] == {"code": "STAGE_FAILED", "message": "A processing stage failed."}
    assert body["queue_position"] is None
    assert event_from_json(body) == event


def test_plain_event_has_nulls_and_no_error():
    body = event_to_json(progress_pb2.ProgressEvent(seq=1, type=progress_pb2.EVENT_TYPE_JOB_COMPLETED))
    assert body["stage"] is None and body["job_id"] is None and body["timestamp"] is None
    assert "error" not in body
    assert is_terminal(event_from_json(body))


@pytest.mark.parametrize("body", [{"type": "job.exploded"}, {"type": "warning", "stage": "dance"}])
def test_unknown_names_are_invalid(body):
    with pytest.raises(VidsynthError) as caught:
        event_from_json(body)
    assert caught.value.code == "INVALID_ARGUMENT"
