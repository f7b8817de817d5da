"""Start services in-process on ephemeral ports, wired to each other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from libs.common.grpc_server import ServiceWiring, keyring_from_settings, start_wiring, stop_wiring
from libs.common.settings import MeshSettings

Build = Callable[[MeshSettings], Awaitable[ServiceWiring]]


@dataclass
class RunningService:
    address: str
    wiring: ServiceWiring
    server: grpc.aio.Server
    health: object

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.address)


class InProcessMesh:
    """Starts services one by one; each later one learns the earlier ones' addresses."""

    def __init__(self, settings: MeshSettings) -> None:
        self.settings = settings
        self.running: dict[str, RunningService] = {}

    async def start(self, name: str, build: Build) -> RunningService:
        wiring = await build(self.settings)
        server, port, health = await start_wiring(wiring, "127.0.0.1:0", keyring_from_settings(self.settings))
        service = RunningService(f"127.0.0.1:{port}", wiring, server, health)
        self.running[name] = service
        self.settings = self.settings.model_copy(update={f"{name}_addr": service.address})
        return service

    async def stop(self) -> None:
        for service in reversed(list(self.running.values())):
            await stop_wiring(service.wiring, service.server, service.health, grace=0)
        self.running.clear()
