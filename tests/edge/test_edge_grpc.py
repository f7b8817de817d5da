"""The edge's one gRPC address in front of a real `vidsynth up` mesh: every public service
routed to its backend, reflection and health for the whole API, refusals with ErrorInfo
(never a hang) for unknown and internal paths and past the per-address cap."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from libs.common.rpc_status import error_from_rpc_error
from tests.edge.mesh import CONNECTION_CAP, LISTED, PUBLIC_API, backend
from tests.support.identities import mesh_metadata, user_metadata
from vidsynth.internal.v1 import session_internal_pb2, session_internal_pb2_grpc
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

pytestmark = pytest.mark.slow


@pytest.fixture
def channel(mesh) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(mesh.grpc_target) as channel:
        yield channel


def test_every_public_service_answers_at_the_one_grpc_address(mesh, channel) -> None:
    md = user_metadata("alice")
    session = session_pb2_grpc.SessionServiceStub(channel).CreateSession(
        session_pb2.CreateSessionRequest(display_name="through the edge"), metadata=md, timeout=10
    )
    assert session.session_id.startswith("ses_")
    policy = validator_pb2_grpc.ValidatorServiceStub(channel).GetUploadPolicy(
        validator_pb2.GetUploadPolicyRequest(), metadata=md, timeout=10
    )
    assert policy.kinds
    capabilities = stage_runner_pb2_grpc.StageRunnerServiceStub(channel).GetCapabilities(
        stage_runner_pb2.GetCapabilitiesRequest(), metadata=md, timeout=10
    )
    assert capabilities.stages
    progress = progress_pb2_grpc.ProgressServiceStub(channel).GetProgress(
        progress_pb2.GetProgressRequest(session_id=session.session_id), metadata=md, timeout=10
    )
    assert progress.session_id == session.session_id
    health = cleanup_pb2_grpc.CleanupServiceStub(channel).GetResourceHealth(
        cleanup_pb2.GetResourceHealthRequest(), metadata=md, timeout=10
    )
    assert health.level
    # Errors cross the edge as the rich error model.
    with pytest.raises(grpc.RpcError) as caught:
        session_pb2_grpc.SessionServiceStub(channel).GetSession(
            session_pb2.GetSessionRequest(session_id="ses_000000000000000000000000"), metadata=md, timeout=10
        )
    assert error_from_rpc_error(caught.value).code == "SESSION_NOT_FOUND"


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/vidsynth.internal.v1.SessionInternalService/UpdateSessionState", "NOT_IMPLEMENTED"),
        ("/vidsynth.internal.v1.ProgressInternalService/PublishEvents", "NOT_IMPLEMENTED"),
        ("/vidsynth.v2.SessionService/CreateSession", "NOT_IMPLEMENTED"),
        ("/no.such.Service/Method", "NOT_IMPLEMENTED"),
        ("/vidsynth.v1.SessionService%2FCreateSession", "NOT_IMPLEMENTED"),
        ("/vidsynth.v1.SessionService/./CreateSession", "NOT_IMPLEMENTED"),
        # Paths nginx cannot even parse (above the root, a NUL) answer the same.
        (
            "/vidsynth.v1.SessionService/../../vidsynth.internal.v1.SessionInternalService/X",
            "NOT_IMPLEMENTED",
        ),
        ("/vidsynth.v1.SessionService/%00", "NOT_IMPLEMENTED"),
    ],
)
def test_unknown_and_internal_paths_are_refused_at_once(channel, path, code) -> None:
    call = channel.unary_unary(path, request_serializer=bytes, response_deserializer=bytes)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        call(b"", metadata=user_metadata("alice"), timeout=10)
    error = error_from_rpc_error(caught.value)  # ErrorInfo, as the services send it
    assert error.code == code
    assert caught.value.code() == error.spec.grpc_code
    assert time.monotonic() - started < 2.0


async def test_an_internal_rpc_is_refused_at_the_edge_even_with_the_mesh_credential(mesh) -> None:
    """The backend serves it (to the mesh); the edge never routes it."""
    async with (
        grpc.aio.insecure_channel(mesh.grpc_target) as edge,
        grpc.aio.insecure_channel(backend(mesh, "session")) as session_backend,
    ):
        session = await session_pb2_grpc.SessionServiceStub(edge).CreateSession(
            session_pb2.CreateSessionRequest(), metadata=user_metadata("alice"), timeout=10
        )
        request = session_internal_pb2.BatchGetSessionsRequest(session_ids=[session.session_id])
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await session_internal_pb2_grpc.SessionInternalServiceStub(edge).BatchGetSessions(
                request, metadata=mesh_metadata(), timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert error_from_rpc_error(caught.value).code == "NOT_IMPLEMENTED"
        direct = await session_internal_pb2_grpc.SessionInternalServiceStub(session_backend).BatchGetSessions(
            request, metadata=mesh_metadata(), timeout=10
        )
        assert [s.session_id for s in direct.sessions] == [session.session_id]


def reflection_call(channel: grpc.Channel, version: str, request: reflection_pb2.ServerReflectionRequest):
    # v1 and v1alpha have the same messages and field numbers: one set of classes reads both.
    stream = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    return next(iter(stream(iter([request]), timeout=10)))


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_lists_exactly_the_public_api(channel, version) -> None:
    listed = reflection_call(channel, version, reflection_pb2.ServerReflectionRequest(list_services=""))
    assert {s.name for s in listed.list_services_response.service} == LISTED
    for service in sorted(LISTED):
        found = reflection_call(
            channel, version, reflection_pb2.ServerReflectionRequest(file_containing_symbol=service)
        )
        assert found.file_descriptor_response.file_descriptor_proto, service
    hidden = reflection_call(
        channel,
        version,
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="vidsynth.internal.v1.SessionInternalService"
        ),
    )
    assert hidden.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_health_covers_the_api_and_each_public_service(mesh, channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    for name in ["", *sorted(PUBLIC_API)]:
        assert stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status == serving, name
    listed = stub.List(health_pb2.HealthListRequest(), timeout=10).statuses
    assert set(listed) == {"", *PUBLIC_API}
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(
            health_pb2.HealthCheckRequest(service="vidsynth.internal.v1.SessionInternalService"), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    # A stopped service shows as NOT_SERVING, by name and overall; the others stay SERVING.
    cleanup_pid = mesh.pids()["cleanup"]
    os.kill(cleanup_pid, signal.SIGSTOP)
    try:
        check = lambda name: stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status  # noqa: E731
        assert check("vidsynth.v1.CleanupService") == health_pb2.HealthCheckResponse.NOT_SERVING
        assert check("") == health_pb2.HealthCheckResponse.NOT_SERVING
        assert check("vidsynth.v1.SessionService") == serving
    finally:
        os.kill(cleanup_pid, signal.SIGCONT)
    assert stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == serving


async def test_concurrent_grpc_calls_per_address_are_capped(mesh) -> None:
    """On HTTP/2 every call counts: past the cap a call is refused with RATE_LIMITED (and
    RetryInfo), not left waiting; the streams already open carry on."""
    async with grpc.aio.insecure_channel(mesh.grpc_target) as channel:
        session = await session_pb2_grpc.SessionServiceStub(channel).CreateSession(
            session_pb2.CreateSessionRequest(), metadata=user_metadata("alice"), timeout=10
        )
        progress = progress_pb2_grpc.ProgressServiceStub(channel)
        streams = [
            progress.Subscribe(
                progress_pb2.SubscribeRequest(session_id=session.session_id), metadata=user_metadata("alice")
            )
            for _ in range(CONNECTION_CAP)
        ]
        try:
            await asyncio.gather(*(stream.initial_metadata() for stream in streams))
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await progress.GetProgress(
                    progress_pb2.GetProgressRequest(session_id=session.session_id),
                    metadata=user_metadata("alice"),
                    timeout=10,
                )
            error = error_from_rpc_error(caught.value)
            assert (error.code, caught.value.code()) == ("RATE_LIMITED", grpc.StatusCode.RESOURCE_EXHAUSTED)
            assert error.retry_after_seconds == 1
            assert time.monotonic() - started < 2
            assert all(stream.done() is False for stream in streams)
        finally:
            for stream in streams:
                stream.cancel()
    async with grpc.aio.insecure_channel(mesh.grpc_target) as channel:  # capacity comes back
        deadline = time.monotonic() + 5
        while True:
            try:
                await session_pb2_grpc.SessionServiceStub(channel).ListSessions(
                    session_pb2.ListSessionsRequest(), metadata=user_metadata("alice"), timeout=10
                )
                break
            except grpc.aio.AioRpcError as error:
                assert error_from_rpc_error(error).code == "RATE_LIMITED" and time.monotonic() < deadline
                await asyncio.sleep(0.1)


def test_the_api_key_is_checked_behind_the_edge(channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        session_pb2_grpc.SessionServiceStub(channel).ListSessions(
            session_pb2.ListSessionsRequest(), metadata=(("authorization", "Bearer wrong-key"),), timeout=10
        )
    assert error_from_rpc_error(caught.value).code == "UNAUTHENTICATED"
