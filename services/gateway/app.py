"""The gateway's FastAPI application: routers, middleware and error handlers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from libs.common.clients import MeshClients
from libs.common.grpc_server import keyring_from_settings
from libs.common.settings import MeshSettings
from services.gateway import routes_health
from services.gateway.problems import install_problem_handlers
from services.gateway.request_context import RequestContextMiddleware

API_DESCRIPTION = (
    "Turns a face photo, a voice sample and a script into a talking-head video. "
    "Authenticate with `Authorization: Bearer <api key>`. Errors are application/problem+json."
)


def create_app(settings: MeshSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.clients.close()

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
    app.add_middleware(RequestContextMiddleware)
    install_problem_handlers(app)
    app.include_router(routes_health.router)
    return app
