"""Identity, access levels (declared in the protos) and error translation, as every
service gets them."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from libs.common.errors import VidsynthError
from libs.common.grpc_server import ServiceWiring, keyring_from_settings, start_wiring, stop_wiring
from libs.common.identity import require_identity
from libs.common.rate_limit import TokenBucketLimiter
from libs.common.rpc_status import error_from_rpc_error
from tests.support.identities import mesh_metadata, user_metadata
from vidsynth.internal.v1 import session_internal_pb2, session_internal_pb2_grpc
from vidsynth.v1 import cleanup_pb2, cleanup_pb2_grpc, session_pb2, session_pb2_grpc

SESSION_SERVICE = session_pb2.DESCRIPTOR.services_by_name["SessionService"]
SERVICE = SESSION_SERVICE.full_name
SECRET = "do-not-leak-this-detail"
UNLISTED_METHOD = f"/{SERVICE}/NotInTheProtos"


class ProbeServicer(session_pb2_grpc.SessionServiceServicer):
    async def GetSession(self, request, context):
        identity = require_identity()
        if request.session_id == "missing":
            raise VidsynthError("SESSION_NOT_FOUND")
        return session_pb2.Session(session_id=request.session_id, user_id=identity.user_id)

    async def ListSessions(self, request, context):
        raise RuntimeError(SECRET)


class ProbeInternalServicer(session_internal_pb2_grpc.SessionInternalServiceServicer):
    async def RegisterAsset(self, request, context):
        return session_pb2.Session(user_id=require_identity().user_id)


class ProbeCleanupServicer(cleanup_pb2_grpc.CleanupServiceServicer):
    async def RunCleanup(self, request, context):
        return cleanup_pb2.RunCleanupResponse()


def _register(server: grpc.aio.Server) -> None:
    session_pb2_grpc.add_SessionServiceServicer_to_server(ProbeServicer(), server)
    session_internal_pb2_grpc.add_SessionInternalServiceServicer_to_server(ProbeInternalServicer(), server)
    cleanup_pb2_grpc.add_CleanupServiceServicer_to_server(ProbeCleanupServicer(), server)

    # A vidsynth method registered behind the wiring's back, with no declared access.
    async def unlisted(request: bytes, context) -> bytes:
        return b"served"

    handler = grpc.unary_unary_rpc_method_handler(unlisted)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"NotInTheProtos": handler}),)
    )


def probe_wiring() -> ServiceWiring:
    # Access levels come from the protos: RegisterAsset is INTERNAL, RunCleanup ADMIN.
    return ServiceWiring(
        services=[
            SESSION_SERVICE,
            session_internal_pb2.DESCRIPTOR.services_by_name["SessionInternalService"],
            cleanup_pb2.DESCRIPTOR.services_by_name["CleanupService"],
        ],
        register=_register,
    )


@pytest.fixture
async def probe(mesh_settings):
    wiring = probe_wiring()
    server, port, health = await start_wiring(wiring, "127.0.0.1:0", keyring_from_settings(mesh_settings))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    await channel.close()
    await stop_wiring(wiring, server, health, grace=0)


async def _error(call) -> VidsynthError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return error_from_rpc_error(caught.value)


async def test_user_key_identifies_the_caller(probe) -> None:
    stub = session_pb2_grpc.SessionServiceStub(probe)
    reply = await stub.GetSession(
        session_pb2.GetSessionRequest(session_id="s"), metadata=user_metadata("alice")
    )
    assert reply.user_id == "alice"


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer wrong-key"),), (("authorization", "Basic abc"),)],
    ids=["missing", "wrong", "not-bearer"],
)
async def test_missing_or_wrong_key_is_unauthenticated(probe, metadata) -> None:
    stub = session_pb2_grpc.SessionServiceStub(probe)
    error = await _error(stub.GetSession(session_pb2.GetSessionRequest(session_id="s"), metadata=metadata))
    assert error.code == "UNAUTHENTICATED"


async def test_internal_rpc_refuses_user_keys_and_accepts_the_mesh(probe) -> None:
    stub = session_internal_pb2_grpc.SessionInternalServiceStub(probe)
    request = session_internal_pb2.RegisterAssetRequest(session_id="s")
    error = await _error(stub.RegisterAsset(request, metadata=user_metadata("alice")))
    assert error.code == "PERMISSION_DENIED"
    bad_mesh = (("x-vidsynth-mesh-token", "forged"), ("x-vidsynth-user-id", "alice"))
    assert (await _error(stub.RegisterAsset(request, metadata=bad_mesh))).code == "UNAUTHENTICATED"
    reply = await stub.RegisterAsset(request, metadata=mesh_metadata("alice"))
    assert reply.user_id == "alice"


async def test_admin_rpc_needs_the_admin_role(probe) -> None:
    stub = cleanup_pb2_grpc.CleanupServiceStub(probe)
    request = cleanup_pb2.RunCleanupRequest()
    assert (await _error(stub.RunCleanup(request, metadata=user_metadata("bob")))).code == (
        "PERMISSION_DENIED"
    )
    await stub.RunCleanup(request, metadata=user_metadata("root"))


async def test_a_method_with_no_declared_access_is_refused_to_everyone(probe) -> None:
    call = probe.unary_unary(UNLISTED_METHOD)
    for metadata in (user_metadata("root"), mesh_metadata("root")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(b"", metadata=metadata, timeout=10)
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert error_from_rpc_error(caught.value).code == "PERMISSION_DENIED"


async def test_catalogued_errors_travel_with_their_code(probe) -> None:
    stub = session_pb2_grpc.SessionServiceStub(probe)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSession(
            session_pb2.GetSessionRequest(session_id="missing"), metadata=user_metadata("bob")
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert error_from_rpc_error(caught.value).code == "SESSION_NOT_FOUND"


async def test_crashes_answer_internal_without_leaking_details(probe) -> None:
    stub = session_pb2_grpc.SessionServiceStub(probe)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListSessions(session_pb2.ListSessionsRequest(), metadata=user_metadata("bob"))
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert SECRET not in (caught.value.details() or "")
    assert SECRET not in str(caught.value.trailing_metadata())
    assert error_from_rpc_error(caught.value).code == "INTERNAL"


async def test_unimplemented_rpcs_answer_the_catalogued_code(probe) -> None:
    stub = session_pb2_grpc.SessionServiceStub(probe)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.TouchSession(session_pb2.TouchSessionRequest(), metadata=user_metadata("bob"))
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert error_from_rpc_error(caught.value).code == "NOT_IMPLEMENTED"


async def test_health_and_reflection_need_no_credentials(probe) -> None:
    reply = await health_pb2_grpc.HealthStub(probe).Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stream = reflection_pb2_grpc.ServerReflectionStub(probe).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    async for response in stream:
        names = {s.name for s in response.list_services_response.service}
        break
    assert {SERVICE, "grpc.health.v1.Health"} <= names


async def test_api_keys_are_rate_limited_per_user_but_the_mesh_is_not(mesh_settings) -> None:
    wiring = probe_wiring()
    limiter = TokenBucketLimiter(rate=0.5, burst=3)
    server, port, health = await start_wiring(
        wiring, "127.0.0.1:0", keyring_from_settings(mesh_settings), limiter
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = session_pb2_grpc.SessionServiceStub(channel)
            request = session_pb2.GetSessionRequest(session_id="s")
            for _ in range(3):
                await stub.GetSession(request, metadata=user_metadata("alice"))
            error = await _error(stub.GetSession(request, metadata=user_metadata("alice")))
            assert error.code == "RATE_LIMITED"
            assert error.retry_after_seconds is not None and error.retry_after_seconds > 0
            await stub.GetSession(request, metadata=user_metadata("bob"))  # another key's own bucket
            for _ in range(5):
                await stub.GetSession(request, metadata=mesh_metadata("alice"))
    finally:
        await stop_wiring(wiring, server, health, grace=0)
