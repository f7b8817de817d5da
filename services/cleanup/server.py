"""Wiring of the CleanupService process."""

from __future__ import annotations

import asyncio

from libs.common.clients import MeshClients
from libs.common.grpc_server import ServiceWiring, run_service
from libs.common.settings import MeshSettings
from services.cleanup.config import CleanupSettings
from services.cleanup.monitor import ResourceMonitor
from services.cleanup.scheduler import CleanupScheduler
from services.cleanup.servicer import CleanupService
from services.cleanup.sessions import MeshSessionStatusSource, SessionStatusSource
from services.cleanup.state_file import StateFile
from services.cleanup.tasks import CleanupContext, task_specs
from vidsynth.v1 import cleanup_pb2, cleanup_pb2_grpc

SERVICES = [cleanup_pb2.DESCRIPTOR.services_by_name["CleanupService"]]


async def build(
    settings: MeshSettings,
    cleanup_settings: CleanupSettings | None = None,
    session_status: SessionStatusSource | None = None,
) -> ServiceWiring:
    cleanup_settings = cleanup_settings or CleanupSettings()
    clients = MeshClients(settings)
    ctx = CleanupContext(
        settings=cleanup_settings,
        data_dir=settings.data_dir,
        clients=clients,
        sessions=session_status or MeshSessionStatusSource(clients),
    )
    monitor = ResourceMonitor(settings.data_dir, cleanup_settings, root_pid=settings.parent_pid)
    state_file = StateFile(settings.data_dir)
    restored = await asyncio.to_thread(state_file.load)
    scheduler = CleanupScheduler(ctx, task_specs(cleanup_settings), monitor, state_file, restored)
    servicer = CleanupService(scheduler, cleanup_settings.cleanup_retry_after_seconds)

    return ServiceWiring(
        services=SERVICES,
        register=lambda server: cleanup_pb2_grpc.add_CleanupServiceServicer_to_server(servicer, server),
        on_started=scheduler.start,
        on_draining=scheduler.stop,  # no new sweeps; a RunCleanup in flight still finishes
        on_closing=clients.close,
    )


def main() -> None:
    run_service("cleanup", build)
