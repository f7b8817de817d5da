"""What `vidsynth up --tls` costs: sessions through the edge, plaintext vs TLS, in one run.

Two meshes side by side, each a real SessionService and gateway (separate processes, as
`vidsynth up` runs them) behind its own nginx edge:

- plain: the edge and everything behind it in plaintext (`vidsynth up`);
- tls: HTTPS and gRPC over TLS at the edge, and mutual TLS behind it, from the edge to the
  gateway and the session service and from the gateway to the session service, with
  certificates from a development CA (`vidsynth up --tls`).

The workload is bench/sessions.py's (every client creates a session and reads it back),
over HTTP (edge -> gateway -> session) and gRPC (edge -> session) through each edge, the
targets alternating in short rounds so load from elsewhere falls on all alike. It prints
requests/s, p50/p99, CPU µs per request of each process, and TLS / plaintext ratios; then
latency at a fixed offered rate (0.5x the plaintext HTTP capacity) for both HTTP targets.
There is no target: the cost is measured and reported, not asserted.

    .venv/bin/python -m bench.sessions --tls [--clients 32] [--seconds 4] [--rounds 8]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.edge_process import CpuMeter, bench_env, running_edge
from bench.sessions import RATIO_TARGET, Run, compare, compare_at_rate, gateway_target, grpc_target
from libs.common.heap import freeze_startup_heap
from libs.common.mesh_tls import MeshTls, MeshTlsSettings, load
from libs.common.settings import GATEWAY_HTTP_PORT_OFFSET, SERVICE_PORT_OFFSETS
from libs.common.tls import ensure_ca, ensure_certificate
from tests.support.identities import mesh_env
from tests.support.ports import free_port, free_port_block
from vidsynth.cli.mesh_certs import issue_development

STARTUP_TIMEOUT_SECONDS = 90.0
HOSTS = ["127.0.0.1", "localhost"]


def common_env(data_dir: Path, grpc_port: int, http_port: int) -> dict[str, str]:
    return {
        **os.environ,
        **mesh_env(),
        **bench_env(grpc_port, http_port),
        "VIDSYNTH_DATA_DIR": str(data_dir),
        "VIDSYNTH_LOG_LEVEL": "warning",
        "VIDSYNTH_SESSION_MAX_PER_USER": "10000000",
        "VIDSYNTH_SESSION_MAX_GLOBAL": "10000000",
        "VIDSYNTH_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000",
        "VIDSYNTH_GATEWAY_RATE_LIMIT_BURST": "1000000",
        "VIDSYNTH_GRPC_RATE_LIMIT_PER_SECOND": "1000000",
        "VIDSYNTH_GRPC_RATE_LIMIT_BURST": "1000000",
        "VIDSYNTH_MESH_TLS": "false",
    }


async def start(env: dict[str, str]) -> list[asyncio.subprocess.Process]:
    return [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, env=env, stdin=asyncio.subprocess.DEVNULL
        )
        for module in ("services.session", "services.gateway")
    ]


async def wait_ready(
    grpc_port: int, processes: list[asyncio.subprocess.Process], tls: MeshTls | None
) -> None:
    """The session service SERVING and the gateway's /healthz 200, each reached directly
    (with the mesh's client certificate when `tls`)."""
    session = f"127.0.0.1:{grpc_port + SERVICE_PORT_OFFSETS['session']}"
    gateway = f"127.0.0.1:{grpc_port + GATEWAY_HTTP_PORT_OFFSET}"
    if tls:
        channel = grpc.aio.secure_channel(
            session, tls.channel_credentials(), options=tls.channel_options("session")
        )
        url, verify, extensions = (
            f"https://{gateway}/healthz",
            tls.client_context(),
            {"sni_hostname": tls.server_name("gateway")},
        )
    else:
        channel = grpc.aio.insecure_channel(session)
        url, verify, extensions = f"http://{gateway}/healthz", True, None
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    async with channel, httpx.AsyncClient(verify=verify) as http:
        while time.monotonic() < deadline:
            if any(p.returncode is not None for p in processes):
                raise RuntimeError("a service exited during startup")
            with contextlib.suppress(grpc.RpcError, httpx.HTTPError):
                health = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                serving = health.status == health_pb2.HealthCheckResponse.SERVING
                if serving and (await http.get(url, extensions=extensions)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("services did not start")


def report(
    clients: int, seconds: float, rounds: int, runs: list[Run], loaded: list[Run], rate: float
) -> None:
    grpc_plain, grpc_tls, http_plain, http_tls = runs
    print(
        f"sessions through the edge, plaintext vs `up --tls`: {clients} clients, {seconds:g} s per target in "
        f"{rounds} alternating rounds, create + get per iteration"
    )
    print("capacity (closed loop):")
    for run in runs:
        print(run.line())
    for run in runs:
        print(run.cpu_line())
    print(
        f"latency under load (open loop, {rate:.0f} req/s offered = {RATIO_TARGET}x plaintext HTTP capacity):"
    )
    for run in loaded:
        print(run.line())

    def ratio(tls: Run, plain: Run) -> float:
        return tls.rps / plain.rps if plain.rps else 0.0

    print(
        f"HTTP through the edge, --tls / plaintext: {ratio(http_tls, http_plain):.2f} "
        f"(TLS costs {100 * (1 - ratio(http_tls, http_plain)):.0f} % of throughput); p99 under load "
        f"{loaded[1].percentile_ms(0.99):.2f} ms vs {loaded[0].percentile_ms(0.99):.2f} ms"
    )
    print(
        f"gRPC through the edge, --tls / plaintext: {ratio(grpc_tls, grpc_plain):.2f} "
        f"(TLS costs {100 * (1 - ratio(grpc_tls, grpc_plain)):.0f} % of throughput)"
    )


async def main(clients: int, seconds: float, warmup: float, rounds: int) -> int:
    with tempfile.TemporaryDirectory(prefix="vidsynth-bench-tls-") as temp:
        root = Path(temp)
        tls_dir = root / "tls"
        authority = ensure_ca(tls_dir)
        edge_certificate = ensure_certificate(authority, tls_dir, "edge", HOSTS)
        mesh_dir = issue_development(authority, tls_dir, "vidsynth.internal", HOSTS)
        edge_identity = load(
            "edge",
            MeshTlsSettings(mesh_tls=True, mesh_tls_ca_file=authority.path, mesh_tls_cert_dir=mesh_dir),
        )
        plain_grpc, plain_http = free_port_block(), free_port()
        tls_grpc, tls_http = free_port_block(), free_port()
        (root / "plain").mkdir()
        (root / "tls-mesh").mkdir()
        plain_env = common_env(root / "plain", plain_grpc, plain_http)
        tls_env = {
            **common_env(root / "tls-mesh", tls_grpc, tls_http),
            "VIDSYNTH_MESH_TLS": "true",
            "VIDSYNTH_MESH_TLS_CA_FILE": str(authority.path),
            "VIDSYNTH_MESH_TLS_CERT_DIR": str(mesh_dir),
        }
        plain_processes, tls_processes = await start(plain_env), await start(tls_env)
        processes = [*plain_processes, *tls_processes]
        client_tls = ssl.create_default_context(cafile=str(authority.path))
        try:
            await wait_ready(plain_grpc, plain_processes, None)
            await wait_ready(tls_grpc, tls_processes, edge_identity)
            async with (
                running_edge(root / "plain", plain_grpc, plain_http) as plain_edge,
                running_edge(
                    root / "tls-mesh", tls_grpc, tls_http, edge_certificate, edge_identity
                ) as tls_edge,
                grpc_target(f"127.0.0.1:{plain_grpc}", "grpc") as grpc_plain,
                grpc_target(
                    f"127.0.0.1:{tls_grpc}",
                    "grpc --tls",
                    grpc.ssl_channel_credentials(authority.path.read_bytes()),
                ) as grpc_tls,
                gateway_target("127.0.0.1", plain_http, clients, "http") as http_plain,
                gateway_target("127.0.0.1", tls_http, clients, "https --tls", client_tls) as http_tls,
            ):
                freeze_startup_heap()
                pids = {
                    "session": plain_processes[0].pid,
                    "gateway": plain_processes[1].pid,
                    "edge": plain_edge,
                    "session(tls)": tls_processes[0].pid,
                    "gateway(tls)": tls_processes[1].pid,
                    "edge(tls)": tls_edge,
                    "bench": os.getpid(),
                }
                targets = [grpc_plain, grpc_tls, http_plain, http_tls]
                runs = await compare(targets, clients, seconds, warmup, rounds, CpuMeter(pids))
                rate = RATIO_TARGET * runs[2].rps
                loaded = await compare_at_rate(targets[2:], clients, rate, seconds, max(1, rounds // 2))
        finally:
            for process in processes:
                if process.returncode is None:
                    process.terminate()
            for process in processes:
                await process.wait()
    report(clients, seconds, rounds, runs, loaded, rate)
    return 0 if all(run.errors == 0 for run in [*runs, *loaded]) else 1
