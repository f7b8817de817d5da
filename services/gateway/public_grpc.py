"""Reflection and health for the public gRPC API as a whole, served by the gateway process
behind the edge's one gRPC address (the edge routes /grpc.health.v1.Health/ and both
reflection services here; every vidsynth service path goes straight to its service).

- Reflection (v1 and v1alpha) lists exactly the public services, health and reflection,
  and describes them from a descriptor pool holding only the public files and their
  imports: nothing mesh-only is visible.
- Health answers for "" (the whole API: SERVING only when every public service is) and
  for each public service name, by asking that service's own health, so it is never
  staler than one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

from libs.common.settings import PUBLIC_SERVICES

# Imported for their descriptors: the public API's files.
from vidsynth.v1 import (  # noqa: F401
    cleanup_pb2,
    progress_pb2,
    session_pb2,
    stage_runner_pb2,
    validator_pb2,
)

HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REFLECTION_V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
LISTED_SERVICES = (*PUBLIC_SERVICES.values(), HEALTH_SERVICE, REFLECTION_V1, REFLECTION_V1ALPHA)
CHECK_TIMEOUT_SECONDS = 2.0
WATCH_INTERVAL_SECONDS = 1.0

Status = health_pb2.HealthCheckResponse.ServingStatus
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def _reflection_v1_file() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto: the v1alpha file under its v1 package. The two
    are the same messages with the same field numbers, so v1alpha's generated classes
    read and write v1's wire format."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = f".{proto.package}.", ".grpc.reflection.v1."
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = "grpc.reflection.v1"
    proto.ClearField("options")
    for message in proto.message_type:
        for message_field in message.field:
            if message_field.type_name:  # assigning "" would mark a scalar field as typed
                message_field.type_name = message_field.type_name.replace(old, new)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    return proto


def _add_with_dependencies(pool: descriptor_pool.DescriptorPool, file, added: set[str]) -> None:
    if file.name in added:
        return
    for dependency in file.dependencies:
        _add_with_dependencies(pool, dependency, added)
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    pool.Add(proto)
    added.add(file.name)


def public_descriptor_pool() -> descriptor_pool.DescriptorPool:
    """The public services' files, health, both reflections, and what they import: nothing else."""
    default = descriptor_pool.Default()
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    for name in [*PUBLIC_SERVICES.values(), HEALTH_SERVICE, REFLECTION_V1ALPHA]:
        _add_with_dependencies(pool, default.FindServiceByName(name).file, added)
    pool.Add(_reflection_v1_file())
    return pool


def add_reflection(server: grpc.aio.Server) -> None:
    servicer = ReflectionServicer(LISTED_SERVICES, pool=public_descriptor_pool())
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        REFLECTION_V1,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))


class PublicHealth(health_pb2_grpc.HealthServicer):
    """grpc.health.v1.Health over the public services, each answered by the service itself."""

    def __init__(self, channels: Mapping[str, grpc.aio.Channel]) -> None:
        # channels: backend name (session, ...) -> a channel to it
        self._stubs = {
            PUBLIC_SERVICES[name]: health_pb2_grpc.HealthStub(channel) for name, channel in channels.items()
        }

    async def _backend_status(self, full_name: str) -> Status:
        try:
            reply = await self._stubs[full_name].Check(
                health_pb2.HealthCheckRequest(service=full_name), timeout=CHECK_TIMEOUT_SECONDS
            )
        except grpc.RpcError:
            return NOT_SERVING  # unreachable, or answering but not for that service
        return reply.status

    async def status_of(self, service: str) -> Status | None:
        """None for a name that is not part of the public API."""
        if service == "":
            statuses = await asyncio.gather(*(self._backend_status(name) for name in self._stubs))
            return SERVING if all(s == SERVING for s in statuses) else NOT_SERVING
        if service in self._stubs:
            return await self._backend_status(service)
        return None

    async def Check(self, request, context):
        status = await self.status_of(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service[:100]!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def List(self, request, context):
        names = ["", *self._stubs]
        statuses = await asyncio.gather(*(self.status_of(name) for name in names))
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in zip(names, statuses, strict=True)
            }
        )

    async def Watch(self, request, context) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        """The status now, then each change (checked every second) until the client leaves."""
        last: Status | None = None
        while True:
            status = await self.status_of(request.service)
            status = SERVICE_UNKNOWN if status is None else status
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_INTERVAL_SECONDS)
