"""Wiring of the ValidatorService process."""

from __future__ import annotations

from libs.common.grpc_server import ServiceWiring, full_method, run_service
from libs.common.identity import Access
from libs.common.settings import MeshSettings
from services.validator.servicer import ValidatorService
from vidsynth.v1 import validator_pb2, validator_pb2_grpc

SERVICE_NAME = validator_pb2.DESCRIPTOR.services_by_name["ValidatorService"].full_name
ACCESS = {
    full_method(SERVICE_NAME, "ListQuarantine"): Access.ADMIN,
}


async def build(settings: MeshSettings) -> ServiceWiring:
    servicer = ValidatorService()
    return ServiceWiring(
        service_names=[SERVICE_NAME],
        register=lambda server: validator_pb2_grpc.add_ValidatorServiceServicer_to_server(servicer, server),
        access=ACCESS,
    )


def main() -> None:
    run_service("validator", build)
