"""GetProgress: snapshot folding (unit) and the RPC."""

from __future__ import annotations

import grpc
import pytest

from libs.common.ids import new_id
from libs.common.rpc_status import error_from_rpc_error
from services.progress.snapshot import compute_snapshot
from tests.support.identities import user_metadata
from tests.support.synthetic_events import job_events, publish
from vidsynth.v1 import common_pb2, progress_pb2


def stamped(events, start: float = 1000.0, step: float = 1.0):
    for index, event in enumerate(events, start=1):
        event.seq = index
        moment = start + index * step
        event.timestamp.seconds = int(moment)
        event.timestamp.nanos = int((moment % 1) * 1e9)
    return events


def stage_map(snapshot):
    return {s.stage: s for s in snapshot.stages}


def test_queued_job_reports_position_and_runner_eta():
    events = stamped(job_events(queue_position=3, eta_seconds=90)[:1])
    snapshot = compute_snapshot("ses_x", events[0].job_id, events)
    assert snapshot.job_state == common_pb2.JOB_STATE_QUEUED
    assert snapshot.queue_position == 3
    assert snapshot.overall_percent == 0.0
    assert snapshot.eta_seconds == pytest.approx(90.0)
    assert snapshot.last_seq == 1


def test_running_job_takes_overall_percent_and_eta_from_its_last_event():
    """The runner computes both (its cost model weighs the stages); the snapshot recomputes neither."""
    job = job_events(ticks_per_stage=3, eta_seconds=100)
    # Up to voice's first progress tick: script done, voice at 25 %.
    cut = next(i for i, e in enumerate(job) if e.stage == common_pb2.STAGE_VOICE and e.stage_percent)
    events = stamped(job[: cut + 1])
    events[-1].overall_percent, events[-1].eta_seconds = 37.125, 81.5  # whatever the runner said
    snapshot = compute_snapshot("ses_x", job[0].job_id, events)
    assert snapshot.job_state == common_pb2.JOB_STATE_RUNNING
    assert snapshot.queue_position == 0
    assert snapshot.overall_percent == 37.125
    assert snapshot.eta_seconds == 81.5
    stages = stage_map(snapshot)
    assert stages[common_pb2.STAGE_SCRIPT].status == common_pb2.STAGE_STATUS_COMPLETED
    assert stages[common_pb2.STAGE_VOICE].status == common_pb2.STAGE_STATUS_RUNNING
    assert stages[common_pb2.STAGE_VOICE].percent == pytest.approx(25.0)
    assert stages[common_pb2.STAGE_VOICE].backend == "builtin"
    assert stages[common_pb2.STAGE_ANIMATE].status == common_pb2.STAGE_STATUS_PENDING


def test_a_warning_carries_the_figures_too():
    job = job_events(ticks_per_stage=1)
    cut = next(i for i, e in enumerate(job) if e.stage == common_pb2.STAGE_FACE)
    warning = progress_pb2.ProgressEvent(
        type=progress_pb2.EVENT_TYPE_WARNING, job_id=job[0].job_id, overall_percent=41.0, eta_seconds=12.0
    )
    snapshot = compute_snapshot("ses_x", job[0].job_id, stamped([*job[: cut + 1], warning]))
    assert (snapshot.overall_percent, snapshot.eta_seconds) == (41.0, 12.0)
    assert snapshot.job_state == common_pb2.JOB_STATE_RUNNING


def test_a_completed_job_without_enhance_lists_enhance_as_skipped():
    events = stamped(job_events(stages=("script", "voice", "face", "animate", "assemble")))
    snapshot = compute_snapshot("ses_x", events[0].job_id, events)
    statuses = {s.stage: s.status for s in snapshot.stages}
    assert statuses.pop(common_pb2.STAGE_ENHANCE) == common_pb2.STAGE_STATUS_SKIPPED
    assert set(statuses.values()) == {common_pb2.STAGE_STATUS_COMPLETED}
    assert (snapshot.overall_percent, snapshot.eta_seconds) == (100.0, 0.0)


@pytest.mark.parametrize(
    ("outcome", "state", "last_stage_status"),
    [
        ("completed", common_pb2.JOB_STATE_COMPLETED, common_pb2.STAGE_STATUS_COMPLETED),
        ("failed", common_pb2.JOB_STATE_FAILED, common_pb2.STAGE_STATUS_FAILED),
        ("cancelled", common_pb2.JOB_STATE_CANCELLED, common_pb2.STAGE_STATUS_COMPLETED),
    ],
)
def test_finished_jobs(outcome, state, last_stage_status):
    events = stamped(job_events(outcome=outcome))
    snapshot = compute_snapshot("ses_x", events[0].job_id, events)
    assert snapshot.job_state == state
    assert snapshot.eta_seconds == 0.0
    assert stage_map(snapshot)[common_pb2.STAGE_ASSEMBLE].status == last_stage_status
    if outcome == "failed":  # assemble never finished: 5 stages done, the 6th at 75 %
        assert snapshot.overall_percent == pytest.approx(100.0 * (5 + 0.75) / 6)
    else:
        assert snapshot.overall_percent == 100.0


def test_cancel_mid_job_marks_unfinished_stages_cancelled():
    job = job_events()
    cut = next(i for i, e in enumerate(job) if e.stage == common_pb2.STAGE_FACE)
    events = stamped(
        [*job[: cut + 1], progress_pb2.ProgressEvent(type=progress_pb2.EVENT_TYPE_JOB_CANCELLED)]
    )
    snapshot = compute_snapshot("ses_x", job[0].job_id, events)
    stages = stage_map(snapshot)
    assert stages[common_pb2.STAGE_VOICE].status == common_pb2.STAGE_STATUS_COMPLETED
    assert stages[common_pb2.STAGE_FACE].status == common_pb2.STAGE_STATUS_CANCELLED
    assert stages[common_pb2.STAGE_ASSEMBLE].status == common_pb2.STAGE_STATUS_CANCELLED


async def test_get_progress_rpc(progress_mesh):
    session_id = await progress_mesh.create_session()
    empty = await progress_mesh.progress.GetProgress(
        progress_pb2.GetProgressRequest(session_id=session_id), metadata=user_metadata("alice"), timeout=10
    )
    assert empty.session_id == session_id and empty.job_id == "" and empty.last_seq == 0

    first, second = job_events(), job_events(outcome="failed")
    await publish(progress_mesh.channel, session_id, first + second[:4], batch_size=100)
    latest = await progress_mesh.progress.GetProgress(
        progress_pb2.GetProgressRequest(session_id=session_id), metadata=user_metadata("alice"), timeout=10
    )
    assert latest.job_id == second[0].job_id
    assert latest.job_state == common_pb2.JOB_STATE_RUNNING
    assert latest.last_seq == len(first) + 4

    done = await progress_mesh.progress.GetProgress(
        progress_pb2.GetProgressRequest(session_id=session_id, job_id=first[0].job_id),
        metadata=user_metadata("alice"),
        timeout=10,
    )
    assert done.job_state == common_pb2.JOB_STATE_COMPLETED
    assert done.overall_percent == 100.0

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await progress_mesh.progress.GetProgress(
            progress_pb2.GetProgressRequest(session_id=session_id, job_id=new_id("job")),
            metadata=user_metadata("alice"),
            timeout=10,
        )
    assert error_from_rpc_error(caught.value).code == "JOB_NOT_FOUND"
