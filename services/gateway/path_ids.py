"""Refuses malformed resource ids in URL paths (400 INVALID_ID) before any route runs.

The check sees the decoded path, so `..%2F..%2Fetc` and friends are caught here
instead of falling through to a 404 or reaching code that builds file paths.
"""

from __future__ import annotations

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


class PathIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            error = malformed_id(scope["path"])
            if error is not None:
                if scope["type"] == "http":
                    await send_problem(scope, receive, send, error)
                else:
                    await send({"type": "websocket.close", "code": 1008, "reason": error.code})
                return
        await self.app(scope, receive, send)
