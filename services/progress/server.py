"""Wiring of the ProgressService process."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from libs.common.clients import MeshClients
from libs.common.grpc_server import ServiceWiring, run_service
from libs.common.rpc_status import error_from_rpc_error
from libs.common.settings import MeshSettings
from services.progress.broker import Broker
from services.progress.config import ProgressSettings
from services.progress.event_log import EventLog
from services.progress.redis_live import RedisLiveFeed
from services.progress.redis_store import RedisEventStore
from services.progress.servicer import ProgressInternalService, ProgressService
from services.progress.store import open_store
from vidsynth.internal.v1 import progress_internal_pb2, progress_internal_pb2_grpc
from vidsynth.v1 import progress_pb2, progress_pb2_grpc, session_pb2

SERVICES = [
    progress_pb2.DESCRIPTOR.services_by_name["ProgressService"],
    progress_internal_pb2.DESCRIPTOR.services_by_name["ProgressInternalService"],
]


def session_owner_check(clients: MeshClients):
    """Ownership through SessionService.GetSession, acting as the caller (identity propagates)."""

    async def check(session_id: str) -> None:
        try:
            await clients.session.GetSession(session_pb2.GetSessionRequest(session_id=session_id))
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc_error(error) from None

    return check


@dataclass(kw_only=True)
class ProgressWiring(ServiceWiring):
    """The service's wiring and the event log tests and benchmarks inspect (subscribers)."""

    event_log: EventLog


async def build(settings: MeshSettings, progress_settings: ProgressSettings | None = None) -> ProgressWiring:
    progress_settings = progress_settings or ProgressSettings()
    broker = Broker(progress_settings.progress_subscriber_buffer)
    live: RedisLiveFeed | None = None
    store = await open_store(settings, progress_settings)
    if isinstance(store, RedisEventStore):  # replicas share the streams; each feeds its own subscribers
        live = RedisLiveFeed(store, broker)
    log = EventLog(store, broker, progress_settings.progress_replay_page_size, live)
    clients = MeshClients(settings)
    servicer = ProgressService(log, progress_settings, session_owner_check(clients))
    internal = ProgressInternalService(log, progress_settings)

    def register(server) -> None:
        progress_pb2_grpc.add_ProgressServiceServicer_to_server(servicer, server)
        progress_internal_pb2_grpc.add_ProgressInternalServiceServicer_to_server(internal, server)

    async def on_draining() -> None:
        # Live streams never end by themselves: end them now (UNAVAILABLE) so clients
        # resume by seq elsewhere or later, and refuse live tails to streams that start now.
        log.broker.shut_down()

    async def on_closing() -> None:
        if live is not None:
            await live.close()
        await store.close()
        await clients.close()

    return ProgressWiring(
        services=SERVICES,
        register=register,
        on_draining=on_draining,
        on_closing=on_closing,
        event_log=log,
    )


def main() -> None:
    run_service("progress", build)
