"""`vidsynth caps` and `vidsynth cleanup`: what the mesh can do, and freeing space."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from libs.common.enums import enum_label
from vidsynth.cli.remote import (
    DEFAULT_GRPC,
    ApiKeyOption,
    GrpcOption,
    JsonOption,
    Remote,
    as_dict,
    console,
    print_json,
)
from vidsynth.v1 import cleanup_pb2, common_pb2, stage_runner_pb2


def caps(
    refresh: Annotated[bool, typer.Option(help="Re-detect backends instead of using the cache.")] = False,
    api_key: ApiKeyOption = "",
    grpc_target: GrpcOption = DEFAULT_GRPC,
    as_json: JsonOption = False,
) -> None:
    """Which backends are present, the processing mode and production readiness."""
    remote = Remote(grpc_target, api_key)
    capabilities = remote.call(
        remote.stage_runner.GetCapabilities, stage_runner_pb2.GetCapabilitiesRequest(refresh=refresh), as_json
    )
    if as_json:
        print_json(as_dict(capabilities))
        return
    mode = enum_label(common_pb2.ProcessingMode, capabilities.mode)
    ready = "[green]yes[/]" if capabilities.production_ready else "[yellow]no[/]"
    console.print(
        f"mode: [bold]{mode}[/]   production ready: {ready}   GPU: {capabilities.gpu_name or 'none'}"
    )
    table = Table("stage", "backend", "kind", "available", "why")
    for backend in capabilities.backends:
        table.add_row(
            enum_label(common_pb2.Stage, backend.stage),
            backend.name,
            enum_label(stage_runner_pb2.BackendKind, backend.kind),
            "[green]yes[/]" if backend.available else "[red]no[/]",
            backend.reason,
        )
    console.print(table)
    for missing in capabilities.missing:
        console.print(f"[yellow]missing for production:[/] {missing}")


def cleanup(
    task: Annotated[str, typer.Option(help="Run one task by name (default: all).")] = "",
    emergency: Annotated[bool, typer.Option(help="Free space now, in the safe order.")] = False,
    api_key: ApiKeyOption = "",
    grpc_target: GrpcOption = DEFAULT_GRPC,
    as_json: JsonOption = False,
) -> None:
    """Run cleanup tasks (admin): scheduled ones on demand, or an emergency cleanup."""
    remote = Remote(grpc_target, api_key)
    if emergency:
        reply = remote.call(remote.cleanup.EmergencyCleanup, cleanup_pb2.EmergencyCleanupRequest(), as_json)
    else:
        reply = remote.call(remote.cleanup.RunCleanup, cleanup_pb2.RunCleanupRequest(task_name=task), as_json)
    if as_json:
        print_json(as_dict(reply))
        return
    for result in reply.results:
        console.print(
            f"{result.task_name:<24} removed {result.items_removed:>4}  freed {result.bytes_freed} bytes"
        )
    console.print(f"[bold]freed {reply.bytes_freed} bytes[/]")
