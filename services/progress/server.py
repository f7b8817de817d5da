"""Wiring of the ProgressService process."""

from __future__ import annotations

from libs.common.grpc_server import ServiceWiring, full_method, run_service
from libs.common.identity import Access
from libs.common.settings import MeshSettings
from services.progress.servicer import ProgressService
from vidsynth.v1 import progress_pb2, progress_pb2_grpc

SERVICE_NAME = progress_pb2.DESCRIPTOR.services_by_name["ProgressService"].full_name
ACCESS = {
    full_method(SERVICE_NAME, "PublishEvents"): Access.INTERNAL,
    full_method(SERVICE_NAME, "DeleteSessionEvents"): Access.INTERNAL,
}


async def build(settings: MeshSettings) -> ServiceWiring:
    servicer = ProgressService()
    return ServiceWiring(
        service_names=[SERVICE_NAME],
        register=lambda server: progress_pb2_grpc.add_ProgressServiceServicer_to_server(servicer, server),
        access=ACCESS,
    )


def main() -> None:
    run_service("progress", build)
