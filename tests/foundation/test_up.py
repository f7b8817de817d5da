"""`vidsynth up`: every process SERVING, restarts after a crash, nothing left behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from libs.common.settings import SERVICE_PORT_OFFSETS
from tests.support.mesh_process import MeshProcess, wait_gone

pytestmark = pytest.mark.slow

EXPECTED_SERVICES = {
    "session": "vidsynth.v1.SessionService",
    "validator": "vidsynth.v1.ValidatorService",
    "stage_runner": "vidsynth.v1.StageRunnerService",
    "progress": "vidsynth.v1.ProgressService",
    "cleanup": "vidsynth.v1.CleanupService",
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    mesh = MeshProcess(tmp_path_factory.mktemp("up") / "var")
    mesh.startup_seconds = mesh.wait_up()
    yield mesh
    mesh.stop()


def test_all_processes_serve_and_readyz_answers(mesh) -> None:
    print(f"vidsynth up: all processes SERVING after {mesh.startup_seconds:.2f}s")
    assert set(mesh.pids()) == {*EXPECTED_SERVICES, "gateway", "clamd", "edge"}
    assert "[up] clamd:" in mesh.output()
    assert f"[up] edge: nginx on http://127.0.0.1:{mesh.http_port}" in mesh.output()
    response = httpx.get(f"{mesh.url}/readyz", timeout=5)
    assert response.status_code == 200
    assert set(response.json()["services"].values()) == {"serving"}
    assert httpx.get(f"{mesh.url}/healthz", timeout=5).json() == {"status": "ok"}
    assert httpx.get(f"{mesh.url}/openapi.json", timeout=5).json()["info"]["title"] == "vidsynth"


@pytest.mark.parametrize("service", list(EXPECTED_SERVICES))
def test_each_service_answers_health_and_reflection_behind_the_edge(mesh, service) -> None:
    address = f"127.0.0.1:{mesh.grpc_port + SERVICE_PORT_OFFSETS[service]}"
    with grpc.insecure_channel(address) as channel:
        full_name = EXPECTED_SERVICES[service]
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=full_name), timeout=5
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        responses = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for s in next(iter(responses)).list_services_response.service}
    assert full_name in names
    assert "grpc.health.v1.Health" in names


def test_a_killed_service_is_restarted(mesh) -> None:
    old_pid = mesh.pids()["progress"]
    mark = len(mesh.lines)
    os.kill(old_pid, signal.SIGKILL)
    mesh.wait_for_line("progress exited with -9; restarting", timeout=30, start=mark)
    mesh.wait_ready(timeout=60)
    assert wait_gone([old_pid], timeout=5) == []


def test_ctrl_c_leaves_no_process_behind(tmp_path) -> None:
    mesh = MeshProcess(tmp_path / "var")
    try:
        mesh.wait_up()
        children = list(mesh.pids().values())
    finally:
        code = mesh.stop(signal.SIGINT)
    assert code == 0
    assert wait_gone(children, timeout=10) == []
    assert "[up] stopped" in mesh.output()


def test_children_exit_when_up_itself_is_killed(tmp_path) -> None:
    mesh = MeshProcess(tmp_path / "var")
    try:
        mesh.wait_up()
        children = list(mesh.pids().values())
    finally:
        mesh.stop(signal.SIGKILL)
    alive = wait_gone(children, timeout=30)
    assert alive == [], [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in alive]
