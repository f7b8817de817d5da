"""Fixtures for gateway tests: a real SessionService in-process and the app over ASGI."""

from __future__ import annotations

import functools

import httpx
import pytest

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.session.config import SessionSettings
from services.session.server import build


@pytest.fixture
def session_settings() -> SessionSettings:
    return SessionSettings(session_max_per_user=3, session_max_global=100)


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(
        gateway_rate_limit_per_second=1000,
        gateway_rate_limit_burst=1000,
        gateway_max_body_bytes=4096,
        gateway_cors_origins="https://app.example",
    )


@pytest.fixture
async def session_service(in_process_mesh, session_settings):
    return await in_process_mesh.start("session", functools.partial(build, session_settings=session_settings))


@pytest.fixture
async def client(session_service, in_process_mesh, gateway_settings):
    app = create_app(in_process_mesh.settings, gateway_settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client
    await app.state.gateway.close()
