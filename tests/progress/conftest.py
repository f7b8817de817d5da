"""Fixtures for the progress tests: a session service, the progress service, a gateway."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import grpc
import pytest
import uvicorn
from fastapi import FastAPI

import services.progress.server
import services.session.server
from libs.common.settings import MeshSettings
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.progress.config import ProgressSettings
from services.progress.event_log import EventLog
from services.session.config import SessionSettings
from tests.support.identities import mesh_metadata, user_metadata
from tests.support.ports import free_port
from vidsynth.internal.v1 import progress_internal_pb2, progress_internal_pb2_grpc
from vidsynth.v1 import progress_pb2_grpc, session_pb2, session_pb2_grpc


@dataclass
class ProgressMesh:
    settings: MeshSettings
    session_address: str
    progress_address: str
    event_log: EventLog
    channel: grpc.aio.Channel
    _shared_session: str | None = None

    @property
    def progress(self) -> progress_pb2_grpc.ProgressServiceStub:
        return progress_pb2_grpc.ProgressServiceStub(self.channel)

    @property
    def progress_internal(self) -> progress_internal_pb2_grpc.ProgressInternalServiceStub:
        return progress_internal_pb2_grpc.ProgressInternalServiceStub(self.channel)

    async def create_session(self, user: str = "alice") -> str:
        async with grpc.aio.insecure_channel(self.session_address) as channel:
            session = await session_pb2_grpc.SessionServiceStub(channel).CreateSession(
                session_pb2.CreateSessionRequest(display_name="progress test"),
                metadata=user_metadata(user),
                timeout=10,
            )
        return session.session_id

    async def reset_session(self, user: str = "alice") -> str:
        """One session per mesh, its events dropped: a fresh seq space for each hypothesis example."""
        if self._shared_session is None:
            self._shared_session = await self.create_session(user)
        await self.progress_internal.DeleteSessionEvents(
            progress_internal_pb2.DeleteSessionEventsRequest(session_id=self._shared_session),
            metadata=mesh_metadata(),
            timeout=10,
        )
        return self._shared_session


@pytest.fixture
def progress_settings() -> ProgressSettings:
    return ProgressSettings()


@pytest.fixture
async def progress_mesh(in_process_mesh, progress_settings) -> ProgressMesh:
    async def build_sessions(settings):
        # Property tests create many sessions for one user.
        return await services.session.server.build(settings, SessionSettings(session_max_per_user=500))

    session = await in_process_mesh.start("session", build_sessions)

    async def build(settings):
        return await services.progress.server.build(settings, progress_settings)

    progress = await in_process_mesh.start("progress", build)
    channel = progress.channel()
    yield ProgressMesh(
        in_process_mesh.settings, session.address, progress.address, progress.wiring.event_log, channel
    )
    await channel.close()


@dataclass
class Gateway:
    url: str
    app: FastAPI

    def feed_clients(self, session_id: str) -> int:
        return self.app.state.gateway.event_feeds.client_count(session_id)


@pytest.fixture
async def gateway(progress_mesh) -> Gateway:
    """A real uvicorn gateway on a free port, wired to this test's mesh."""
    port = free_port()
    # Many concurrent streams from one key: the per-key rate limit is not under test here.
    app = create_app(
        progress_mesh.settings,
        GatewaySettings(gateway_rate_limit_per_second=10_000, gateway_rate_limit_burst=10_000),
    )
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(400):
        if server.started:
            break
        await asyncio.sleep(0.025)
    yield Gateway(f"http://127.0.0.1:{port}", app)
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)


@pytest.fixture
def gateway_url(gateway) -> str:
    return gateway.url


async def eventually(condition, what: str, timeout: float = 20.0) -> None:
    """Polls `condition()` until true (no fixed sleeps standing in for synchronisation)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
