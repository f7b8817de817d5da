"""Everything the gateway's routes and middleware share, built once when the app is made.

Building it reads and checks every setting the gateway uses, so a bad one stops the process
at boot (services/gateway/server.py says which) instead of failing the first request that
needs it; closing it at shutdown (the app's lifespan) ends the live event feeds and the mesh
channels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import grpc
from starlette.applications import Starlette

from libs.common.clients import MeshClients
from libs.common.grpc_server import keyring_from_settings
from libs.common.identity import Keyring
from libs.common.metrics import MetricsSettings
from libs.common.settings import MeshSettings
from services.gateway.config import GatewaySettings
from services.gateway.event_feeds import FeedRegistry
from services.gateway.stream_tokens import StreamTokenSettings, StreamTokenSigner, signer_from_settings
from vidsynth.v1 import progress_pb2, validator_pb2

# The validator's limits change only with its config; a short cache spares a call per upload.
POLICY_CACHE_SECONDS = 30.0


@dataclass
class UploadPolicyCache:
    """The validator's published upload policy, kept briefly."""

    policy: validator_pb2.UploadPolicy | None = None
    fetched_at: float = float("-inf")

    def fresh(self) -> validator_pb2.UploadPolicy | None:
        if self.policy is not None and time.monotonic() - self.fetched_at < POLICY_CACHE_SECONDS:
            return self.policy
        return None

    def keep(self, policy: validator_pb2.UploadPolicy) -> None:
        self.policy, self.fetched_at = policy, time.monotonic()


@dataclass
class GatewayState:
    settings: MeshSettings
    gateway_settings: GatewaySettings
    metrics_settings: MetricsSettings
    keyring: Keyring
    clients: MeshClients
    stream_tokens: StreamTokenSigner
    event_feeds: FeedRegistry
    upload_policy: UploadPolicyCache = field(default_factory=UploadPolicyCache)

    @classmethod
    def build(
        cls,
        settings: MeshSettings,
        gateway_settings: GatewaySettings | None = None,
        metrics_settings: MetricsSettings | None = None,
        stream_token_settings: StreamTokenSettings | None = None,
    ) -> GatewayState:
        """Reads the settings not given from the environment (pydantic's ValidationError
        for a bad one; KeysFileError for an unusable API keys file)."""
        gateway_settings = gateway_settings or GatewaySettings()
        metrics_settings = metrics_settings or MetricsSettings()
        stream_tokens = signer_from_settings(settings, stream_token_settings or StreamTokenSettings())
        keyring = keyring_from_settings(settings)
        clients = MeshClients(settings)

        def open_subscribe(session_id: str, after_seq: int) -> grpc.aio.UnaryStreamCall:
            return clients.progress.Subscribe(
                progress_pb2.SubscribeRequest(session_id=session_id, after_seq=after_seq)
            )

        return cls(
            settings=settings,
            gateway_settings=gateway_settings,
            metrics_settings=metrics_settings,
            keyring=keyring,
            clients=clients,
            stream_tokens=stream_tokens,
            event_feeds=FeedRegistry(open_subscribe),
        )

    async def close(self) -> None:
        """Ends the live feeds (their upstream Subscribe calls), then closes the channels."""
        await self.event_feeds.close()
        await self.clients.close()


def gateway_state(app: Starlette) -> GatewayState:
    return app.state.gateway
