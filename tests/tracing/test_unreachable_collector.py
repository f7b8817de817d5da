"""A collector that never answers, or is not there, costs spans and never requests: the
gateway and the session service (real processes) answer as fast as with tracing off,
count what they drop, and still stop promptly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from libs.common.healthcheck import is_serving
from libs.common.settings import SERVICE_PORT_OFFSETS
from tests.support.identities import bearer, mesh_env
from tests.support.ports import free_port, free_port_block

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ITERATIONS = 120


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A port that takes connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


@contextlib.contextmanager
def gateway_and_session(
    data_dir: Path, extra: dict[str, str]
) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    grpc_port, http_port = free_port_block(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        **mesh_env(),
        **extra,
        "VIDSYNTH_DATA_DIR": str(data_dir),
        "VIDSYNTH_GRPC_PORT": str(grpc_port),
        "VIDSYNTH_HTTP_PORT": str(http_port),
        "VIDSYNTH_CLEANUP_ADDR": f"127.0.0.1:{free_port()}",  # none here: the gate fails open
        "VIDSYNTH_SESSION_MAX_PER_USER": "100000",
        "VIDSYNTH_SESSION_MAX_GLOBAL": "100000",
        "VIDSYNTH_GATEWAY_RATE_LIMIT_PER_SECOND": "100000",
        "VIDSYNTH_GATEWAY_RATE_LIMIT_BURST": "100000",
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in ("session", "gateway")
    ]
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        session = f"127.0.0.1:{grpc_port + SERVICE_PORT_OFFSETS['session']}"
        while not (is_serving(session, timeout=1.0) and healthy(url)):
            assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
            time.sleep(0.1)
        yield url, processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(10)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def one_iteration(client: httpx.Client) -> float:
    started = time.perf_counter()
    created = client.post("/v1/sessions", headers=bearer("alice"), json={})
    assert created.status_code == 201, created.text
    read = client.get(f"/v1/sessions/{created.json()['session_id']}", headers=bearer("alice"))
    assert read.status_code == 200, read.text
    return time.perf_counter() - started


def dropped(url: str) -> dict[str, float]:
    page = httpx.get(url + "/metrics", timeout=10).text
    return {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == "vidsynth_trace_spans_dropped_total" and s.labels.get("origin", "gateway") == "gateway"
    }


def stop_seconds(processes: list[subprocess.Popen]) -> float:
    started = time.monotonic()
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(30)
    return time.monotonic() - started


def test_a_collector_that_never_answers_slows_and_fails_no_request(tmp_path) -> None:
    with blackhole() as port:
        traced_env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_BSP_MAX_QUEUE_SIZE": "64",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "16",
        }
        with (
            gateway_and_session(tmp_path / "off", {}) as (off_url, _),
            gateway_and_session(tmp_path / "traced", traced_env) as (traced_url, traced),
            httpx.Client(base_url=off_url, timeout=30) as off,
            httpx.Client(base_url=traced_url, timeout=30) as hung,
        ):
            latencies: dict[str, list[float]] = {"off": [], "traced": []}
            for _ in range(ITERATIONS):  # interleaved: load from elsewhere falls on both
                latencies["off"].append(one_iteration(off))
                latencies["traced"].append(one_iteration(hung))
            drops = dropped(traced_url)
            stopped_in = stop_seconds(traced)
    median_off, median_traced = (statistics.median(v) for v in latencies.values())
    assert median_traced <= 1.5 * median_off + 0.005, latencies
    # The exporter is stuck on its first batch: the queue filled and the rest was dropped.
    assert drops.get("queue_full", 0) >= 2 * ITERATIONS - 64 - 16, drops
    # Its shutdown export is bounded too: stopping takes seconds, not the exporter's timeout.
    assert stopped_in < 9, stopped_in


def test_a_collector_that_is_not_there_costs_failed_exports_only(tmp_path) -> None:
    nobody = free_port()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{nobody}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    with (
        gateway_and_session(tmp_path / "refused", env) as (url, _),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        for _ in range(20):
            one_iteration(client)
        deadline = time.monotonic() + 30
        while dropped(url).get("export_failed", 0) < 20:  # the gateway's 40 spans, in retried batches
            assert time.monotonic() < deadline, dropped(url)
            time.sleep(0.5)
        one_iteration(client)  # and it still answers
