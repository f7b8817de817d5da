"""Wiring of the ValidatorService process."""

from __future__ import annotations

from libs.common.allocator import keep_large_buffers_in_heap
from libs.common.backpressure import ResourceGate
from libs.common.clamd_link import default_clamd_address
from libs.common.clients import MeshClients
from libs.common.grpc_server import ServiceWiring, run_service
from libs.common.settings import MeshSettings
from services.validator.config import ValidatorSettings, get_validator_settings, quarantine_dir
from services.validator.decode_workers import DecodeWorkers
from services.validator.scanner import ClamdScanner
from services.validator.servicer import ValidatorService
from services.validator.uploads import UploadValidator
from vidsynth.v1 import validator_pb2, validator_pb2_grpc

SERVICES = [validator_pb2.DESCRIPTOR.services_by_name["ValidatorService"]]


async def build(settings: MeshSettings, validator_settings: ValidatorSettings | None = None) -> ServiceWiring:
    config = validator_settings or get_validator_settings()
    clients = MeshClients(settings)
    scanner = ClamdScanner(
        config.validator_clamd_address or default_clamd_address(settings.data_dir),
        timeout=config.validator_clamd_timeout_seconds,
    )
    quarantine_root = quarantine_dir(config, settings)
    workers = DecodeWorkers.from_settings(config)
    uploads = UploadValidator(
        config,
        settings.sessions_dir,
        quarantine_root,
        clients,
        scanner,
        workers,
        storage_guard=ResourceGate(clients).check_upload,
    )
    servicer = ValidatorService(config, uploads, scanner, quarantine_root)

    async def on_closing() -> None:
        # After the grace period: uploads still in flight until then decode and register.
        await workers.close()
        await clients.close()

    return ServiceWiring(
        services=SERVICES,
        register=lambda server: validator_pb2_grpc.add_ValidatorServiceServicer_to_server(servicer, server),
        on_started=workers.start,
        on_closing=on_closing,
    )


def main() -> None:
    keep_large_buffers_in_heap()  # every upload streams through MB-sized buffers
    run_service("validator", build)
