"""SIGKILL (or SIGTERM) the runner process mid-job and start it again: the job resumes from its
last completed stage, redoes none of them, and the event stream has no gap."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import services.progress.server
import services.session.server
from tests.stage_runner.conftest import RunnerMesh
from tests.support.identities import mesh_env, user_metadata
from vidsynth.v1 import common_pb2, progress_pb2, session_pb2

E = progress_pb2


def runner_env(mesh: RunnerMesh) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDSYNTH_") and k != "GEMINI_API_KEY"}
    env.update(mesh_env())
    env.update(
        {
            "VIDSYNTH_DATA_DIR": str(mesh.settings.data_dir),
            "VIDSYNTH_GRPC_PORT": str(mesh.settings.grpc_port),
            "VIDSYNTH_SESSION_ADDR": mesh.session_address,
            "VIDSYNTH_PROGRESS_ADDR": mesh.progress_address,
            "VIDSYNTH_PROCESSING_MODE": "simulation",
            "VIDSYNTH_STAGE_RUNNER_SIMULATION_SECONDS": "0.5",
            "VIDSYNTH_LOG_LEVEL": "warning",
        }
    )
    return env


async def start_runner(mesh: RunnerMesh) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "services.stage_runner"],
        env=runner_env(mesh),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    async with grpc.aio.insecure_channel(mesh.runner_address) as channel:
        for _ in range(300):
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return process
            except grpc.RpcError:
                pass
            assert process.poll() is None, "runner exited at start"
            await asyncio.sleep(0.1)
    raise AssertionError("runner never became SERVING")


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM])
async def test_stopped_runner_resumes_the_job_from_its_checkpoint(in_process_mesh, media_dir, stop_signal):
    session = await in_process_mesh.start("session", services.session.server.build)
    progress = await in_process_mesh.start("progress", services.progress.server.build)
    settings = in_process_mesh.settings
    runner_address = settings.listen_address("stage_runner")
    mesh = RunnerMesh(settings, session.address, progress.address, runner_address, media_dir)
    process = await start_runner(mesh)
    try:
        session_id = await mesh.ready_session()
        job = await mesh.start(session_id)
        call = mesh.progress.Subscribe(
            progress_pb2.SubscribeRequest(session_id=session_id, job_id=job.job_id),
            metadata=user_metadata("alice"),
            timeout=60,
        )
        async for event in call:
            if event.type == E.EVENT_TYPE_STAGE_STARTED and event.stage == common_pb2.STAGE_FACE:
                break
        call.cancel()
        os.kill(process.pid, stop_signal)  # SIGTERM: graceful, the job is left resumable too
        process.wait(timeout=10)

        process = await start_runner(mesh)
        done = await mesh.wait_done(job.job_id)
        assert done.state == common_pb2.JOB_STATE_COMPLETED, done.error
        assert {o.name for o in done.outputs} == {"video", "thumbnail", "audio", "script"}
        assert await mesh.session_state(session_id) == session_pb2.SESSION_STATE_COMPLETED

        events = await mesh.events(session_id, job.job_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        started = [e.stage for e in events if e.type == E.EVENT_TYPE_STAGE_STARTED]
        completed = [e.stage for e in events if e.type == E.EVENT_TYPE_STAGE_COMPLETED]
        # Script and voice finished before the kill and ran exactly once; face was redone.
        assert started.count(common_pb2.STAGE_SCRIPT) == 1 and started.count(common_pb2.STAGE_VOICE) == 1
        assert started.count(common_pb2.STAGE_FACE) == 2
        assert completed == [1, 2, 3, 4, 6]
        job_started = [e for e in events if e.type == E.EVENT_TYPE_JOB_STARTED]
        assert len(job_started) == 2 and "resumed" in job_started[1].message
        assert events[-1].type == E.EVENT_TYPE_JOB_COMPLETED
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        await mesh.close()
