"""Pure ASGI middleware: one request id per request, echoed as X-Request-ID and bound
to logs and outgoing RPCs."""

from __future__ import annotations

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.identity import current_identity, current_request_id
from libs.common.interceptors import clean_request_id
from libs.common.log import bind_context
from libs.common.tracing import annotate
from services.gateway.tracing_http import name_after_route


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or ()).get(b"x-request-id", b"").decode("latin-1")
        request_id = clean_request_id(incoming)
        scope.setdefault("state", {})["request_id"] = request_id
        current_request_id.set(request_id)
        current_identity.set(None)
        structlog.contextvars.clear_contextvars()
        bind_context(request_id=request_id)
        annotate({"vidsynth.request_id": request_id})  # joins the trace to X-Request-ID and logs

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
                name_after_route(scope)
            elif message["type"] == "websocket.accept":
                name_after_route(scope)
            await send(message)

        await self.app(scope, receive, send_with_id)
