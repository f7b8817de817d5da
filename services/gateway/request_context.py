"""Pure ASGI middleware: one request id per request, echoed as X-Request-ID and bound
to logs and outgoing RPCs; and, when tracing, the request's server span."""

from __future__ import annotations

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.identity import current_identity, current_request_id
from libs.common.interceptors import clean_request_id
from libs.common.log import bind_context
from services.gateway.tracing_http import end_http_span, response_started, start_http_span


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        request_id = clean_request_id(headers.get(b"x-request-id", b"").decode("latin-1"))
        scope.setdefault("state", {})["request_id"] = request_id
        current_request_id.set(request_id)
        current_identity.set(None)
        structlog.contextvars.clear_contextvars()
        bind_context(request_id=request_id)
        traced = start_http_span(scope, headers, request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
                response_started(traced, scope, message["status"])
            elif message["type"] == "websocket.accept":
                response_started(traced, scope, 101)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            end_http_span(traced)
