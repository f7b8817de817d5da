"""Jobs end to end over gRPC with real session and progress services (simulation backends)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from libs.common.rpc_status import error_from_rpc_error
from libs.common.session_paths import session_paths
from services.stage_runner.media.ffmpeg import probe
from tests.support.identities import user_metadata
from vidsynth.v1 import common_pb2, progress_pb2, session_pb2, stage_runner_pb2

E = progress_pb2


async def expect_code(awaitable, code: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await awaitable
    assert error_from_rpc_error(caught.value).code == code


async def test_job_runs_every_stage_and_publishes_outputs(start_mesh):
    mesh = await start_mesh()
    session_id = await mesh.ready_session()
    job = await mesh.start(session_id, options=stage_runner_pb2.JobOptions(enhance=True, size=128))
    assert job.state == common_pb2.JOB_STATE_QUEUED
    assert await mesh.session_state(session_id) == session_pb2.SESSION_STATE_PROCESSING

    done = await mesh.wait_done(job.job_id)
    assert done.state == common_pb2.JOB_STATE_COMPLETED, done.error
    assert done.done and done.overall_percent == 100.0
    assert [s.status for s in done.stages] == [common_pb2.STAGE_STATUS_COMPLETED] * 6
    assert {o.name for o in done.outputs} == {"video", "thumbnail", "audio", "script"}
    output_dir = session_paths(mesh.settings.sessions_dir, session_id).output / job.job_id
    info = await probe(output_dir / "video.mp4")
    codecs = {s["codec_type"]: s["codec_name"] for s in info["streams"]}
    assert codecs == {"video": "h264", "audio": "aac"}
    assert int(info["streams"][0].get("width", 0) or info["streams"][1].get("width", 0)) == 256  # 128 x2
    assert (output_dir / "script.txt").read_text().strip() == "Hello there, this is a test."
    assert await mesh.session_state(session_id) == session_pb2.SESSION_STATE_COMPLETED

    events = await mesh.events(session_id)
    types = [e.type for e in events]
    assert types[0] == E.EVENT_TYPE_JOB_QUEUED and types[1] == E.EVENT_TYPE_JOB_STARTED
    assert types[-1] == E.EVENT_TYPE_JOB_COMPLETED
    started = [e.stage for e in events if e.type == E.EVENT_TYPE_STAGE_STARTED]
    completed = [e.stage for e in events if e.type == E.EVENT_TYPE_STAGE_COMPLETED]
    assert started == completed == list(range(1, 7))
    progress = [e.overall_percent for e in events if e.type == E.EVENT_TYPE_STAGE_PROGRESS]
    assert progress and progress == sorted(progress)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_session_must_be_ready_and_owned(start_mesh):
    mesh = await start_mesh()
    empty = await mesh.new_session()
    await expect_code(mesh.start(empty), "INVALID_SESSION_STATE")
    ready = await mesh.ready_session()
    await expect_code(mesh.start(ready, user="bob"), "SESSION_NOT_FOUND")
    await expect_code(mesh.start("ses_nope"), "INVALID_ID")
    job = await mesh.start(ready)
    # While its job runs the session is PROCESSING: a second job is refused.
    await expect_code(mesh.start(ready), "INVALID_SESSION_STATE")
    await mesh.wait_done(job.job_id)


async def test_other_users_job_is_not_found(start_mesh):
    mesh = await start_mesh()
    session_id = await mesh.ready_session()
    job = await mesh.start(session_id)
    await expect_code(mesh.get(job.job_id, user="bob"), "JOB_NOT_FOUND")
    await expect_code(
        mesh.runner.CancelJob(
            stage_runner_pb2.CancelJobRequest(job_id=job.job_id), metadata=user_metadata("bob")
        ),
        "JOB_NOT_FOUND",
    )
    listed = await mesh.runner.ListJobs(stage_runner_pb2.ListJobsRequest(), metadata=user_metadata("bob"))
    assert list(listed.jobs) == []
    await expect_code(
        mesh.runner.ListJobs(
            stage_runner_pb2.ListJobsRequest(session_id=session_id), metadata=user_metadata("bob")
        ),
        "SESSION_NOT_FOUND",
    )
    await mesh.wait_done(job.job_id)
    await expect_code(mesh.get("job_" + "0" * 24), "JOB_NOT_FOUND")


async def test_idempotent_submit(start_mesh):
    mesh = await start_mesh()
    session_id = await mesh.ready_session()
    first, second = await asyncio.gather(
        mesh.start(session_id, request_id="key-1"), mesh.start(session_id, request_id="key-1")
    )
    assert first.job_id == second.job_id
    await expect_code(
        mesh.start(session_id, text="Something else.", request_id="key-1"), "IDEMPOTENCY_CONFLICT"
    )
    await mesh.wait_done(first.job_id)
    again = await mesh.start(session_id, request_id="key-1")
    assert again.job_id == first.job_id and again.state == common_pb2.JOB_STATE_COMPLETED
    # Keys are per user: bob's identical key is his own (and his session check applies).
    await expect_code(mesh.start(session_id, request_id="key-1", user="bob"), "SESSION_NOT_FOUND")


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        (stage_runner_pb2.JobSpec(), "INVALID_ARGUMENT"),
        (stage_runner_pb2.JobSpec(script_text="   "), "INVALID_ARGUMENT"),
        (stage_runner_pb2.JobSpec(script_text="x" * 20_001), "SCRIPT_TOO_LONG"),
        (stage_runner_pb2.JobSpec(script_prompt=stage_runner_pb2.ScriptPrompt(topic="")), "INVALID_ARGUMENT"),
        (
            stage_runner_pb2.JobSpec(script_text="hi", options=stage_runner_pb2.JobOptions(size=4000)),
            "INVALID_ARGUMENT",
        ),
        (
            stage_runner_pb2.JobSpec(script_text="hi", webhook_url="http://evil.example/hook"),
            "WEBHOOK_URL_NOT_ALLOWED",
        ),
    ],
)
async def test_invalid_requests_are_refused(start_mesh, spec, code):
    mesh = await start_mesh()
    session_id = await mesh.ready_session()
    await expect_code(
        mesh.runner.StartJob(
            stage_runner_pb2.StartJobRequest(session_id=session_id, spec=spec),
            metadata=user_metadata("alice"),
        ),
        code,
    )
    assert await mesh.session_state(session_id) == session_pb2.SESSION_STATE_READY


async def test_script_too_long_names_its_length_and_the_limit(start_mesh):
    mesh = await start_mesh(stage_runner_max_script_chars=500)
    session_id = await mesh.ready_session()
    with pytest.raises(grpc.RpcError) as caught:
        await mesh.start(session_id, text="y" * 501)
    refused = error_from_rpc_error(caught.value)
    assert refused.code == "SCRIPT_TOO_LONG"
    assert refused.metadata == {"characters": "501", "limit": "500"}
