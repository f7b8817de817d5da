"""libs/common/tracing.py in one process: the standard variables, the cost when off,
span hygiene of child processes, log lines joined to spans, and drops counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from libs.common import children, rpc_tracing, tracing
from libs.common.log import SHARED_PROCESSORS, add_trace_ids
from libs.common.tracing import TracingSettings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def memory():
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing("stage_runner", exporter=exporter, batch=False)
    yield exporter
    tracing.shutdown_tracing()


def otel_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {**env, **values}


def in_fresh_process(code: str, **env: str) -> dict:
    """Runs `code` (which prints one JSON line last) in a new interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=otel_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


PROBE = """
import json, sys, threading
from libs.common import tracing
on = tracing.configure_tracing("session")
print(json.dumps({
    "on": on,
    "exporters": tracing.exporter_names(),
    "threads": sorted(t.name for t in threading.enumerate()),
    "sdk_exporter_loaded": any(m.startswith("opentelemetry.exporter") for m in sys.modules),
}))
"""


def test_without_an_endpoint_tracing_is_off_and_loads_no_exporter() -> None:
    found = in_fresh_process(PROBE)
    assert found == {"on": False, "exporters": [], "threads": ["MainThread"], "sdk_exporter_loaded": False}


@pytest.mark.parametrize(
    ("protocol", "exporter"),
    [
        ("", "opentelemetry.exporter.otlp.proto.http.trace_exporter.OTLPSpanExporter"),
        ("http/protobuf", "opentelemetry.exporter.otlp.proto.http.trace_exporter.OTLPSpanExporter"),
        ("grpc", "opentelemetry.exporter.otlp.proto.grpc.trace_exporter.OTLPSpanExporter"),
    ],
)
def test_an_endpoint_turns_it_on_with_the_protocol_asked_for(protocol: str, exporter: str) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    if protocol:
        env["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
    found = in_fresh_process(PROBE, **env)
    assert found["on"] and found["exporters"] == [exporter]
    assert "OtelBatchSpanRecordProcessor" in found["threads"]


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
        {"OTEL_TRACES_EXPORTER": "zipkin"},
    ],
)
def test_switched_off_or_unusable_settings_leave_it_off(env: dict[str, str]) -> None:
    found = in_fresh_process(PROBE, **env)
    assert found["on"] is False and found["threads"] == ["MainThread"]


def test_the_traces_endpoint_and_console_exporter_are_honoured() -> None:
    settings = TracingSettings(
        exporter_otlp_traces_endpoint="http://127.0.0.1:9/v1/traces", traces_exporter="otlp,console"
    )
    try:
        assert tracing.configure_tracing("gateway", settings=settings)
        assert [name.rsplit(".", 1)[-1] for name in tracing.exporter_names()] == [
            "OTLPSpanExporter",
            "ConsoleSpanExporter",
        ]
    finally:
        tracing.shutdown_tracing()


def test_each_service_names_itself_unless_told_otherwise(memory) -> None:
    with tracing.span("work"):
        pass
    assert memory.get_finished_spans()[0].resource.attributes["service.name"] == "vidsynth-stage-runner"
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(
        "gateway", exporter=exporter, batch=False, settings=TracingSettings(service_name="edge-x")
    )
    with tracing.span("work"):
        pass
    assert exporter.get_finished_spans()[0].resource.attributes["service.name"] == "edge-x"


def test_the_sampler_variables_are_honoured(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    exporter = InMemorySpanExporter()
    try:
        tracing.configure_tracing("session", exporter=exporter, batch=False)
        started = rpc_tracing.start_server_span("/vidsynth.v1.SessionService/GetSession", {})
        carrier: dict[str, str] = {}
        try:
            rpc_tracing.inject_current(carrier)
        finally:
            rpc_tracing.end_server_span(started, "OK", 0)
        assert started is not None and not started.span.is_recording()
        # Unsampled, yet the context still travels on (sampled flag clear), so a callee agrees.
        assert int(carrier["traceparent"].rsplit("-", 1)[1], 16) & 1 == 0
        assert exporter.get_finished_spans() == ()
    finally:
        tracing.shutdown_tracing()


def test_a_call_continues_the_callers_trace_and_ignores_a_malformed_one(memory) -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for metadata in ({"traceparent": parent}, {"traceparent": "00-nonsense"}, {"traceparent": "x" * 4000}):
        started = rpc_tracing.start_server_span("/vidsynth.v1.SessionService/GetSession", metadata)
        rpc_tracing.end_server_span(started, "SESSION_NOT_FOUND", 5)
    continued, *fresh = memory.get_finished_spans()
    assert format(continued.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert format(continued.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert all(span.parent is None for span in fresh)
    assert continued.name == "vidsynth.v1.SessionService/GetSession"
    assert dict(continued.attributes) == {
        "rpc.system": "grpc",
        "rpc.service": "vidsynth.v1.SessionService",
        "rpc.method": "GetSession",
        "rpc.grpc.status_code": 5,
        "vidsynth.error.code": "SESSION_NOT_FOUND",
    }
    # NOT_FOUND is the caller's business, not a fault of the service.
    assert continued.status.is_unset


def test_log_lines_inside_a_span_carry_its_ids(memory) -> None:
    assert add_trace_ids in SHARED_PROCESSORS
    assert "trace_id" not in add_trace_ids(None, "info", {})
    with tracing.span("work") as current:
        line = add_trace_ids(None, "info", {"event": "x"})
    context = current.get_span_context()
    assert line == {
        "event": "x",
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
    }


async def test_a_child_process_is_a_span_with_its_command_and_exit_status_never_its_arguments(memory) -> None:
    secret = "my-secret-script-words"
    with tracing.span("stage voice"):
        done = await children.run(["sh", "-c", "exit 3", secret], time_limit=10)
        with pytest.raises(children.ChildTimeout):
            await children.run(["sh", "-c", "sleep 30", secret], time_limit=0.2)
        with pytest.raises(children.ChildNotStartable):
            await children.run(["/nonexistent/tool", secret], time_limit=1)
    await children.run(["true"], time_limit=10)  # outside any trace: no span, no new trace
    assert done.returncode == 3
    spans = {span.name: span for span in memory.get_finished_spans()}
    assert sorted(span.name for span in memory.get_finished_spans()) == ["sh", "sh", "stage voice", "tool"]
    stage = spans["stage voice"]
    sh, sleep = sorted((s for s in memory.get_finished_spans() if s.name == "sh"), key=lambda s: s.start_time)
    tool = spans["tool"]
    assert {sh.parent.span_id, sleep.parent.span_id, tool.parent.span_id} == {stage.context.span_id}
    assert dict(sh.attributes) == {
        "process.executable.name": "sh",
        "process.pid": done_pid(sh),
        "process.exit.code": 3,
    }
    assert sh.status.description == "exit status 3"
    assert sleep.attributes["process.exit.code"] < 0 and sleep.status.description.startswith(
        "killed by signal"
    )
    assert tool.status.description == "did not start" and "process.pid" not in tool.attributes
    exported = json.dumps([json.loads(span.to_json()) for span in memory.get_finished_spans()])
    assert secret not in exported and "exit 3" not in exported


def done_pid(span) -> int:
    pid = span.attributes["process.pid"]
    assert isinstance(pid, int) and pid > 0
    return pid


class _Blocking(SpanExporter):
    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans):
        self.release.wait(10)
        return SpanExportResult.FAILURE


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("vidsynth_trace_spans_dropped_total", {"reason": reason}) or 0.0


def test_a_stuck_collector_costs_spans_not_requests_and_every_drop_is_counted(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    stuck = _Blocking()
    full_before, failed_before = dropped("queue_full"), dropped("export_failed")
    tracing.configure_tracing("gateway", exporter=stuck)
    try:
        for _ in range(100):  # the worker is stuck in its first export: the queue fills
            with tracing.span("request"):
                pass
        assert dropped("queue_full") - full_before >= 100 - 8 - 4
        stuck.release.set()
    finally:
        tracing.shutdown_tracing()
    assert dropped("export_failed") - failed_before >= 4  # the batches the exporter gave up on


def test_every_variable_read_here_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in TracingSettings.model_fields:
        assert f"`OTEL_{name.upper()}`" in readme, name


def test_a_failed_call_is_an_event_on_the_callers_span(memory) -> None:
    from grpc import StatusCode
    from grpc.aio import AioRpcError, Metadata

    from libs.common.errors import VidsynthError
    from libs.common.rpc_status import error_from_rpc_error, to_grpc_status

    # As a server's abort leaves it: the catalog's status, message and details trailer.
    status = to_grpc_status(VidsynthError("SESSION_NOT_FOUND"))
    refused = AioRpcError(status.code, Metadata(), Metadata(*status.trailing_metadata), status.details)
    unreachable = AioRpcError(StatusCode.UNAVAILABLE, Metadata(), Metadata(), "connection refused")
    with tracing.span("request"):
        codes = [error_from_rpc_error(refused).code, error_from_rpc_error(unreachable).code]
    error_from_rpc_error(unreachable)  # outside a span: nothing to add it to, and no error
    (span,) = memory.get_finished_spans()
    assert [(e.name, dict(e.attributes)) for e in span.events] == [
        ("rpc failed", {"rpc.grpc.status_code": 5, "vidsynth.error.code": codes[0]}),
        ("rpc failed", {"rpc.grpc.status_code": 14, "vidsynth.error.code": codes[1]}),
    ]
    assert codes == ["SESSION_NOT_FOUND", "SERVICE_UNAVAILABLE"]
