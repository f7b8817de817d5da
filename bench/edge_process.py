"""The nginx edge for a benchmark's mesh: the config `vidsynth up` renders, in the bench's
temp dir, with the per-address connection cap lifted (every bench client shares 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import psutil

from libs.common import children
from libs.common.mesh_tls import MeshTls
from libs.common.settings import GATEWAY_HTTP_PORT_OFFSET, MeshSettings
from libs.common.tls import CertificateFiles
from vidsynth.cli import edge


def bench_env(grpc_port: int, http_port: int) -> dict[str, str]:
    """What `vidsynth up` sets for a mesh behind the edge: the gateway on G+7, trusting the edge."""
    return {
        "VIDSYNTH_GRPC_PORT": str(grpc_port),
        "VIDSYNTH_HTTP_PORT": str(http_port),
        "VIDSYNTH_GATEWAY_HTTP_PORT": str(grpc_port + GATEWAY_HTTP_PORT_OFFSET),
        "VIDSYNTH_GATEWAY_TRUSTED_PROXIES": "127.0.0.1",
    }


class CpuMeter:
    """CPU seconds used so far by each named process and its children (nginx's workers are
    the master's children), to show where each request's time goes."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}

    def snapshot(self) -> dict[str, float]:
        usage: dict[str, float] = {}
        for name, process in self._processes.items():
            total = 0.0
            for member in [process, *process.children(recursive=True)]:
                try:
                    times = member.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += times.user + times.system
            usage[name] = total
        return usage


@contextlib.asynccontextmanager
async def running_edge(
    data_dir: Path,
    grpc_port: int,
    http_port: int,
    tls: CertificateFiles | None = None,
    mesh_tls: MeshTls | None = None,
) -> AsyncIterator[int]:
    """Runs the edge until the block ends; yields nginx's (master) pid. `tls`: HTTPS and
    gRPC over TLS for clients; `mesh_tls`: mutual TLS to the backends (`up --tls` sets both)."""
    mesh = MeshSettings(
        grpc_port=grpc_port, http_port=http_port, gateway_http_port=grpc_port + GATEWAY_HTTP_PORT_OFFSET
    )
    settings = edge.EdgeSettings(edge_max_connections_per_address=65_535)
    config = edge.config_for_mesh(mesh, settings, data_dir, tls, mesh_tls)
    argv = edge.nginx_argv(edge.nginx_binary(), edge.write_config(config, edge.edge_dir(data_dir)))
    await edge.check_config(argv)
    async with children.child_process(argv) as process:
        await asyncio.sleep(0.3)  # binds at once; the workers are up by the first request
        yield process.pid
