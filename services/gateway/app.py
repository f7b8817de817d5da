"""The gateway's FastAPI application: routers, middleware and error handlers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from libs.common.clients import MeshClients
from libs.common.grpc_server import keyring_from_settings
from libs.common.settings import MeshSettings
from libs.common.tracing import shutdown_tracing
from services.gateway import (
    routes_assets,
    routes_events,
    routes_health,
    routes_jobs,
    routes_ops,
    routes_sessions,
    routes_ui,
)
from services.gateway.config import GatewaySettings
from services.gateway.front_door import install_front_door
from services.gateway.problems import install_problem_handlers
from services.gateway.request_context import RequestContextMiddleware

API_DESCRIPTION = (
    "Turns a face photo, a voice sample and a script into a talking-head video. "
    "Authenticate with `Authorization: Bearer <api key>`. Errors are application/problem+json."
)


def create_app(settings: MeshSettings, gateway_settings: GatewaySettings | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.clients.close()
        # uvicorn re-raises SIGTERM once it has stopped, so no exit hook would run: the
        # spans still queued are exported (within seconds) now.
        await asyncio.to_thread(shutdown_tracing)

    app = FastAPI(
        title="vidsynth",
        version="1.0.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.keyring = keyring_from_settings(settings)
    app.state.clients = MeshClients(settings)
    install_front_door(app, gateway_settings or GatewaySettings())
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(routes_ops.HttpMetricsMiddleware)
    install_problem_handlers(app)
    app.include_router(routes_health.router)
    app.include_router(routes_ops.router)
    app.include_router(routes_sessions.router)
    app.include_router(routes_assets.router)
    app.include_router(routes_events.router)
    app.include_router(routes_jobs.router)
    app.include_router(routes_ui.router)
    return app
