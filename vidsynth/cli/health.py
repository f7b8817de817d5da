"""`vidsynth health`: each service's gRPC health state."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from libs.common.settings import MeshSettings
from vidsynth.cli.supervisor import Supervisor


def health(
    grpc_port: Annotated[int, typer.Option(help="First of the five consecutive service ports.")] = 50051,
    http_port: Annotated[int, typer.Option(help="Gateway port.")] = 8080,
) -> None:
    """Print each service's state; exit 1 unless all are SERVING."""
    settings = MeshSettings(grpc_port=grpc_port, http_port=http_port)
    states = asyncio.run(Supervisor([], settings, print).service_states())
    table = Table("service", "state")
    for name, state in states.items():
        table.add_row(name, f"[green]{state}[/]" if state == "SERVING" else f"[red]{state}[/]")
    Console().print(table)
    raise typer.Exit(0 if all(s == "SERVING" for s in states.values()) else 1)
