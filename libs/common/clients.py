"""Clients for calls inside the mesh: one channel per service, a deadline on every
call, keepalive, retries for idempotent RPCs, the caller's identity and (when tracing)
its trace context attached."""

from __future__ import annotations

import abc
import json

import grpc

from libs.common import mesh_tls
from libs.common.access import retry_safe_unary_methods
from libs.common.identity import (
    MESH_TOKEN_KEY,
    REQUEST_ID_KEY,
    USER_ID_KEY,
    current_identity,
    current_request_id,
)
from libs.common.rpc_tracing import inject_current
from libs.common.settings import MeshSettings
from vidsynth.internal.v1 import (
    progress_internal_pb2,
    progress_internal_pb2_grpc,
    session_internal_pb2,
    session_internal_pb2_grpc,
)
from vidsynth.v1 import (
    cleanup_pb2,
    cleanup_pb2_grpc,
    progress_pb2,
    progress_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
    stage_runner_pb2,
    stage_runner_pb2_grpc,
    validator_pb2,
    validator_pb2_grpc,
)

STREAM_DEADLINE_SECONDS = 3600.0
UPLOAD_DEADLINE_SECONDS = 300.0

# Every service the mesh calls, public and internal.
MESH_SERVICES = [
    module.DESCRIPTOR.services_by_name[name]
    for module, name in (
        (session_pb2, "SessionService"),
        (session_internal_pb2, "SessionInternalService"),
        (validator_pb2, "ValidatorService"),
        (stage_runner_pb2, "StageRunnerService"),
        (progress_pb2, "ProgressService"),
        (progress_internal_pb2, "ProgressInternalService"),
        (cleanup_pb2, "CleanupService"),
    )
]
# RPCs the protos declare NO_SIDE_EFFECTS or IDEMPOTENT are safe to retry on
# UNAVAILABLE (a replica restarting).
IDEMPOTENT_METHODS = retry_safe_unary_methods(MESH_SERVICES)
# Probes whose every caller carries on without an answer (the back-pressure gate fails open,
# /health reports the part as unknown): a retry would only delay the upload, job start or
# health check that asked, by about 0.7 s each time the cleanup service is down.
PROBES = {"vidsynth.v1.CleanupService": frozenset({"GetResourceHealth"})}
RETRIED_METHODS = {
    service: [m for m in methods if m not in PROBES.get(service, ())]
    for service, methods in IDEMPOTENT_METHODS.items()
}

SERVICE_CONFIG = json.dumps(
    {
        # Spreads calls over every address a name resolves to (replicas behind a headless
        # Kubernetes service); a single address behaves as before.
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [
                    {"service": svc, "method": m} for svc, methods in RETRIED_METHODS.items() for m in methods
                ],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)

CHANNEL_OPTIONS = [
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.max_send_message_length", 8 * 1024 * 1024),
]


class _MeshMetadata:
    """Attaches the mesh credential, the acting user, the request id and the trace
    context; sets a deadline on any call that has none."""

    def __init__(self, mesh_token: str, default_timeout: float, stream_timeout: float) -> None:
        self._mesh_token = mesh_token
        self._default_timeout = default_timeout
        self._stream_timeout = stream_timeout

    def details(self, details: grpc.aio.ClientCallDetails, streaming: bool) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if self._mesh_token and MESH_TOKEN_KEY not in metadata:
            metadata[MESH_TOKEN_KEY] = self._mesh_token
        identity = current_identity.get()
        if identity is not None and USER_ID_KEY not in metadata:
            metadata[USER_ID_KEY] = identity.user_id
        request_id = current_request_id.get()
        if request_id and REQUEST_ID_KEY not in metadata:
            metadata[REQUEST_ID_KEY] = request_id
        timeout = details.timeout
        if timeout is None:
            timeout = self._stream_timeout if streaming else self._default_timeout
        inject_current(metadata)
        return grpc.aio.ClientCallDetails(
            details.method, timeout, metadata, details.credentials, details.wait_for_ready
        )


class _UnaryUnary(_MeshMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self.details(client_call_details, streaming=False), request)


class _UnaryStream(_MeshMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self.details(client_call_details, streaming=True), request)


class _StreamUnary(_MeshMetadata, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(self.details(client_call_details, streaming=True), request_iterator)


def mesh_channel(
    address: str, settings: MeshSettings, service: str = "", tls: mesh_tls.MeshTls | None = None
) -> grpc.aio.Channel:
    """A channel to `address`; with mesh TLS, this process's certificate is presented and the
    server must prove it is `service` (its identity, not its address)."""
    token = settings.mesh_token.get_secret_value()
    timeout = settings.rpc_timeout_seconds
    interceptors = [
        _UnaryUnary(token, timeout, STREAM_DEADLINE_SECONDS),
        _UnaryStream(token, timeout, STREAM_DEADLINE_SECONDS),
        _StreamUnary(token, timeout, UPLOAD_DEADLINE_SECONDS),
    ]
    if tls is None:
        return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS, interceptors=interceptors)
    options = [*CHANNEL_OPTIONS, *(tls.channel_options(service) if service else [])]
    return grpc.aio.secure_channel(
        address, tls.channel_credentials(), options=options, interceptors=interceptors
    )


class ServiceStubs(abc.ABC):
    """A stub per service over `self.channel(service)`; subclasses decide how channels open."""

    @abc.abstractmethod
    def channel(self, service: str) -> grpc.aio.Channel | grpc.Channel: ...

    @property
    def session(self) -> session_pb2_grpc.SessionServiceStub:
        return session_pb2_grpc.SessionServiceStub(self.channel("session"))

    @property
    def validator(self) -> validator_pb2_grpc.ValidatorServiceStub:
        return validator_pb2_grpc.ValidatorServiceStub(self.channel("validator"))

    @property
    def stage_runner(self) -> stage_runner_pb2_grpc.StageRunnerServiceStub:
        return stage_runner_pb2_grpc.StageRunnerServiceStub(self.channel("stage_runner"))

    @property
    def progress(self) -> progress_pb2_grpc.ProgressServiceStub:
        return progress_pb2_grpc.ProgressServiceStub(self.channel("progress"))

    @property
    def session_internal(self) -> session_internal_pb2_grpc.SessionInternalServiceStub:
        """The session service's mesh-only RPCs (same process, same port)."""
        return session_internal_pb2_grpc.SessionInternalServiceStub(self.channel("session"))

    @property
    def progress_internal(self) -> progress_internal_pb2_grpc.ProgressInternalServiceStub:
        """The progress service's mesh-only RPCs (same process, same port)."""
        return progress_internal_pb2_grpc.ProgressInternalServiceStub(self.channel("progress"))

    @property
    def cleanup(self) -> cleanup_pb2_grpc.CleanupServiceStub:
        return cleanup_pb2_grpc.CleanupServiceStub(self.channel("cleanup"))


class MeshClients(ServiceStubs):
    """Lazily opened mesh channels for every service, all from one settings object."""

    def __init__(self, settings: MeshSettings) -> None:
        self._settings = settings
        self._tls = mesh_tls.current()
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, service: str) -> grpc.aio.Channel:
        if service not in self._channels:
            address = self._settings.service_address(service)
            self._channels[service] = mesh_channel(address, self._settings, service, self._tls)
        return self._channels[service]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
