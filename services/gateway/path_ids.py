"""The routing guard, before any route runs: a method the path does not have is 405
METHOD_NOT_ALLOWED with `Allow` (every method of every route on that path), then a malformed
resource id in the path is 400 INVALID_ID.

The id check sees the decoded path, so `..%2F..%2Fetc` and friends are caught here instead
of falling through to a 404 or reaching code that builds file paths. The method check comes
first: TRACE on a path with a bad id is still a method the path lacks.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from libs.common import ids
from libs.common.errors import VidsynthError
from services.gateway.asgi_problems import send_problem

# /v1/<collection>/<id>/... -> the kind of id that must follow the collection name.
ID_SEGMENTS = {"sessions": "session", "jobs": "job"}


def malformed_id(path: str) -> VidsynthError | None:
    """INVALID_ID when `path` is `/v1/<collection>/<segment>...` and the segment is not an id."""
    if not path.startswith("/v1/"):
        return None
    parts = path[len("/v1/") :].split("/")
    if len(parts) < 2 or parts[0] not in ID_SEGMENTS:
        return None
    if parts[1] == "" and len(parts) == 2:  # `/v1/sessions/`: the collection itself
        return None
    try:
        ids.check_id(ID_SEGMENTS[parts[0]], parts[1])
    except VidsynthError as error:
        return error
    return None


def flat_routes(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """The app's routes with included routers opened (FastAPI nests them; the gateway
    includes every router without an extra prefix, so their routes carry full paths)."""
    flat: list[BaseRoute] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        flat.extend(flat_routes(included.routes) if included is not None else [route])
    return flat


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str] | None:
    """The methods the path has when the request's method is not one of them, else None
    (the method fits a route, or no route has the path: that is a 404, not a 405)."""
    path, method = scope["path"], scope["method"]
    methods: set[str] = set()
    for route in routes:
        route_methods = getattr(route, "methods", None)
        if not route_methods or not route.path_regex.match(path):  # type: ignore[attr-defined]
            continue
        if method in route_methods:
            return None
        methods |= route_methods
    return sorted(methods) or None


class PathIdMiddleware:
    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        # Built when the first request arrives (the middleware stack is), so every route is in.
        self._routes = flat_routes(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            allowed = allowed_methods(self._routes, scope)
            if allowed is not None:
                error = VidsynthError("METHOD_NOT_ALLOWED", f"This path allows {', '.join(allowed)}.")
                await send_problem(scope, receive, send, error, {"Allow": ", ".join(allowed)})
                return
        if scope["type"] in ("http", "websocket"):
            error = malformed_id(scope["path"])
            if error is not None:
                if scope["type"] == "http":
                    await send_problem(scope, receive, send, error)
                else:
                    await send({"type": "websocket.close", "code": 1008, "reason": error.code})
                return
        await self.app(scope, receive, send)
