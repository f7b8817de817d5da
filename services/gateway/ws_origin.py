"""WebSockets are not covered by CORS: a browser opens one from any page, sending the page's
Origin. A handshake whose Origin is neither the gateway itself nor on the CORS allowlist is
refused (403 ORIGIN_NOT_ALLOWED, as problem+json), so another site cannot ride a user's
stream token. Clients that are not browsers send no Origin and are not affected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from libs.common.errors import VidsynthError
from services.gateway.asgi_problems import scope_request_id
from services.gateway.problems import problem_response

DENIAL_EXTENSION = "websocket.http.response"


def origin_allowed(origin: str | None, host: str | None, allowlist: frozenset[str]) -> bool:
    if origin is None:
        return True
    if origin in allowlist:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == (host or "").lower()


class WebSocketOriginMiddleware:
    def __init__(self, app: ASGIApp, *, allowed_origins: list[str]) -> None:
        self.app = app
        self._allowlist = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if origin_allowed(headers.get("origin"), headers.get("host"), self._allowlist):
            await self.app(scope, receive, send)
            return
        error = VidsynthError(
            "ORIGIN_NOT_ALLOWED", f"WebSockets from {headers.get('origin')} are not allowed."
        )
        if DENIAL_EXTENSION in scope.get("extensions", {}):
            # Starlette sends a response on a websocket scope as the denial response.
            await problem_response(error, scope_request_id(scope))(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": error.code})
