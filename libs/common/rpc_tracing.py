"""Spans of gRPC calls inside the mesh, opened by the interceptors the mesh already runs
(libs/common/interceptors.py on servers, libs/common/clients.py on clients), and W3C
trace context carried in the calls' metadata (`traceparent`, `tracestate`).

Each call served is a span named `package.Service/Method` with rpc.system, rpc.service,
rpc.method and rpc.grpc.status_code (OpenTelemetry's semantic conventions), the
catalogued `vidsynth.error.code` on refusals, and ERROR status only for the server-side
faults the conventions name. The caller sends its current span's context (the HTTP
request's, the stage's, the call being served) rather than a client span of its own: a
span costs ~50 µs to record and ~40 µs to export here, and the server's span already
shows where the time went; a call that fails is an `rpc failed` event on the caller's
span where its error is translated, so one that never reached a server still shows.

Why not opentelemetry-instrumentation-grpc's grpc.aio interceptors (nor the ASGI
middleware, see services/gateway/tracing_http.py): each is one more interceptor layer
per call (a servicer-context proxy on the server, an extra awaited call object on the
client) that records a stack trace on every catalogued refusal, and with them
bench/sessions.py --tracing measured a 17 % throughput loss through the gateway with
nothing sampled and 36 % at 100 %, against the 10 % the mesh allows.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from libs.common import tracing

# Server-side faults (the conventions' list); any other code is the caller's problem.
SERVER_FAULTS = frozenset(
    code.value[0]
    for code in (
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    )
)


@dataclass
class ServerSpan:
    span: Span
    token: object


def _attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def start_server_span(method: str, metadata: Mapping[str, str]) -> ServerSpan | None:
    """The span of an incoming call, current until `end_server_span`; it continues the
    caller's trace when the metadata carries a well-formed `traceparent` (a malformed
    one is ignored: the call starts a trace of its own). None when tracing is off."""
    tracer = tracing.active_tracer()
    if tracer is None:
        return None
    parent = tracing.extract_context(metadata) if "traceparent" in metadata else tracing.empty_context()
    span = tracer.start_span(
        method.lstrip("/"), context=parent, kind=SpanKind.SERVER, attributes=_attributes(method)
    )
    return ServerSpan(span, otel_context.attach(trace.set_span_in_context(span)))


def end_server_span(started: ServerSpan | None, code: str, grpc_status: int) -> None:
    if started is None:
        return
    span = started.span
    if span.is_recording():
        span.set_attribute("rpc.grpc.status_code", grpc_status)
        if code != "OK":
            span.set_attribute("vidsynth.error.code", code)
        if grpc_status in SERVER_FAULTS:
            span.set_status(Status(StatusCode.ERROR, code))
    otel_context.detach(started.token)
    span.end()


def inject_current(metadata: MutableMapping[str, str]) -> None:
    """Adds the current span's context to an outgoing call's metadata (when tracing)."""
    if tracing.active_tracer() is not None:
        tracing.inject_context(metadata, otel_context.get_current())


def record_failed_call(code: grpc.StatusCode, error_code: str) -> None:
    """A call that failed is an event on the caller's span (it may never have reached a
    server to open one of its own); recorded where the failure is translated
    (libs/common/rpc_status.error_from_rpc_error), so a call that succeeds costs nothing."""
    current = trace.get_current_span()
    if current.is_recording():
        current.add_event(
            "rpc failed", {"rpc.grpc.status_code": code.value[0], "vidsynth.error.code": error_code}
        )
