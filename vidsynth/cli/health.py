"""`vidsynth health`: each service's gRPC health state and the gateway's."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table

from libs.common.errors import VidsynthError
from libs.common.settings import MeshSettings
from vidsynth.cli.remote import DEFAULT_GRPC, DEFAULT_URL, GrpcOption, UrlOption, fail, grpc_host_and_port
from vidsynth.cli.supervisor import Supervisor


def mesh_at(grpc_target: str, url: str) -> MeshSettings:
    """Where the mesh answers: its public gRPC address (the edge) at `grpc_target`, the
    services behind it on the next ports, its HTTP address at `url`."""
    grpc_host, grpc_port = grpc_host_and_port(grpc_target)
    gateway = urlsplit(url)
    if gateway.scheme not in ("http", "https") or not gateway.hostname:
        fail(VidsynthError("INVALID_ARGUMENT", f"--url must look like http://host:port, not {url!r}."))
    try:
        http_port = gateway.port or (443 if gateway.scheme == "https" else 80)
    except ValueError:
        fail(VidsynthError("INVALID_ARGUMENT", f"--url has no valid port: {url!r}."))
    return MeshSettings(
        grpc_host=grpc_host, grpc_port=grpc_port, http_host=gateway.hostname, http_port=http_port
    )


def health(grpc_target: GrpcOption = DEFAULT_GRPC, url: UrlOption = DEFAULT_URL) -> None:
    """Print each service's state; exit 1 unless all are SERVING."""
    settings = mesh_at(grpc_target, url)
    states = asyncio.run(Supervisor([], settings, print).service_states())
    table = Table("service", "state")
    for name, state in states.items():
        table.add_row(name, f"[green]{state}[/]" if state == "SERVING" else f"[red]{state}[/]")
    Console().print(table)
    raise typer.Exit(0 if all(s == "SERVING" for s in states.values()) else 1)
