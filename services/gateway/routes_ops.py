"""Operations endpoints: GET /v1/health (the whole mesh at a glance, 200 or 503) and
GET /metrics (Prometheus), plus the middleware counting HTTP requests.

Both are unauthenticated, like /healthz, so probes and scrapers need no key; they
show figures, never sessions, users or paths.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import grpc
import httpx
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common import mesh_tls
from libs.common.enums import enum_label
from libs.common.identity import USER_ID_KEY
from libs.common.metrics import HTTP_LATENCY, HTTP_REQUESTS, MetricsSettings
from libs.common.settings import SERVICE_PORT_OFFSETS, MeshSettings
from services.gateway import api_models as m
from services.gateway.api_enums import HealthLevel, ProcessingMode, ServingStatus
from services.gateway.json_body import ContractRoute
from services.gateway.routes_health import mesh_health
from services.gateway.state import gateway_state
from vidsynth.v1 import cleanup_pb2, common_pb2, stage_runner_pb2, validator_pb2

log = structlog.get_logger("vidsynth.gateway.ops")
router = APIRouter(tags=["operations"], route_class=ContractRoute)

PROBE_TIMEOUT_SECONDS = 2.0
ORIGIN_LABEL = "origin"
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The gateway asks on its own behalf, not a user's.
SYSTEM_METADATA = ((USER_ID_KEY, "system"),)
# The services whose /metrics pages hold the gauges /v1/health shows.
GAUGE_PAGES = ("session", "stage_runner")
LEVEL_NAMES = {
    cleanup_pb2.HEALTH_LEVEL_OK: HealthLevel.OK,
    cleanup_pb2.HEALTH_LEVEL_WARNING: HealthLevel.WARNING,
    cleanup_pb2.HEALTH_LEVEL_CRITICAL: HealthLevel.CRITICAL,
}


class HttpMetricsMiddleware:
    """Counts requests and latency by method, route template and status (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            HTTP_REQUESTS.labels(scope["method"], template, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], template).observe(time.perf_counter() - started)


def _usage(usage: cleanup_pb2.ResourceUsage) -> m.UsageSummary:
    return m.UsageSummary(
        level=LEVEL_NAMES.get(usage.level, HealthLevel.UNKNOWN),
        used_percent=round(usage.used_percent, 2),
        used_bytes=usage.used_bytes,
        total_bytes=usage.total_bytes,
    )


async def _probe(method, message, failure_event: str):
    """One health probe call on the gateway's own behalf; None (logged) when it fails."""
    try:
        return await method(message, timeout=PROBE_TIMEOUT_SECONDS, metadata=SYSTEM_METADATA)
    except grpc.RpcError as error:
        log.warning(failure_event, code=str(error.code()))
        return None


async def resource_summary(request: Request) -> m.ResourceSummary | None:
    health = await _probe(
        gateway_state(request.app).clients.cleanup.GetResourceHealth,
        cleanup_pb2.GetResourceHealthRequest(),
        "health.resources_unavailable",
    )
    if health is None:
        return None
    return m.ResourceSummary(
        level=LEVEL_NAMES.get(health.level, HealthLevel.UNKNOWN),
        immediate_actions_needed=health.immediate_actions_needed,
        memory=_usage(health.memory),
        disk=_usage(health.disk),
        cpu_percent=round(health.cpu_percent, 1),
        open_files=health.open_files,
        processes=len(health.processes),
        actions=list(health.actions),
    )


async def capabilities_summary(request: Request) -> m.CapabilitySummary | None:
    caps = await _probe(
        gateway_state(request.app).clients.stage_runner.GetCapabilities,
        stage_runner_pb2.GetCapabilitiesRequest(),
        "health.capabilities_unavailable",
    )
    if caps is None:
        return None
    return m.CapabilitySummary(
        mode=ProcessingMode(enum_label(common_pb2.ProcessingMode, caps.mode)),
        production_ready=caps.production_ready,
        gpu_available=caps.gpu_available,
        stages={enum_label(common_pb2.Stage, s.stage): s.selected_backend for s in caps.stages},
        missing=list(caps.missing),
    )


async def scanner_summary(request: Request) -> m.ScannerSummary | None:
    """Whether clamd answers, and with which signatures ("official" or "test-signatures")."""
    policy = await _probe(
        gateway_state(request.app).clients.validator.GetUploadPolicy,
        validator_pb2.GetUploadPolicyRequest(),
        "health.validator_unavailable",
    )
    if policy is None:
        return None
    return m.ScannerSummary(available=policy.scanner_available, signature_db=policy.signature_db or None)


async def service_pages(
    metrics: MetricsSettings, mesh: MeshSettings, names: Sequence[str] = tuple(SERVICE_PORT_OFFSETS)
) -> dict[str, str]:
    """Each named gRPC service's own /metrics page (when they serve one), by service name."""
    if not metrics.metrics_port:
        return {}
    tls = mesh_tls.current()
    verify = tls.client_context() if tls else True
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_SECONDS, verify=verify) as client:

        async def fetch(name: str) -> str:
            # With mesh TLS the service proves its identity, whatever address it is at.
            extensions = {"sni_hostname": tls.server_name(name)} if tls else None
            try:
                response = await client.get(metrics.url_of(name, mesh, bool(tls)), extensions=extensions)
            except httpx.HTTPError:
                return ""
            return response.text if response.status_code == 200 else ""

        pages = await asyncio.gather(*(fetch(name) for name in names))
    return {name: page for name, page in zip(names, pages, strict=True) if page}


def gauge_value(page: str, metric: str) -> float | None:
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == metric:
                return sample.value
    return None


class _FoldedCollector(Collector):
    """The gateway's registry and every service's page as one exposition, each sample
    labelled `origin` with the process it came from (`service` is taken: the gRPC
    counters use it for the RPC's service)."""

    def __init__(self, pages: dict[str, str]) -> None:
        self._pages = pages

    def collect(self):
        merged: dict[tuple[str, str], Metric] = {}

        def fold(origin: str, families) -> None:
            for family in families:
                # `_created` series are optional and would repeat across sources; drop them.
                samples = [s for s in family.samples if not s.name.endswith("_created")]
                if not samples:
                    continue
                key = (family.name, family.type)
                target = merged.setdefault(key, Metric(family.name, family.documentation, family.type))
                for sample in samples:
                    labels = {**sample.labels, ORIGIN_LABEL: origin}
                    target.add_sample(sample.name, labels, sample.value, sample.timestamp)

        fold("gateway", REGISTRY.collect())
        for origin, page in self._pages.items():
            fold(origin, text_string_to_metric_families(page))
        return iter(merged.values())


async def pages_of(request: Request, names: Sequence[str] = tuple(SERVICE_PORT_OFFSETS)) -> dict[str, str]:
    state = gateway_state(request.app)
    return await service_pages(state.metrics_settings, state.settings, names)


@router.get(
    "/v1/health",
    summary="Health of every service, resources, capabilities and load (503 with the same body when degraded)",
    response_model=m.MeshHealth,
    responses={
        503: {"model": m.MeshHealth, "description": "Degraded: a service is down or a resource critical."}
    },
)
async def health(request: Request) -> JSONResponse:
    services, resources, capabilities, scanner, pages = await asyncio.gather(
        mesh_health(request),
        resource_summary(request),
        capabilities_summary(request),
        scanner_summary(request),
        pages_of(request, GAUGE_PAGES),  # only the pages whose gauges are shown
    )
    session_page, runner_page = pages.get("session", ""), pages.get("stage_runner", "")
    active_sessions = gauge_value(session_page, "vidsynth_active_sessions") if session_page else None
    queue_length = gauge_value(runner_page, "vidsynth_queue_length") if runner_page else None
    all_serving = all(state is ServingStatus.SERVING for state in services.values())
    resources_ok = resources is not None and resources.level is not HealthLevel.CRITICAL
    healthy = all_serving and resources_ok
    body = m.MeshHealth(
        status="ok" if healthy else "degraded",
        services=services,
        resources=resources,
        capabilities=capabilities,
        scanner=scanner,
        active_sessions=int(active_sessions) if active_sessions is not None else None,
        queue_length=int(queue_length) if queue_length is not None else None,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if healthy else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics of the gateway and every service",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text exposition format, version 0.0.4.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    pages = await pages_of(request)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FoldedCollector(pages))
    # Parsing every service's page and rendering the fold is CPU work: off the event loop.
    exposition = await asyncio.to_thread(generate_latest, registry)
    return Response(exposition, media_type=PROMETHEUS_CONTENT_TYPE)
