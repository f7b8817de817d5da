"""One progress truth: the runner computes a job's overall percent and ETA, its events carry
them, and GetProgress's snapshot equals the last event at every step of a real job."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.progress.snapshot import compute_snapshot
from tests.support.identities import user_metadata
from vidsynth.v1 import common_pb2, progress_pb2, stage_runner_pb2

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
STAGE_EVENTS = (
    progress_pb2.EVENT_TYPE_STAGE_STARTED,
    progress_pb2.EVENT_TYPE_STAGE_PROGRESS,
    progress_pb2.EVENT_TYPE_STAGE_COMPLETED,
)


def figures(message) -> tuple[float, float]:
    return message.overall_percent, message.eta_seconds


@pytest.mark.parametrize(
    ("mode", "options", "skipped"),
    [
        # The default plan leaves enhance out; the built-in backends do the real work.
        ("auto", stage_runner_pb2.JobOptions(), {common_pb2.STAGE_ENHANCE}),
        ("simulation", stage_runner_pb2.JobOptions(enhance=True, size=128), set()),
    ],
    ids=["auto-without-enhance", "simulation-with-enhance"],
)
async def test_get_progress_equals_the_last_event_at_every_step(start_mesh, mode, options, skipped):
    mesh = await start_mesh(mode=mode)
    session_id = await mesh.ready_session(face=SAMPLES / "portrait.jpg", voice=SAMPLES / "voice.wav")
    job = await mesh.start(session_id, text="Hello. Progress has one truth, step by step.", options=options)
    alice = user_metadata("alice")
    request = progress_pb2.GetProgressRequest(session_id=session_id, job_id=job.job_id)
    stream = mesh.progress.Subscribe(
        progress_pb2.SubscribeRequest(session_id=session_id, job_id=job.job_id, until_terminal=True),
        metadata=alice,
        timeout=120,
    )
    received: dict[int, progress_pb2.ProgressEvent] = {}
    live: list[tuple[int, progress_pb2.ProgressSnapshot]] = []
    async for event in stream:
        received[event.seq] = event
        live.append((event.seq, await mesh.progress.GetProgress(request, metadata=alice, timeout=10)))
    events = [received[seq] for seq in sorted(received)]
    assert events[-1].type == progress_pb2.EVENT_TYPE_JOB_COMPLETED, events[-1]

    # The RPC, asked right after each event: it names the newest event it folded (the runner may
    # have published more meanwhile) and reads exactly that event's overall percent and ETA.
    for seq, snapshot in live:
        assert snapshot.last_seq >= seq
        newest = received[snapshot.last_seq]
        assert figures(snapshot) == figures(newest), (seq, newest, snapshot)

    # Every step exactly: the snapshot of the job's first n events is the n-th event's figures.
    for n, event in enumerate(events, start=1):
        snapshot = compute_snapshot(session_id, job.job_id, events[:n])
        assert figures(snapshot) == figures(event), (n, event, snapshot)
        assert snapshot.last_seq == event.seq

    # What the runner's figures are: a real progression (not all zeros), ending at 100 % and 0 s.
    percents = [e.overall_percent for e in events if e.type in STAGE_EVENTS]
    assert percents == sorted(percents) and 0.0 < percents[len(percents) // 2] < 100.0
    assert max(e.eta_seconds for e in events) > 0.0
    assert figures(events[-1]) == (100.0, 0.0)
    ran = {e.stage for e in events if e.type == progress_pb2.EVENT_TYPE_STAGE_COMPLETED}
    final = await mesh.progress.GetProgress(request, metadata=alice, timeout=10)
    assert final.job_state == common_pb2.JOB_STATE_COMPLETED
    statuses = {s.stage: s.status for s in final.stages}
    assert {
        stage for stage, status in statuses.items() if status == common_pb2.STAGE_STATUS_SKIPPED
    } == skipped
    assert {stage for stage, status in statuses.items() if status == common_pb2.STAGE_STATUS_COMPLETED} == ran
    assert not ran & skipped
    done = await mesh.get(job.job_id)
    assert {s.stage for s in done.stages} == ran
