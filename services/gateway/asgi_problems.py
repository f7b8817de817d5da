"""Problem responses sent straight from ASGI middleware (outside FastAPI's handlers)."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from libs.common.errors import VidsynthError
from libs.common.identity import current_request_id
from services.gateway.problems import problem_response


def scope_request_id(scope: Scope) -> str:
    return (scope.get("state") or {}).get("request_id") or current_request_id.get()


async def send_problem(
    scope: Scope, receive: Receive, send: Send, error: VidsynthError, headers: dict[str, str] | None = None
) -> None:
    await problem_response(error, scope_request_id(scope), headers)(scope, receive, send)
