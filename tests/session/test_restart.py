"""A SIGKILLed SessionService loses nothing: the real process, restarted on the same data."""

from __future__ import annotations

import asyncio
import os
import signal

import grpc
import pytest

from libs.common.settings import SERVICE_PORT_OFFSETS
from tests.session.helpers import FACE, asset
from tests.support.identities import mesh_env, mesh_metadata, user_metadata
from tests.support.ports import free_port_block
from tests.support.service_process import start_service_process, wait_serving
from vidsynth.internal.v1 import session_internal_pb2, session_internal_pb2_grpc
from vidsynth.v1 import session_pb2 as pb
from vidsynth.v1 import session_pb2_grpc


async def start_service(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await start_service_process("session", env)


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
    address = f"127.0.0.1:{int(service_env['VIDSYNTH_GRPC_PORT']) + SERVICE_PORT_OFFSETS['session']}"
    process = await start_service(service_env)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await wait_serving(channel, process)
            stub = session_pb2_grpc.SessionServiceStub(channel)
            created = await stub.CreateSession(
                pb.CreateSessionRequest(display_name="survivor"), metadata=user_metadata("alice")
            )
            face = asset(FACE)
            await session_internal_pb2_grpc.SessionInternalServiceStub(channel).RegisterAsset(
                session_internal_pb2.RegisterAssetRequest(session_id=created.session_id, asset=face),
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
