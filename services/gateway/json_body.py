"""JSON request bodies, decoded one strict way for every route (the routers' route class).

- A body must be sent as JSON (`application/json` or `+json`): 415 UNSUPPORTED_MEDIA_TYPE.
- JSON may escape lone UTF-16 surrogates (`"\\ud800"`) that are no Unicode text: nothing
  downstream (protobuf strings, logs, files) can encode them, so they are refused here as
  400 INVALID_ARGUMENT naming the field, instead of failing later as a 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from libs.common.errors import FieldViolation, VidsynthError

LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class RefusedBody(HTTPException):
    """Raised while FastAPI reads the body (it re-raises HTTPExceptions as they are)."""

    def __init__(self, error: VidsynthError) -> None:
        super().__init__(status_code=error.spec.http_status, detail=error.message)
        self.error = error


def lone_surrogate_field(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) holding a lone surrogate, else None."""
    if isinstance(value, str):
        return (path or "body") if LONE_SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if LONE_SURROGATE.search(key):
                return path or "body"
            if (found := lone_surrogate_field(item, where)) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := lone_surrogate_field(item, f"{path}.{index}" if path else str(index))) is not None:
                return found
    return None


def is_json_media_type(content_type: str) -> bool:
    media_type = content_type.split(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                parsed = json.loads(await self.body())
            except UnicodeDecodeError:  # not UTF-8 (JSONDecodeError is handled by FastAPI)
                raise RefusedBody(VidsynthError("MALFORMED_JSON")) from None
            field = lone_surrogate_field(parsed)
            if field is not None:
                raise RefusedBody(
                    VidsynthError(
                        "INVALID_ARGUMENT",
                        f"{field} is not valid Unicode text (it holds a lone surrogate).",
                        [FieldViolation(field, "contains a lone UTF-16 surrogate (\\ud800-\\udfff)")],
                    )
                )
            self._json = parsed
        return self._json


def _has_body(request: Request) -> bool:
    return request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers


class ContractRoute(APIRoute):
    """Routes whose JSON bodies are decoded strictly (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()
        takes_json = self.body_field is not None

        async def strict_handler(request: Request) -> Response:
            content_type = request.headers.get("content-type")
            if takes_json and content_type and _has_body(request) and not is_json_media_type(content_type):
                raise VidsynthError("UNSUPPORTED_MEDIA_TYPE")
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler
