"""Fixtures for SessionService tests: the service in-process with small, test-set limits."""

from __future__ import annotations

import functools

import grpc
import pytest

from libs.common.errors import VidsynthError
from libs.common.rpc_status import error_from_rpc_error
from services.session.config import SessionSettings
from services.session.server import build
from vidsynth.internal.v1 import session_internal_pb2_grpc
from vidsynth.v1 import session_pb2_grpc


@pytest.fixture
def session_settings() -> SessionSettings:
    return SessionSettings(
        session_max_per_user=10,
        session_max_global=100,
        session_idle_ttl_seconds=3600,
        session_processing_ttl_seconds=7200,
    )


@pytest.fixture
async def session_service(in_process_mesh, session_settings):
    return await in_process_mesh.start("session", functools.partial(build, session_settings=session_settings))


@pytest.fixture
async def stub(session_service):
    async with session_service.channel() as channel:
        yield session_pb2_grpc.SessionServiceStub(channel)


@pytest.fixture
async def internal(session_service):
    """The session service's mesh-only RPCs (same port)."""
    async with session_service.channel() as channel:
        yield session_internal_pb2_grpc.SessionInternalServiceStub(channel)


async def rpc_error(call) -> VidsynthError:
    """The catalogued error an awaited call failed with (fails the test if it succeeded)."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return error_from_rpc_error(info.value)
