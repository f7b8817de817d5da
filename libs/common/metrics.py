"""Shared Prometheus metric definitions and the per-process metrics endpoint.

Registry model: every process (each gRPC service and the gateway) records into
prometheus-client's default registry. The gateway serves its own at GET /metrics;
each gRPC service serves its own on one of five consecutive ports from `VIDSYNTH_METRICS_PORT`
(default: its gRPC port + 100, so G+101..G+105) when `serve_metrics()` is called at start, and the gateway's /metrics also folds those
pages in (labelled `origin`), so one scrape target covers a one-machine mesh.

The gRPC request counters live in libs/common/interceptors.py.
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app, start_http_server
from prometheus_client.exposition import ThreadingWSGIServer
from pydantic import Field

from libs.common import mesh_tls
from libs.common.settings import SERVICE_PORT_OFFSETS, MeshSettings, VidsynthSettings

log = structlog.get_logger("vidsynth.metrics")

HTTP_REQUESTS = Counter(
    "vidsynth_http_requests_total", "HTTP requests handled by the gateway", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "vidsynth_http_request_seconds",
    "HTTP request latency at the gateway",
    ["method", "route"],
    buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
)
ACTIVE_SESSIONS = Gauge("vidsynth_active_sessions", "Sessions neither expired nor deleted")
JOBS = Gauge("vidsynth_jobs", "Jobs queued or running on this stage runner, by state", ["state"])
JOBS_FINISHED = Counter("vidsynth_jobs_finished_total", "Jobs that ended, by final state", ["state"])
QUEUE_LENGTH = Gauge("vidsynth_queue_length", "Jobs waiting in the stage runner's queue")
STAGE_SECONDS = Histogram(
    "vidsynth_stage_seconds",
    "Duration of a pipeline stage, by backend",
    ["stage", "backend"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
UPLOAD_REJECTIONS = Counter("vidsynth_upload_rejections_total", "Uploads refused, by error code", ["code"])
STREAM_SUBSCRIBERS = Gauge(
    "vidsynth_stream_subscribers", "Open progress subscriptions, by transport", ["transport"]
)
CLEANUP_BYTES_FREED = Counter(
    "vidsynth_cleanup_bytes_freed_total", "Bytes freed by cleanup, by task", ["task"]
)
CLEANUP_ITEMS_REMOVED = Counter(
    "vidsynth_cleanup_items_removed_total", "Files and directories removed by cleanup, by task", ["task"]
)
RESOURCE_LEVEL = Gauge("vidsynth_resource_level", "Resource level: 1 ok, 2 warning, 3 critical", ["resource"])
RESOURCE_USED_PERCENT = Gauge("vidsynth_resource_used_percent", "Resource use in percent", ["resource"])


METRICS_PORT_SHIFT = 100
HANDSHAKE_TIMEOUT_SECONDS = 10.0


class MetricsSettings(VidsynthSettings):
    metrics_port: int = Field(
        -1,
        ge=-1,
        description=(
            "First of five consecutive ports where the gRPC services serve /metrics "
            "(session, validator, stage_runner, progress, cleanup); -1: each service's gRPC port + 100 "
            "(grpc_port+101..grpc_port+105); 0: off."
        ),
    )

    def port_of(self, service: str, mesh: MeshSettings) -> int:
        if self.metrics_port == 0:
            return 0
        offset = SERVICE_PORT_OFFSETS[service]
        if self.metrics_port < 0:
            return mesh.grpc_port + offset + METRICS_PORT_SHIFT
        return self.metrics_port + offset - min(SERVICE_PORT_OFFSETS.values())

    def url_of(self, service: str, mesh: MeshSettings, tls: bool = False) -> str:
        """Where the gateway reads a service's page: the host of its gRPC address (over
        HTTPS with mesh TLS)."""
        port = self.port_of(service, mesh)
        if not port:
            return ""
        host = mesh.service_address(service).rpartition(":")[0] or mesh.grpc_host
        return f"{'https' if tls else 'http'}://{host}:{port}/metrics"


def serve_metrics(
    service: str, mesh: MeshSettings, settings: MetricsSettings | None = None
) -> WSGIServer | None:
    """Serves this process's registry over HTTP when configured; returns the server
    (None when off). A busy port is logged, not fatal: metrics must never keep a
    service from starting."""
    settings = settings or MetricsSettings()
    port = settings.port_of(service, mesh)
    if not port:
        return None
    tls = mesh_tls.current()
    try:
        # Bound where the service's gRPC port is bound, so it is reachable the same way.
        if tls:
            server = _start_tls_server(port, mesh.grpc_host, tls.server_context())
        else:
            server, _thread = start_http_server(port, addr=mesh.grpc_host)
    except OSError as error:
        log.warning("metrics.not_served", port=port, error=str(error))
        return None
    log.info("metrics.serving", port=port, mesh_tls=bool(tls))
    return server


class _TlsMetricsServer(ThreadingWSGIServer):
    """prometheus-client's own TLS wraps the listening socket, so each handshake runs in
    the accept loop, where one silent client stalls every scrape. Here the handshake runs
    in the connection's own thread, bounded by a timeout, and a refused one is no error."""

    context: ssl.SSLContext

    def get_request(self) -> tuple[socket.socket, object]:
        connection, address = self.socket.accept()
        connection.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
        return self.context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("metrics.connection_refused", error=str(sys.exception()))


def _start_tls_server(port: int, host: str, context: ssl.SSLContext) -> WSGIServer:
    class Server(_TlsMetricsServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    Server.context = context
    server = make_server(host, port, make_wsgi_app(), Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


class _QuietHandler(WSGIRequestHandler):
    timeout = HANDSHAKE_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: object) -> None:
        return
