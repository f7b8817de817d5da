"""Where finished spans go: a batch processor whose queue is bounded and whose drops are
counted in Prometheus, in front of the configured exporter.

A collector that is slow or unreachable never holds up a request: spans wait in the
batch processor's queue (OTEL_BSP_MAX_QUEUE_SIZE, 2048 by default) for its worker
thread, and once the queue is full the oldest are dropped and counted
(`vidsynth_trace_spans_dropped_total{reason="queue_full"}`), as are batches the
exporter gave up on (`reason="export_failed"`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import structlog
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import Counter, Gauge

log = structlog.get_logger("vidsynth.tracing")

SPANS_EXPORTED = Counter("vidsynth_trace_spans_exported_total", "Spans the trace collector accepted")
SPANS_DROPPED = Counter(
    "vidsynth_trace_spans_dropped_total",
    "Spans dropped instead of exported (queue_full, export_failed, already_shutdown)",
    ["reason"],
)
SPANS_QUEUED = Gauge("vidsynth_trace_spans_queued", "Finished spans waiting to be exported")


class CountingExporter(SpanExporter):
    """Counts what the wrapped exporter delivered and what it gave up on."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:
            SPANS_DROPPED.labels("export_failed").inc(len(spans))
            raise
        if result is SpanExportResult.SUCCESS:
            SPANS_EXPORTED.inc(len(spans))
        else:
            SPANS_DROPPED.labels("export_failed").inc(len(spans))
        return result

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        if "timeout_millis" in inspect.signature(self.inner.shutdown).parameters:
            self.inner.shutdown(timeout_millis=timeout_millis)  # type: ignore[call-arg]
        else:
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _QueueMetrics:
    """The batch processor's own accounting (its ProcessorMetrics protocol) into Prometheus."""

    def register_queue_size(self, get_queue_size: Callable[[], int]) -> None:
        SPANS_QUEUED.set_function(get_queue_size)

    def drop_items(self, count: int, error_type: str = "queue_full") -> None:
        SPANS_DROPPED.labels(error_type).inc(count)

    def finish_items(self, count: int) -> None:
        pass


def counting_batch_processor(exporter: SpanExporter) -> BatchSpanProcessor:
    """A BatchSpanProcessor (OTEL_BSP_* honoured) whose queue drops are counted."""
    processor = BatchSpanProcessor(CountingExporter(exporter))
    # The SDK counts its drops only into an OpenTelemetry MeterProvider; this process
    # reports to Prometheus, so its accounting object is swapped for ours (pinned SDK;
    # tests/tracing checks that a full queue is counted).
    batch = getattr(processor, "_batch_processor", None)
    if batch is not None and hasattr(batch, "_metrics") and hasattr(batch, "_queue"):
        metrics = _QueueMetrics()
        metrics.register_queue_size(lambda: len(batch._queue))
        batch._metrics = metrics
    else:
        log.warning("tracing.drops_not_counted", reason="batch processor internals changed")
    return processor
