"""Wiring of the CleanupService process."""

from __future__ import annotations

from libs.common.grpc_server import ServiceWiring, full_method, run_service
from libs.common.identity import Access
from libs.common.settings import MeshSettings
from services.cleanup.servicer import CleanupService
from vidsynth.v1 import cleanup_pb2, cleanup_pb2_grpc

SERVICE_NAME = cleanup_pb2.DESCRIPTOR.services_by_name["CleanupService"].full_name
ACCESS = {
    full_method(SERVICE_NAME, "RunCleanup"): Access.ADMIN,
    full_method(SERVICE_NAME, "EmergencyCleanup"): Access.ADMIN,
}


async def build(settings: MeshSettings) -> ServiceWiring:
    servicer = CleanupService()
    return ServiceWiring(
        service_names=[SERVICE_NAME],
        register=lambda server: cleanup_pb2_grpc.add_CleanupServiceServicer_to_server(servicer, server),
        access=ACCESS,
    )


def main() -> None:
    run_service("cleanup", build)
