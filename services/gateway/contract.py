"""The OpenAPI document, completed from the code so it cannot drift from what the gateway sends.

FastAPI infers paths, parameters, bodies and success shapes from the routes. This module
adds what it cannot infer:

- error responses, GENERATED from the error catalog: each route declares the catalog codes
  it can answer (`problems(...)` in its `openapi_extra`), the codes every route of its kind
  can answer are added by rule (`common_codes`), and each HTTP status becomes one
  application/problem+json response whose `code` is the enum of exactly those codes;
- FastAPI's 422 (never sent: validation errors are 400 problem+json) is dropped;
- the schemas that only streams carry (ProgressEvent, StreamError) and the Problem;
- the stream-token security scheme and the WebSocket's description.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from libs.common.errors import CATALOG
from libs.common.problems import PROBLEM_CONTENT_TYPE
from services.gateway import api_models as m

CODES_KEY = "x-vidsynth-error-codes"
SCHEMA_REF = "#/components/schemas/{model}"
STREAM_TOKEN_SCHEME = "streamToken"  # noqa: S105 - a scheme name, not a secret
BEARER_SCHEME = "bearer"
ID_PARAMETERS = frozenset({"session_id", "job_id"})
# Statuses whose problem carries Retry-After.
RETRY_AFTER_STATUSES = frozenset({429, 503, 507})
# Not problem bodies: these operations answer 503 with their own (health) body.
OWN_503_PATHS = frozenset({"/readyz", "/v1/health"})

WEBSOCKET_DESCRIPTION = """
### Progress over WebSocket

`GET /v1/sessions/{session_id}/ws` upgrades to a WebSocket carrying the same events as the
SSE stream: one JSON text message per event (schema `ProgressEvent`), then, if the stream
fails, one `StreamError` message and a close with code `4000 + HTTP status` (e.g. 4404).
A stream that ends normally (`until_terminal`, or the server's stream lifetime) closes
with 1000. Query: `after` (resume after this seq), `token` (a stream token instead of the
Authorization header), `job_id`, `until_terminal`. Refusals before the upgrade are ordinary
problem+json answers (401, 404, 429, ...); a browser page from an origin outside the CORS
allowlist is refused with 403 `ORIGIN_NOT_ALLOWED`.
"""


def problems(*codes: str) -> dict[str, Any]:
    """`openapi_extra` declaring the catalog codes a route can answer besides the common ones."""
    unknown = [code for code in codes if code not in CATALOG]
    if unknown:
        raise ValueError(f"not in the error catalog: {unknown}")
    return {CODES_KEY: list(codes)}


def _has_json_body(operation: dict) -> bool:
    content = operation.get("requestBody", {}).get("content", {})
    return "application/json" in content


def common_codes(path: str, operation: dict) -> set[str]:
    """The codes every operation of this shape can answer, from the middleware and FastAPI."""
    codes = {"REQUEST_HEADERS_TOO_LARGE"}
    parameters = operation.get("parameters", [])
    if path.startswith("/v1/"):
        codes.add("RATE_LIMITED")
        if path not in OWN_503_PATHS:
            codes |= {"SERVICE_UNAVAILABLE", "DEADLINE_EXCEEDED"}
    if operation.get("security"):
        codes.add("UNAUTHENTICATED")
    if any(p["in"] == "path" and p["name"] in ID_PARAMETERS for p in parameters):
        codes.add("INVALID_ID")
    if parameters or "requestBody" in operation:
        codes.add("INVALID_ARGUMENT")
    if _has_json_body(operation):
        codes |= {"MALFORMED_JSON", "UNSUPPORTED_MEDIA_TYPE", "REQUEST_TOO_LARGE"}
    return codes


def _problem_schema(codes: list[str], status: int) -> dict:
    return {
        "allOf": [
            {"$ref": SCHEMA_REF.format(model="Problem")},
            {
                "type": "object",
                "required": ["code", "status"],
                "properties": {"code": {"type": "string", "enum": codes}, "status": {"const": status}},
            },
        ]
    }


def problem_responses(codes: set[str]) -> dict[str, dict]:
    """One problem+json response per HTTP status, listing the codes answered with it."""
    by_status: dict[int, list[str]] = defaultdict(list)
    for code in sorted(codes):
        by_status[CATALOG[code].http_status].append(code)
    responses: dict[str, dict] = {}
    for status, status_codes in sorted(by_status.items()):
        lines = "\n".join(f"- `{code}`: {CATALOG[code].message}" for code in status_codes)
        response: dict[str, Any] = {
            "description": lines,
            "content": {PROBLEM_CONTENT_TYPE: {"schema": _problem_schema(status_codes, status)}},
            "headers": {"X-Request-ID": {"schema": {"type": "string"}}},
        }
        if status in RETRY_AFTER_STATUSES:
            response["headers"]["Retry-After"] = {
                "description": "Seconds to wait before retrying (on refusals that say when).",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        responses[str(status)] = response
    return responses


def _stream_schemas() -> dict[str, dict]:
    """Component schemas of the models only streams and errors carry (validation mode: a
    member with a default is optional, as the JSON really omits it)."""
    models = [m.Problem, m.FieldViolation, m.ProgressEvent, m.StreamError, m.ErrorSummary]
    _, top = models_json_schema([(model, "validation") for model in models], ref_template=SCHEMA_REF)
    return top["$defs"]


def _not_nullable(schema: dict) -> dict:
    """`anyOf: [X, null]` -> X: a parameter is absent or a string, never JSON null (a client
    generator or fuzzer would otherwise send the text "null")."""
    options = schema.get("anyOf")
    if not options or {"type": "null"} not in options or len(options) != 2:
        return schema
    (kept,) = [option for option in options if option != {"type": "null"}]
    rest = {
        key: value
        for key, value in schema.items()
        if key != "anyOf" and not (key == "default" and value is None)
    }
    return {**kept, **rest}


def _complete_operation(path: str, operation: dict) -> None:
    for parameter in operation.get("parameters", []):
        parameter["schema"] = _not_nullable(parameter["schema"])
    responses = operation["responses"]
    responses.pop("422", None)
    codes = common_codes(path, operation) | set(operation.pop(CODES_KEY, []))
    for status, response in problem_responses(codes).items():
        if status in responses:
            raise ValueError(f"{path}: status {status} is both a success and a catalogued problem")
        responses[status] = response


def _refs(node: Any) -> set[str]:
    """Names of the component schemas `node` refers to directly."""
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def _reachable(roots: set[str], schemas: dict[str, dict]) -> set[str]:
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name not in seen and name in schemas:
            seen.add(name)
            pending.extend(_refs(schemas[name]))
    return seen


def _defaults_as_words(schema: dict) -> None:
    """Moves `default` of optional members into the description: client generators
    (openapi-typescript) take a member with a default as always present, which holds for
    answers but would make a client send every optional member of a request."""
    for member in schema.get("properties", {}).values():
        if "default" in member:
            default = member.pop("default")
            words = f"Default: `{json.dumps(default)}`."
            member["description"] = f"{member['description']} {words}" if member.get("description") else words


def _request_only_defaults(schema: dict[str, Any]) -> None:
    schemas = schema["components"]["schemas"]
    requests: set[str] = set()
    responses: set[str] = set()
    for operations in schema["paths"].values():
        for operation in operations.values():
            requests |= _refs(operation.get("requestBody", {}))
            responses |= _refs(operation.get("responses", {}))
    for name in _reachable(requests, schemas) - _reachable(responses, schemas):
        _defaults_as_words(schemas[name])


def build_openapi(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=(app.description or "") + "\n" + WEBSOCKET_DESCRIPTION,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for name, definition in _stream_schemas().items():
        schemas.setdefault(name, definition)
    components.setdefault("securitySchemes", {})[STREAM_TOKEN_SCHEME] = {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "A stream token from POST /v1/sessions/{session_id}/stream-token "
        "(EventSource cannot send headers).",
    }
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            _complete_operation(path, operation)
    _request_only_defaults(schema)
    return schema


def install_contract(app: FastAPI) -> None:
    """Serves the completed document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
