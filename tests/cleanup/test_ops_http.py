"""Gateway operations endpoints: GET /v1/health and GET /metrics."""

from __future__ import annotations

import functools
import importlib

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from libs.common.metrics import ACTIVE_SESSIONS, QUEUE_LENGTH, MetricsSettings, serve_metrics
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from tests.cleanup.conftest import cleanup_settings
from tests.support.identities import bearer
from tests.support.ports import free_port_block

ALL_SERVICES = ["session", "validator", "stage_runner", "progress"]


@pytest.fixture
async def open_gateway(in_process_mesh):
    apps = []

    def open_client() -> httpx.AsyncClient:
        # Built after the services start, so it knows their addresses.
        settings = GatewaySettings(gateway_rate_limit_per_second=10_000, gateway_rate_limit_burst=10_000)
        app = create_app(in_process_mesh.settings, settings)
        apps.append(app)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")

    yield open_client
    for app in apps:
        await app.state.gateway.close()


async def start_services(in_process_mesh, names):
    for name in names:
        module = importlib.import_module(f"services.{name}.server")
        await in_process_mesh.start(name, module.build)


def samples(page: str, name: str) -> list:
    return [s for family in text_string_to_metric_families(page) for s in family.samples if s.name == name]


def sample_value(page: str, name: str, **labels) -> float:
    return sum(s.value for s in samples(page, name) if all(s.labels.get(k) == v for k, v in labels.items()))


async def test_health_is_503_while_services_are_missing(start_cleanup, open_gateway):
    await start_cleanup(cleanup_settings())
    async with open_gateway() as client:
        response = await client.get("/v1/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["services"]["cleanup"] == "serving"
    assert body["services"]["session"] == "unreachable"
    assert body["resources"]["level"] == "ok"
    assert body["resources"]["memory"]["total_bytes"] > 0 and body["resources"]["disk"]["total_bytes"] > 0
    assert body["resources"]["processes"] >= 1
    assert body["capabilities"] is None
    assert body["active_sessions"] is None and body["queue_length"] is None


async def test_health_is_200_when_all_serve_and_503_at_critical(in_process_mesh, start_cleanup, open_gateway):
    await start_services(in_process_mesh, ALL_SERVICES)
    await start_cleanup(cleanup_settings(memory="warning"))
    async with open_gateway() as client:
        response = await client.get("/v1/health")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["services"].values()) == {"serving"}
    assert body["resources"]["level"] == "warning"
    assert body["resources"]["actions"]
    assert body["capabilities"]["mode"] in ("auto", "production", "simulation")

    await in_process_mesh.running.pop("cleanup").server.stop(0)
    await start_cleanup(cleanup_settings(disk="critical"))
    async with open_gateway() as client:
        response = await client.get("/v1/health")
    assert response.status_code == 503
    assert response.json()["resources"]["level"] == "critical"
    assert response.json()["resources"]["immediate_actions_needed"] is True


async def test_metrics_page_parses_and_counters_move(start_cleanup, open_gateway):
    await start_cleanup(cleanup_settings())
    async with open_gateway() as client:
        first = (await client.get("/metrics")).text
        for _ in range(3):
            await client.get("/v1/health")
        await client.get("/v1/sessions", headers=bearer("alice"))
        second = await client.get("/metrics")
    assert second.status_code == 200
    assert second.headers["content-type"].startswith("text/plain")
    page = second.text
    families = {f.name for f in text_string_to_metric_families(page)}
    assert {"vidsynth_http_requests", "vidsynth_grpc_requests", "vidsynth_cleanup_bytes_freed"} <= families
    health_requests = functools.partial(
        sample_value, name="vidsynth_http_requests_total", method="GET", route="/v1/health", origin="gateway"
    )
    assert health_requests(second.text) - health_requests(first) == 3
    # Route templates, not raw paths, label the series.
    assert all("ses_" not in s.labels["route"] for s in samples(page, "vidsynth_http_requests_total"))
    grpc_calls = functools.partial(
        sample_value,
        name="vidsynth_grpc_requests_total",
        service="CleanupService",
        method="GetResourceHealth",
    )
    assert grpc_calls(page) - grpc_calls(first) == 3
    assert samples(page, "vidsynth_http_request_seconds_count")


async def test_metrics_fold_in_service_pages(start_cleanup, open_gateway, mesh_settings):
    await start_cleanup(cleanup_settings())
    metrics = MetricsSettings(metrics_port=free_port_block())
    servers = [serve_metrics(name, mesh_settings, metrics) for name in ("session", "stage_runner", "cleanup")]
    assert all(servers)
    ACTIVE_SESSIONS.set(7)
    # The stage runner reads its queue length at scrape time (set_function), so do the same.
    QUEUE_LENGTH.set_function(lambda: 2)
    try:
        async with open_gateway() as client:
            client._transport.app.state.gateway.metrics_settings = metrics
            page = (await client.get("/metrics")).text
            health = (await client.get("/v1/health")).json()
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        ACTIVE_SESSIONS.set(0)
        QUEUE_LENGTH.set_function(lambda: 0)
    origins = {s.labels["origin"] for s in samples(page, "vidsynth_active_sessions")}
    assert origins == {"gateway", "session", "stage_runner", "cleanup"}
    assert health["active_sessions"] == 7 and health["queue_length"] == 2
