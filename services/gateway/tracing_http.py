"""The gateway's HTTP server spans, opened by RequestContextMiddleware (near-outermost,
so refusals of the front door are traced too). A request continues the trace its
`traceparent` header names (the client's, or the edge's pass-through of it); a
malformed one is ignored and the request starts a trace of its own.

A span keeps the method, the route template once routing matched
(`POST /v1/sessions/{session_id}/jobs`, never the raw path with its ids), the status
and the request id (X-Request-ID, also on every log line). Never the query string
(stream tokens travel there), headers or bodies.

Why not opentelemetry-instrumentation-asgi's middleware: it records about fifteen
attributes per request (the full URL with its query among them) and, measured by
bench/sessions.py --tracing together with the library's gRPC interceptors, cost 17 % of
the gateway's throughput with nothing sampled and 36 % at 100 %, against the 10 % the
mesh allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from starlette.types import Scope

from libs.common import tracing

# Probes and scrapes would each start a trace every few seconds.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass
class HttpSpan:
    span: Span
    token: object


def start_http_span(scope: Scope, headers: dict[bytes, bytes], request_id: str) -> HttpSpan | None:
    """The request's server span, current until `end_http_span` (None when tracing is
    off or the path is a probe's)."""
    tracer = tracing.active_tracer()
    if tracer is None or scope.get("path") in UNTRACED_PATHS:
        return None
    traceparent = headers.get(b"traceparent")
    if traceparent:
        carrier = {"traceparent": traceparent.decode("latin-1")}
        if tracestate := headers.get(b"tracestate"):
            carrier["tracestate"] = tracestate.decode("latin-1")
        parent = tracing.extract_context(carrier)
    else:
        parent = tracing.empty_context()
    method = scope.get("method") or "GET"  # a WebSocket's opening request is a GET
    span = tracer.start_span(
        method,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, "vidsynth.request_id": request_id},
    )
    return HttpSpan(span, otel_context.attach(trace.set_span_in_context(span)))


def response_started(traced: HttpSpan | None, scope: Scope, status: int) -> None:
    """Names the span after the matched route (routing has run by now) and records the status."""
    if traced is None or not traced.span.is_recording():
        return
    span = traced.span
    path = getattr(scope.get("route"), "path", None)
    if path:
        span.update_name(f"{scope.get('method') or 'GET'} {path}")
        span.set_attribute("http.route", path)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, str(status)))


def end_http_span(traced: HttpSpan | None) -> None:
    if traced is not None:
        otel_context.detach(traced.token)
        traced.span.end()
