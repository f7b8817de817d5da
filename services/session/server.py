"""Wiring of the SessionService process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from libs.common.clients import MeshClients
from libs.common.grpc_server import ServiceWiring, run_service
from libs.common.settings import MeshSettings
from services.session.active_gauge import refresh_active_sessions
from services.session.config import SessionSettings
from services.session.peers import MeshPeers
from services.session.servicer import SessionInternalService, SessionService
from services.session.sessions import SessionManager
from services.session.store import open_store
from vidsynth.internal.v1 import session_internal_pb2, session_internal_pb2_grpc
from vidsynth.v1 import session_pb2, session_pb2_grpc

SERVICES = [
    session_pb2.DESCRIPTOR.services_by_name["SessionService"],
    session_internal_pb2.DESCRIPTOR.services_by_name["SessionInternalService"],
]


async def build(
    settings: MeshSettings,
    session_settings: SessionSettings | None = None,
    clock: Callable[[], float] = time.time,
) -> ServiceWiring:
    session_settings = session_settings or SessionSettings()
    store = await open_store(settings, session_settings)
    clients = MeshClients(settings)
    peers = MeshPeers(clients)
    manager = SessionManager(store, session_settings, settings.sessions_dir, peers=peers, clock=clock)
    servicer = SessionService(manager)
    internal = SessionInternalService(manager)

    def register(server) -> None:
        session_pb2_grpc.add_SessionServiceServicer_to_server(servicer, server)
        session_internal_pb2_grpc.add_SessionInternalServiceServicer_to_server(internal, server)

    gauge: asyncio.Task | None = None

    async def on_started() -> None:
        nonlocal gauge
        gauge = asyncio.create_task(refresh_active_sessions(store))

    async def on_draining() -> None:
        if gauge is not None:
            gauge.cancel()

    async def on_closing() -> None:
        await peers.close()
        await clients.close()
        await store.close()

    return ServiceWiring(
        services=SERVICES,
        register=register,
        on_started=on_started,
        on_draining=on_draining,
        on_closing=on_closing,
    )


def main() -> None:
    run_service("session", build)
