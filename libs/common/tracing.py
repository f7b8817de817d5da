"""OpenTelemetry traces for every process of the mesh, configured in one place by the
standard variables (read once, at start):

- OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): where spans go.
  Unset, tracing is off: no tracer provider, no exporter (not even imported), no thread;
  the instrumentation finds no tracer and does nothing, and the helpers below are no-ops.
- OTEL_EXPORTER_OTLP_PROTOCOL (or ..._TRACES_PROTOCOL): `http/protobuf` (default) or `grpc`.
- OTEL_TRACES_EXPORTER: `otlp` (default), `console`, `none`, or a comma-separated list.
- OTEL_SERVICE_NAME: defaults to `vidsynth-<service>` (vidsynth-gateway, vidsynth-session, ...).
- OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG: the SDK's samplers
  (`parentbased_always_on` by default; unsampled spans are not recorded).
- OTEL_SDK_DISABLED=true turns it off whatever else is set; OTEL_BSP_* size the export queue.

W3C trace context (`traceparent`, `tracestate`; no baggage) travels in gRPC metadata
between services (libs/common/rpc_tracing.py), arrives with the gateway's HTTP requests
(services/gateway/tracing_http.py) and leaves with webhook deliveries.
Spans carry ids, stage and backend names, sizes and codes; never API keys, scripts or
file names a user gave.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import os
import threading
import uuid
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic_settings import BaseSettings, SettingsConfigDict

from libs.common.heap import collect_young_objects_less_often
from libs.common.trace_export import counting_batch_processor

log = structlog.get_logger("vidsynth.tracing")

SERVICE_NAME_PREFIX = "vidsynth-"
TRACER_NAME = "vidsynth"
SHUTDOWN_SECONDS = 2.0
# Only W3C trace context leaves the mesh (webhooks): baggage may hold anything.
_W3C = TraceContextTextMapPropagator()


class TracingSettings(BaseSettings):
    """The standard OTEL_* variables this module reads itself (the SDK reads the rest)."""

    model_config = SettingsConfigDict(env_prefix="OTEL_", extra="ignore", frozen=True)

    sdk_disabled: bool = False
    traces_exporter: str = "otlp"
    exporter_otlp_endpoint: str = ""
    exporter_otlp_traces_endpoint: str = ""
    exporter_otlp_protocol: str = "http/protobuf"
    exporter_otlp_traces_protocol: str = ""
    service_name: str = ""

    @property
    def exporter_names(self) -> list[str]:
        return [n.strip().lower() for n in self.traces_exporter.split(",") if n.strip()]

    @property
    def protocol(self) -> str:
        return (self.exporter_otlp_traces_protocol or self.exporter_otlp_protocol).strip().lower()

    @property
    def endpoint(self) -> str:
        return self.exporter_otlp_traces_endpoint or self.exporter_otlp_endpoint


@dataclass
class _Tracing:
    provider: TracerProvider
    tracer: trace.Tracer
    service_name: str
    exporters: tuple[str, ...]


_state: _Tracing | None = None
_atexit_registered = False


class _HashedOnce(Resource):
    """The OTLP encoder groups spans by resource, hashing it once per span, and a
    Resource's hash is a JSON dump of its attributes: this one is computed once."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


def _version() -> str:
    try:
        return importlib.metadata.version("vidsynth")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def service_name_for(service: str) -> str:
    return SERVICE_NAME_PREFIX + service.replace("_", "-")


def _otlp_exporter(settings: TracingSettings) -> SpanExporter | None:
    if not settings.endpoint:
        return None  # the off switch: nowhere to send spans
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    if settings.protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    log.error("tracing.unsupported_protocol", protocol=settings.protocol, supported="http/protobuf, grpc")
    return None


def _exporters(settings: TracingSettings) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    for name in settings.exporter_names:
        if name == "otlp":
            try:
                exporter = _otlp_exporter(settings)
            except Exception as error:  # e.g. malformed OTEL_EXPORTER_OTLP_HEADERS: never fatal
                log.error("tracing.exporter_unusable", error=repr(error))
                exporter = None
            if exporter is not None:
                exporters.append(exporter)
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        elif name != "none":
            log.error("tracing.unknown_exporter", exporter=name, supported="otlp, console, none")
    return exporters


def configure_tracing(
    service: str,
    *,
    exporter: SpanExporter | None = None,
    settings: TracingSettings | None = None,
    batch: bool = True,
) -> bool:
    """Sets this process up to trace as `service`; True when tracing is on. `exporter`
    replaces the configured ones (tests); `batch=False` exports each span as it ends."""
    global _state, _atexit_registered
    shutdown_tracing()
    settings = settings or TracingSettings()
    if settings.sdk_disabled:
        return False
    exporters = [exporter] if exporter is not None else _exporters(settings)
    if not exporters:
        return False
    name = settings.service_name or service_name_for(service)
    resource = Resource.create(
        {
            "service.name": name,
            "service.namespace": "vidsynth",
            "service.version": _version(),
            "service.instance.id": str(uuid.uuid4()),
            "process.pid": os.getpid(),
        }
    )
    # The sampler comes from OTEL_TRACES_SAMPLER(_ARG); shutdown is ours, bounded.
    provider = TracerProvider(resource=_HashedOnce(resource), shutdown_on_exit=False)
    for each in exporters:
        provider.add_span_processor(counting_batch_processor(each) if batch else SimpleSpanProcessor(each))
    collect_young_objects_less_often()  # spans are many young objects (libs/common/heap.py)
    names = tuple(f"{type(e).__module__}.{type(e).__name__}" for e in exporters)
    _state = _Tracing(provider, provider.get_tracer(TRACER_NAME), name, names)
    if not _atexit_registered:
        atexit.register(shutdown_tracing)
        _atexit_registered = True
    log.info("tracing.on", service_name=name, exporters=names, sampler=provider.sampler.get_description())
    return True


def exporter_names() -> tuple[str, ...]:
    """The exporters spans go to (empty when tracing is off)."""
    return _state.exporters if _state is not None else ()


def shutdown_tracing(timeout_seconds: float = SHUTDOWN_SECONDS) -> None:
    """Exports what is queued, within `timeout_seconds`: an unreachable collector never
    holds up the process's exit."""
    global _state
    state, _state = _state, None
    if state is None:
        return
    worker = threading.Thread(target=state.provider.shutdown, name="otel-shutdown", daemon=True)
    worker.start()
    worker.join(timeout_seconds)


def enabled() -> bool:
    return _state is not None


def active_tracer() -> trace.Tracer | None:
    """The tracer when tracing is on (the instrumentation's fast check), else None."""
    return _state.tracer if _state is not None else None


# ---- spans ---------------------------------------------------------------------------------


def set_error(target: Span, description: str) -> None:
    target.set_status(Status(StatusCode.ERROR, description))


def empty_context() -> otel_context.Context:
    """A context with no span in it: a span started in it begins a new trace."""
    return otel_context.Context()


def mark_failed(target: Span, error: BaseException) -> None:
    """ERROR status with the catalogued code (or the exception's type): never its
    message or traceback, which may hold user data."""
    code = getattr(error, "code", None)
    if isinstance(code, str):
        target.set_attribute("vidsynth.error.code", code)
    target.set_status(Status(StatusCode.ERROR, code if isinstance(code, str) else type(error).__name__))


@contextlib.contextmanager
def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: otel_context.Context | None = None,
    links: Sequence[Link] = (),
    start_time: int | None = None,
) -> Iterator[Span]:
    """A span around the block, current inside it; a no-op when tracing is off. An
    exception leaving the block marks the span failed (see `mark_failed`). `start_time`
    (ns since the epoch) backdates it to work that began before the block."""
    if _state is None:
        yield INVALID_SPAN
        return
    with _state.tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        links=links,
        start_time=start_time,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as error:
            mark_failed(current, error)
            raise


def record_span(
    name: str, start_ns: int, end_ns: int, attributes: Mapping[str, Any] | None = None, error: str = ""
) -> None:
    """A child of the current span for work timed elsewhere (another process)."""
    if _state is None or not trace.get_current_span().get_span_context().is_valid:
        return
    recorded = _state.tracer.start_span(name, attributes=attributes, start_time=start_ns)
    if error:
        recorded.set_attribute("vidsynth.error.code", error)
        set_error(recorded, error)
    recorded.end(end_time=max(start_ns, end_ns))


def start_child_span(argv0: str | Path) -> Span | None:
    """A span for a child process named after its command (never its arguments), or
    None when tracing is off or no trace is current (a stray child starts no trace)."""
    if _state is None or not trace.get_current_span().get_span_context().is_valid:
        return None
    command = Path(str(argv0)).name
    return _state.tracer.start_span(command, attributes={"process.executable.name": command})


def end_child_span(child_span: Span | None, pid: int | None, returncode: int | None) -> None:
    if child_span is None:
        return
    if pid is not None:
        child_span.set_attribute("process.pid", pid)
    if returncode is not None:
        child_span.set_attribute("process.exit.code", returncode)
    if returncode != 0:
        if pid is None:
            ended = "did not start"
        elif returncode is None:
            ended = "not reaped"
        elif returncode < 0:
            ended = f"killed by signal {-returncode}"
        else:
            ended = f"exit status {returncode}"
        child_span.set_status(Status(StatusCode.ERROR, ended))
    child_span.end()


# ---- context ---------------------------------------------------------------------------------


def current_context() -> otel_context.Context | None:
    """The current context, to carry work to another task (None when tracing is off)."""
    return otel_context.get_current() if _state is not None else None


@contextlib.contextmanager
def attached(ctx: otel_context.Context | None) -> Iterator[None]:
    """Makes `ctx` current inside the block (nothing when None)."""
    if ctx is None:
        yield
        return
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


def current_traceparent() -> str:
    """The W3C `traceparent` of the current span, to store with work that runs later."""
    if _state is None:
        return ""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent", "")


def context_from_traceparent(traceparent: str) -> otel_context.Context | None:
    """The context a stored `traceparent` names; None when it is empty or malformed."""
    if not traceparent:
        return None
    ctx = _W3C.extract({"traceparent": traceparent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def extract_context(carrier: Mapping[str, str]) -> otel_context.Context:
    """The context a carrier's `traceparent` names, else an empty one (a new trace)."""
    return _W3C.extract(carrier, context=otel_context.Context())


def inject_context(carrier: MutableMapping[str, str], ctx: otel_context.Context) -> None:
    _W3C.inject(carrier, context=ctx)


def inject_trace_headers(headers: MutableMapping[str, str]) -> None:
    """Adds `traceparent` (and `tracestate`) of the current span to outgoing headers."""
    if _state is not None:
        _W3C.inject(headers)
