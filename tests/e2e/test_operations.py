"""What an operator sees of a running mesh: aggregate health and one metrics page."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.identities import bearer
from tests.support.mesh_process import MeshProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    mesh = MeshProcess(
        tmp_path_factory.mktemp("ops") / "var", extra_env={"VIDSYNTH_PROCESSING_MODE": "simulation"}
    )
    mesh.wait_up()
    yield mesh
    mesh.stop()


def samples(page: str, name: str) -> list:
    return [s for family in text_string_to_metric_families(page) for s in family.samples if s.name == name]


def test_health_reports_every_service_resources_capabilities_and_the_scanner(mesh) -> None:
    with httpx.Client(base_url=mesh.url, headers=bearer("alice"), timeout=10) as client:
        client.post("/v1/sessions", json={})
        deadline = time.monotonic() + 15  # the session count is refreshed every 2 s
        while (body := client.get("/v1/health").json())[
            "active_sessions"
        ] < 1 and time.monotonic() < deadline:
            time.sleep(0.5)
    assert set(body["services"].values()) == {"serving"}
    assert body["resources"]["level"] in {"ok", "warning", "critical"}
    assert body["capabilities"]["mode"] == "simulation"
    assert body["scanner"] == {"available": True, "signature_db": "test-signatures"}
    assert body["active_sessions"] >= 1
    assert body["queue_length"] == 0


def test_metrics_move_with_requests_rejections_and_streams(mesh) -> None:
    with httpx.Client(base_url=mesh.url, headers=bearer("alice"), timeout=10) as client:
        session_id = client.post("/v1/sessions", json={}).json()["session_id"]
        refused = client.post(
            f"/v1/sessions/{session_id}/assets/face", files={"file": ("face.jpg", b"not an image at all")}
        )
        assert refused.status_code in (415, 422)
        code = refused.json()["code"]
        with client.stream("GET", f"/v1/sessions/{session_id}/events") as stream:
            lines = stream.iter_lines()  # kept referenced: dropping it would close the stream
            assert next(lines) == ": connected"  # the subscription is open now
            page = client.get("/metrics").text
    rejections = samples(page, "vidsynth_upload_rejections_total")
    assert any(s.labels["code"] == code and s.value >= 1 for s in rejections), rejections
    subscribers = samples(page, "vidsynth_stream_subscribers")
    assert any(s.labels["transport"] == "sse" and s.value >= 1 for s in subscribers), subscribers
    requests = samples(page, "vidsynth_grpc_requests_total")
    assert any(s.labels["method"] == "CreateSession" and s.labels["origin"] == "session" for s in requests)
