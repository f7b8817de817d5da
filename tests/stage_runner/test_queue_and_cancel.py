"""The queue through the mesh (positions, QUEUE_FULL, stage limits), cancellation and processing
modes; the queue's order, positions and ETAs in depth: test_queue_in_process.py."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from libs.common.rpc_status import error_from_rpc_error
from libs.common.session_paths import session_paths
from tests.stage_runner.test_builtin_pipeline import SAMPLES
from tests.stage_runner.test_jobs import expect_code
from tests.support.identities import user_metadata
from vidsynth.v1 import common_pb2, progress_pb2, session_pb2, stage_runner_pb2

E = progress_pb2


async def test_full_queue_refuses_with_retry_info(start_mesh):
    mesh = await start_mesh(
        stage_runner_max_running_jobs=1, stage_runner_max_queued_jobs=1, stage_runner_simulation_seconds=5.0
    )
    first = await mesh.start(await mesh.ready_session())
    second = await mesh.start(await mesh.ready_session())
    third_session = await mesh.ready_session()
    with pytest.raises(grpc.RpcError) as caught:
        await mesh.start(third_session)
    error = error_from_rpc_error(caught.value)
    assert error.code == "QUEUE_FULL" and error.retry_after_seconds and error.retry_after_seconds >= 5
    assert await mesh.session_state(third_session) == session_pb2.SESSION_STATE_READY
    for job in (second, first):
        cancelled = await mesh.runner.CancelJob(
            stage_runner_pb2.CancelJobRequest(job_id=job.job_id), metadata=user_metadata("alice")
        )
        assert cancelled.state == common_pb2.JOB_STATE_CANCELLED


async def test_cancel_mid_stage_stops_quickly_and_frees_the_session(start_mesh):
    mesh = await start_mesh(stage_runner_simulation_seconds=30.0)
    session_id = await mesh.ready_session()
    job = await mesh.start(session_id)
    await mesh.wait_for(
        job.job_id,
        lambda j: any(s.status == common_pb2.STAGE_STATUS_RUNNING and s.stage > 1 for s in j.stages),
    )
    began = time.monotonic()
    cancelled = await mesh.runner.CancelJob(
        stage_runner_pb2.CancelJobRequest(job_id=job.job_id), metadata=user_metadata("alice")
    )
    assert time.monotonic() - began < 2.0
    assert cancelled.state == common_pb2.JOB_STATE_CANCELLED and cancelled.done
    assert common_pb2.STAGE_STATUS_CANCELLED in [s.status for s in cancelled.stages]
    paths = session_paths(mesh.settings.sessions_dir, session_id)
    assert not any(paths.output.iterdir())
    assert not (paths.work / job.job_id).exists()
    await mesh.wait_for(job.job_id, lambda j: j.state == common_pb2.JOB_STATE_CANCELLED)
    assert await mesh.session_state(session_id) == session_pb2.SESSION_STATE_READY
    events = await mesh.events(session_id)
    assert events[-1].type == E.EVENT_TYPE_JOB_CANCELLED
    await expect_code(
        mesh.runner.CancelJob(
            stage_runner_pb2.CancelJobRequest(job_id=job.job_id), metadata=user_metadata("alice")
        ),
        "JOB_NOT_CANCELLABLE",
    )
    # The session is usable again at once.
    again = await mesh.start(session_id)
    await mesh.wait_for(again.job_id, lambda j: j.state == common_pb2.JOB_STATE_RUNNING)
    await mesh.runner.CancelJob(
        stage_runner_pb2.CancelJobRequest(job_id=again.job_id), metadata=user_metadata("alice")
    )


async def test_cancel_a_queued_job(start_mesh):
    mesh = await start_mesh(stage_runner_max_running_jobs=1, stage_runner_simulation_seconds=30.0)
    running = await mesh.start(await mesh.ready_session())
    waiting_session = await mesh.ready_session()
    waiting = await mesh.start(waiting_session)
    assert waiting.queue_position == 1
    cancelled = await mesh.runner.CancelJob(
        stage_runner_pb2.CancelJobRequest(job_id=waiting.job_id), metadata=user_metadata("alice")
    )
    assert cancelled.state == common_pb2.JOB_STATE_CANCELLED
    assert all(s.status == common_pb2.STAGE_STATUS_CANCELLED for s in cancelled.stages)
    assert await mesh.session_state(waiting_session) == session_pb2.SESSION_STATE_READY
    # Its place in line reached the progress stream (the queue's positions and ETAs as it
    # moves, on a fake clock: test_queue_in_process.py).
    events = await mesh.events(waiting_session)
    queued = [e for e in events if e.type == E.EVENT_TYPE_JOB_QUEUED]
    assert [e.queue_position for e in queued] == [1] and queued[0].eta_seconds > 0
    assert events[-1].type == E.EVENT_TYPE_JOB_CANCELLED
    await mesh.runner.CancelJob(
        stage_runner_pb2.CancelJobRequest(job_id=running.job_id), metadata=user_metadata("alice")
    )


async def test_production_mode_with_a_missing_backend_fails_the_job(start_mesh):
    mesh = await start_mesh(mode="auto")
    await expect_code(
        mesh.runner.SetProcessingMode(
            stage_runner_pb2.SetProcessingModeRequest(mode=common_pb2.PROCESSING_MODE_PRODUCTION),
            metadata=user_metadata("alice"),
        ),
        "PERMISSION_DENIED",
    )
    caps = await mesh.runner.SetProcessingMode(
        stage_runner_pb2.SetProcessingModeRequest(mode=common_pb2.PROCESSING_MODE_PRODUCTION),
        metadata=user_metadata("root"),
    )
    assert caps.mode == common_pb2.PROCESSING_MODE_PRODUCTION and not caps.production_ready
    assert any("xtts_voice_cloning" in m for m in caps.missing)
    session_id = await mesh.ready_session()
    job = await mesh.start(session_id)
    failed = await mesh.wait_done(job.job_id)
    assert failed.state == common_pb2.JOB_STATE_FAILED
    assert error_code(failed) == "STAGE_UNAVAILABLE"
    assert "xtts_voice_cloning" in failed.error.message and "install" in failed.error.message
    voice = next(s for s in failed.stages if s.stage == common_pb2.STAGE_VOICE)
    assert voice.status == common_pb2.STAGE_STATUS_FAILED and voice.error.code == "STAGE_UNAVAILABLE"
    assert await mesh.session_state(session_id) == session_pb2.SESSION_STATE_FAILED
    events = await mesh.events(session_id)
    assert events[-1].type == E.EVENT_TYPE_JOB_FAILED and events[-1].error.code == "STAGE_UNAVAILABLE"
    assert not any(session_paths(mesh.settings.sessions_dir, session_id).output.iterdir())


async def test_capabilities_and_estimates(start_mesh):
    mesh = await start_mesh(mode="simulation")
    caps = await mesh.runner.GetCapabilities(
        stage_runner_pb2.GetCapabilitiesRequest(refresh=True), metadata=user_metadata("alice")
    )
    assert caps.mode == common_pb2.PROCESSING_MODE_SIMULATION
    by_name = {b.name: b for b in caps.backends}
    assert not by_name["sadtalker"].available and "sadtalker" in by_name["sadtalker"].reason
    assert by_name["espeak-ng"].available and by_name["simulated-voice"].available
    assert {s.stage: s.selected_backend for s in caps.stages}[common_pb2.STAGE_VOICE] == "simulated-voice"
    session_id = await mesh.ready_session()
    estimate = await mesh.runner.EstimateJob(
        stage_runner_pb2.EstimateJobRequest(
            session_id=session_id, spec=stage_runner_pb2.JobSpec(script_text=" ".join(["word"] * 150))
        ),
        metadata=user_metadata("alice"),
    )
    assert estimate.speech_seconds == pytest.approx(60.0)
    assert [s.stage for s in estimate.stages] == [1, 2, 3, 4, 6]
    assert estimate.total_seconds == pytest.approx(sum(s.seconds for s in estimate.stages))
    assert set(estimate.outputs) == {"video", "thumbnail", "audio", "script"}
    await expect_code(
        mesh.runner.EstimateJob(
            stage_runner_pb2.EstimateJobRequest(
                session_id=session_id, spec=stage_runner_pb2.JobSpec(script_text="x")
            ),
            metadata=user_metadata("bob"),
        ),
        "SESSION_NOT_FOUND",
    )


async def test_list_jobs_pages(start_mesh):
    mesh = await start_mesh()
    session_id = await mesh.ready_session()
    ids_in_order = []
    for _ in range(3):
        job = await mesh.start(session_id)
        ids_in_order.append(job.job_id)
        await mesh.wait_done(job.job_id)
    seen, token = [], ""
    while True:
        page = await mesh.runner.ListJobs(
            stage_runner_pb2.ListJobsRequest(session_id=session_id, page_size=2, page_token=token),
            metadata=user_metadata("alice"),
        )
        seen += [j.job_id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids_in_order
    await expect_code(
        mesh.runner.ListJobs(
            stage_runner_pb2.ListJobsRequest(page_token="zz"), metadata=user_metadata("alice")
        ),
        "INVALID_ARGUMENT",
    )


def error_code(job: stage_runner_pb2.Job) -> str:
    from services.stage_runner.job_view import error_code_of

    return error_code_of(job)


async def test_generate_script_without_a_key_is_unavailable(start_mesh):
    mesh = await start_mesh()
    await expect_code(
        mesh.runner.GenerateScript(
            stage_runner_pb2.GenerateScriptRequest(prompt=stage_runner_pb2.ScriptPrompt(topic="owls")),
            metadata=user_metadata("alice"),
        ),
        "STAGE_UNAVAILABLE",
    )


async def test_per_stage_limit_runs_one_voice_stage_at_a_time(start_mesh):
    mesh = await start_mesh(
        stage_runner_max_running_jobs=3,
        stage_runner_max_running_jobs_per_user=3,
        stage_runner_stage_limits="voice=1",
        stage_runner_simulation_seconds=0.3,
    )
    sessions = [await mesh.ready_session() for _ in range(3)]
    jobs = await asyncio.gather(*(mesh.start(s) for s in sessions))
    done = [await mesh.wait_done(j.job_id) for j in jobs]
    assert all(j.state == common_pb2.JOB_STATE_COMPLETED for j in done)

    def interval(job, stage):
        state = next(s for s in job.stages if s.stage == stage)
        return state.start_time.ToNanoseconds(), state.end_time.ToNanoseconds()

    voices = sorted(interval(j, common_pb2.STAGE_VOICE) for j in done)
    assert all(voices[i][1] <= voices[i + 1][0] for i in range(2)), voices
    # The jobs themselves ran side by side (three run slots): all started before the first ended.
    assert max(j.start_time.ToNanoseconds() for j in done) < min(j.end_time.ToNanoseconds() for j in done)


async def test_auto_mode_falls_back_to_stand_ins_with_a_warning(start_mesh):
    mesh = await start_mesh(mode="auto")
    # As if ffmpeg and espeak-ng were missing: no real voice/animate/enhance/assemble backend.
    mesh.wiring.registry.detection.executables = {}
    session_id = await mesh.ready_session(face=SAMPLES / "portrait.jpg")
    job = await mesh.start(session_id)
    done = await mesh.wait_done(job.job_id)
    assert done.state == common_pb2.JOB_STATE_COMPLETED
    assert {s.stage: s.backend for s in done.stages}[common_pb2.STAGE_VOICE] == "simulated-voice"
    warnings = [e for e in await mesh.events(session_id) if e.type == E.EVENT_TYPE_WARNING]
    assert len(warnings) == 1 and "voice" in warnings[0].message and "simulated" in warnings[0].message
