"""The gateway's HTTP server spans: opentelemetry-instrumentation-asgi's middleware,
outermost, continuing a `traceparent` the client (or the edge) sent; a malformed one
is ignored and the request starts a new trace.

What the spans keep: the method, the route template (`POST /v1/sessions/{session_id}/jobs`,
set once routing has matched), the status, the peer. What they never keep: the query
string (SSE and WebSocket stream tokens travel there), request bodies, and secret
headers even when an operator asks the middleware to capture headers.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.trace import Span
from starlette.types import Scope

from libs.common import tracing

_QUERY_ATTRIBUTES = ("http.url", "url.full", "url.query", "http.target")


def _span_details(scope: dict[str, Any]) -> tuple[str, dict]:
    """The name until the route is known: the method alone, never the raw path (ids)."""
    return scope.get("method") or scope.get("type", "HTTP"), {}


def _drop_query(server_span: Span, scope: dict[str, Any]) -> None:
    """The middleware records the URL with its query; the query may hold a stream token."""
    if not scope.get("query_string") or not server_span.is_recording():
        return
    recorded = getattr(server_span, "attributes", None) or {}
    for key in _QUERY_ATTRIBUTES:
        value = recorded.get(key)
        if isinstance(value, str) and "?" in value:
            server_span.set_attribute(key, value.split("?", 1)[0])
        elif key == "url.query" and value:
            server_span.set_attribute(key, "")


def instrument(app: FastAPI) -> None:
    """Adds the tracing middleware as the outermost one (when tracing is on)."""
    if not tracing.enabled():
        return
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.metrics import NoOpMeterProvider

    app.add_middleware(
        OpenTelemetryMiddleware,
        tracer_provider=tracing.tracer_provider(),
        meter_provider=NoOpMeterProvider(),  # metrics are Prometheus's (/metrics)
        excluded_urls=",".join(f"{path}$" for path in tracing.UNTRACED_HTTP_PATHS),
        default_span_details=_span_details,
        server_request_hook=_drop_query,
        http_capture_headers_sanitize_fields=tracing.SECRET_HEADERS,
        exclude_spans=["receive", "send"],
    )


def name_after_route(scope: Scope) -> None:
    """Renames the current server span after the matched route; call once routing ran."""
    path = getattr(scope.get("route"), "path", None)
    current = trace.get_current_span()
    if path and current.is_recording():
        current.update_name(f"{scope.get('method') or 'WEBSOCKET'} {path}")
        current.set_attribute("http.route", path)
