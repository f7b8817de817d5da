"""Wiring of the StageRunnerService process."""

from __future__ import annotations

from libs.common.grpc_server import ServiceWiring, full_method, run_service
from libs.common.identity import Access
from libs.common.settings import MeshSettings
from services.stage_runner.servicer import StageRunnerService
from vidsynth.v1 import stage_runner_pb2, stage_runner_pb2_grpc

SERVICE_NAME = stage_runner_pb2.DESCRIPTOR.services_by_name["StageRunnerService"].full_name
ACCESS = {
    full_method(SERVICE_NAME, "SetProcessingMode"): Access.ADMIN,
}


async def build(settings: MeshSettings) -> ServiceWiring:
    servicer = StageRunnerService()
    return ServiceWiring(
        service_names=[SERVICE_NAME],
        register=lambda server: stage_runner_pb2_grpc.add_StageRunnerServiceServicer_to_server(
            servicer, server
        ),
        access=ACCESS,
    )


def main() -> None:
    run_service("stage_runner", build)
