"""A SIGKILLed SessionService loses nothing: the real process, restarted on the same data."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.session.helpers import FACE, asset
from tests.support.identities import mesh_env, mesh_metadata, user_metadata
from tests.support.ports import free_port_block
from vidsynth.v1 import session_pb2 as pb
from vidsynth.v1 import session_pb2_grpc

START_TIMEOUT_SECONDS = 60.0


async def start_service(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.session",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def wait_serving(channel: grpc.aio.Channel, process: asyncio.subprocess.Process) -> None:
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT_SECONDS
    while asyncio.get_running_loop().time() < deadline:
        assert process.returncode is None, "the session service exited"
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1.0
            )
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the session service did not become SERVING")


@pytest.fixture
def service_env(tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        **mesh_env(),
        "VIDSYNTH_DATA_DIR": str(tmp_path / "var"),
        "VIDSYNTH_GRPC_PORT": str(free_port_block()),
        "VIDSYNTH_LOG_LEVEL": "warning",
    }


async def test_sigkill_and_restart_keeps_sessions(service_env, tmp_path):
    address = f"127.0.0.1:{service_env['VIDSYNTH_GRPC_PORT']}"
    process = await start_service(service_env)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await wait_serving(channel, process)
            stub = session_pb2_grpc.SessionServiceStub(channel)
            created = await stub.CreateSession(
                pb.CreateSessionRequest(display_name="survivor"), metadata=user_metadata("alice")
            )
            face = asset(FACE)
            await stub.RegisterAsset(
                pb.RegisterAssetRequest(session_id=created.session_id, asset=face),
                metadata=mesh_metadata("alice"),
            )
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    assert process.returncode == -signal.SIGKILL

    process = await start_service(service_env)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await wait_serving(channel, process)
            stub = session_pb2_grpc.SessionServiceStub(channel)
            back = await stub.GetSession(
                pb.GetSessionRequest(session_id=created.session_id), metadata=user_metadata("alice")
            )
            assert back.display_name == "survivor"
            assert back.create_time == created.create_time
            assert [a.asset_id for a in back.assets] == [face.asset_id]
            assert (tmp_path / "var" / "sessions" / created.session_id / "assets").is_dir()
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)
