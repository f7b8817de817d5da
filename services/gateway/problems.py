"""Every HTTP error leaves as application/problem+json (RFC 9457) built from the catalog."""

from __future__ import annotations

import math

import grpc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from libs.common.errors import CATALOG, FieldViolation, VidsynthError
from libs.common.identity import current_request_id
from libs.common.problems import PROBLEM_CONTENT_TYPE, problem_body
from libs.common.rpc_status import error_from_rpc_error
from services.gateway.json_body import RefusedBody

log = structlog.get_logger("vidsynth.gateway")

_HTTP_STATUS_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}


def problem_response(
    error: VidsynthError, request_id: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    request_id = request_id or current_request_id.get()
    headers = {**(headers or {}), **({"X-Request-ID": request_id} if request_id else {})}
    if error.retry_after_seconds is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_seconds)))
    return JSONResponse(
        problem_body(error, request_id),
        status_code=error.spec.http_status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def _request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "") or current_request_id.get()


def _field_name(location: tuple) -> str:
    # Drops where the value was (body, query...) and the names of the shapes a union tried
    # (capitalised; the API's own field names are snake_case).
    in_body = bool(location) and location[0] == "body"
    parts = [str(p) for p in location[1:] if not (in_body and str(p)[:1].isupper())]
    return ".".join(parts) or "body"


def _is_bad_id(error: dict) -> bool:
    location = error.get("loc", ())
    return (
        error.get("type") == "string_pattern_mismatch"
        and bool(location)
        and str(location[-1]).endswith("_id")
    )


def validation_error(exc: RequestValidationError) -> VidsynthError:
    """One catalogued error for FastAPI's validation errors: MALFORMED_JSON, INVALID_ID (an
    id parameter that is not one), a catalog code a validator raised as its error type
    (e.g. SCRIPT_TOO_LONG), else INVALID_ARGUMENT; each with its field violations."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return VidsynthError("MALFORMED_JSON")
    violations = [FieldViolation(_field_name(tuple(e.get("loc", ()))), str(e.get("msg", ""))) for e in errors]
    if errors and all(_is_bad_id(e) for e in errors):
        names = ", ".join(v.field for v in violations)
        return VidsynthError("INVALID_ID", f"{names} is not a well-formed id.", violations)
    types = {str(e.get("type", "")) for e in errors}
    if len(types) == 1 and (code := types.pop()) in CATALOG:
        return VidsynthError(code, str(errors[0].get("msg", "")) or None, violations)
    return VidsynthError("INVALID_ARGUMENT", "Some fields are not valid.", violations)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(VidsynthError)
    async def _vidsynth(request: Request, exc: VidsynthError):
        return problem_response(exc, _request_id(request))

    @app.exception_handler(grpc.RpcError)
    async def _rpc(request: Request, exc: grpc.RpcError):
        return problem_response(error_from_rpc_error(exc), _request_id(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return problem_response(validation_error(exc), _request_id(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if isinstance(exc, RefusedBody):
            return problem_response(exc.error, _request_id(request))
        # Keeps Allow on 405s (the routing guard answers most of them before routing).
        headers = {"Allow": exc.headers["Allow"]} if exc.headers and "Allow" in exc.headers else None
        return problem_response(
            VidsynthError(_HTTP_STATUS_CODES.get(exc.status_code, "INTERNAL")), _request_id(request), headers
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("http.crashed", path=request.url.path)
        return problem_response(VidsynthError("INTERNAL"), _request_id(request))
