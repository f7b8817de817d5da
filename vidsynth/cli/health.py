"""`vidsynth health`: each service's gRPC health state and the gateway's."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pydantic
import typer
from rich.console import Console
from rich.table import Table

from libs.common import mesh_tls
from libs.common.errors import VidsynthError
from libs.common.mesh_tls import MeshTls
from libs.common.settings import MeshSettings
from libs.common.tls import TlsFileError
from vidsynth.cli.remote import (
    DEFAULT_GRPC,
    DEFAULT_URL,
    GrpcOption,
    UrlOption,
    fail,
    grpc_host_and_port,
    https_verify,
)
from vidsynth.cli.supervisor import HttpProbe, Supervisor


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


def mesh_identity() -> MeshTls | None:
    """With VIDSYNTH_MESH_TLS on, the certificate the checks present to the services
    (the edge's: the services behind a `--tls` edge refuse callers without one)."""
    try:
        return mesh_tls.current()
    except pydantic.ValidationError as error:
        fail(VidsynthError("INVALID_ARGUMENT", mesh_tls.settings_error(error)))
    except TlsFileError as error:
        fail(VidsynthError("INVALID_ARGUMENT", str(error)))


def health(grpc_target: GrpcOption = DEFAULT_GRPC, url: UrlOption = DEFAULT_URL) -> None:
    """Print each service's state; exit 1 unless all are SERVING."""
    settings = mesh_at(grpc_target, url)
    # An HTTPS URL is the edge's: the gateway's health is asked there, trusting VIDSYNTH_TLS_CA.
    gateway = HttpProbe(f"{url.rstrip('/')}/healthz", https_verify()) if url.startswith("https://") else None
    supervisor = Supervisor([], settings, print, mesh_tls=mesh_identity(), gateway=gateway)
    states = asyncio.run(supervisor.service_states())
    table = Table("service", "state")
    for name, state in states.items():
        table.add_row(name, f"[green]{state}[/]" if state == "SERVING" else f"[red]{state}[/]")
    Console().print(table)
    raise typer.Exit(0 if all(s == "SERVING" for s in states.values()) else 1)
