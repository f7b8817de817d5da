"""The gateway's FastAPI application: routers, middleware and error handlers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from libs.common.metrics import MetricsSettings
from libs.common.settings import MeshSettings
from libs.common.tracing import shutdown_tracing
from services.gateway import (
    routes_admin,
    routes_assets,
    routes_events,
    routes_health,
    routes_jobs,
    routes_ops,
    routes_outputs,
    routes_sessions,
    routes_ui,
)
from services.gateway.config import GatewaySettings
from services.gateway.contract import install_contract
from services.gateway.front_door import install_front_door
from services.gateway.problems import install_problem_handlers
from services.gateway.request_context import RequestContextMiddleware
from services.gateway.state import GatewayState

API_DESCRIPTION = (
    "Turns a face photo, a voice sample and a script into a talking-head video. "
    "Authenticate with `Authorization: Bearer <api key>`. Errors are application/problem+json "
    "(schema `Problem`) with a stable `code` from the error catalog; each operation lists the "
    "codes it can answer. JSON spells enum values in lower case, integers as numbers and "
    "timestamps as RFC 3339 (UTC)."
)


def create_app(
    settings: MeshSettings,
    gateway_settings: GatewaySettings | None = None,
    metrics_settings: MetricsSettings | None = None,
) -> FastAPI:
    """The app and its state, built now: a bad setting raises here, before anything serves."""
    state = GatewayState.build(settings, gateway_settings, metrics_settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await state.close()
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
        # Operation ids are the route functions' names (create_session, get_job, ...).
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.gateway = state
    for router in (
        routes_health.router,
        routes_ops.router,
        routes_sessions.router,
        routes_assets.router,
        routes_events.router,
        routes_jobs.router,
        routes_outputs.router,
        routes_admin.router,
        routes_ui.router,
    ):
        app.include_router(router)
    install_front_door(app, state)
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(routes_ops.HttpMetricsMiddleware)
    install_problem_handlers(app)
    install_contract(app)
    return app
