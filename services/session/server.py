"""Wiring of the SessionService process."""

from __future__ import annotations

from libs.common.grpc_server import ServiceWiring, full_method, run_service
from libs.common.identity import Access
from libs.common.settings import MeshSettings
from services.session.servicer import SessionService
from vidsynth.v1 import session_pb2, session_pb2_grpc

SERVICE_NAME = session_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name
ACCESS = {
    full_method(SERVICE_NAME, "RegisterAsset"): Access.INTERNAL,
    full_method(SERVICE_NAME, "UpdateSessionState"): Access.INTERNAL,
    full_method(SERVICE_NAME, "SweepExpiredSessions"): Access.INTERNAL,
}


async def build(settings: MeshSettings) -> ServiceWiring:
    servicer = SessionService()
    return ServiceWiring(
        service_names=[SERVICE_NAME],
        register=lambda server: session_pb2_grpc.add_SessionServiceServicer_to_server(servicer, server),
        access=ACCESS,
    )


def main() -> None:
    run_service("session", build)
