"""Back-pressure: refuse uploads and new jobs while the machine is out of room.

    gate = ResourceGate(MeshClients(settings))
    await gate.check_upload()    # INSUFFICIENT_STORAGE at critical disk
    await gate.check_new_job()   # INSUFFICIENT_STORAGE at critical disk,
                                 # INSUFFICIENT_MEMORY at critical memory

It asks CleanupService.GetResourceHealth and keeps the answer ~2 s, so a burst of
uploads costs one call. If the cleanup service cannot be reached the gate fails
open (logged): a monitoring outage must not stop the product.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import structlog

from libs.common.clients import MeshClients
from libs.common.errors import VidsynthError
from libs.common.identity import USER_ID_KEY, current_identity
from vidsynth.v1 import cleanup_pb2

log = structlog.get_logger("vidsynth.backpressure")

CACHE_SECONDS = 2.0
# When the cleanup service does not say (VIDSYNTH_CLEANUP_RETRY_AFTER_SECONDS, in its answer).
RETRY_AFTER_SECONDS = 30.0
HEALTH_TIMEOUT_SECONDS = 2.0
# Who the gate acts as when it runs outside any user's request.
SYSTEM_USER = "system"


class ResourceGate:
    def __init__(
        self,
        clients: MeshClients,
        cache_seconds: float = CACHE_SECONDS,
        retry_after_seconds: float = RETRY_AFTER_SECONDS,
    ) -> None:
        self._clients = clients
        self._cache_seconds = cache_seconds
        self._retry_after = retry_after_seconds
        self._cached: cleanup_pb2.ResourceHealth | None = None
        self._cached_at = float("-inf")
        self._lock = asyncio.Lock()

    async def health(self) -> cleanup_pb2.ResourceHealth | None:
        """The latest resource health, or None when the cleanup service is unreachable."""
        if time.monotonic() - self._cached_at < self._cache_seconds:
            return self._cached
        async with self._lock:  # one call for a burst of waiting requests
            if time.monotonic() - self._cached_at < self._cache_seconds:
                return self._cached
            metadata = () if current_identity.get() else ((USER_ID_KEY, SYSTEM_USER),)
            try:
                self._cached = await self._clients.cleanup.GetResourceHealth(
                    cleanup_pb2.GetResourceHealthRequest(), timeout=HEALTH_TIMEOUT_SECONDS, metadata=metadata
                )
            except grpc.RpcError as error:
                log.warning("backpressure.health_unavailable", code=str(error.code()), failing_open=True)
                self._cached = None
            self._cached_at = time.monotonic()
            return self._cached

    def _retry_after_of(self, health: cleanup_pb2.ResourceHealth) -> float:
        """The cleanup service's advice (its own setting), else this gate's default."""
        if health.HasField("retry_after"):
            return health.retry_after.ToTimedelta().total_seconds()
        return self._retry_after

    def _storage_error(self, health: cleanup_pb2.ResourceHealth) -> VidsynthError:
        return VidsynthError("INSUFFICIENT_STORAGE", retry_after_seconds=self._retry_after_of(health))

    async def check_upload(self) -> None:
        health = await self.health()
        if health is not None and health.disk.level == cleanup_pb2.HEALTH_LEVEL_CRITICAL:
            raise self._storage_error(health)  # counted with every other refusal by the validator

    async def check_new_job(self) -> None:
        health = await self.health()
        if health is None:
            return
        if health.disk.level == cleanup_pb2.HEALTH_LEVEL_CRITICAL:
            raise self._storage_error(health)
        if health.memory.level == cleanup_pb2.HEALTH_LEVEL_CRITICAL:
            raise VidsynthError("INSUFFICIENT_MEMORY", retry_after_seconds=self._retry_after_of(health))
