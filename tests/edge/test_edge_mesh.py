"""The edge in front of a real `vidsynth up` mesh: one gRPC address for the whole public
API, reflection and health there, catalogued refusals (never a hang), slow heads dropped,
connections per address capped, real client addresses passed on, streams unbuffered.

The mesh runs with short edge timeouts (2 s head, 3 s body) and a small connection cap so
the limits show within seconds; the shipped defaults are checked in test_edge_config.py.
Other client addresses are other loopback addresses (127.0.0.2, ...), which Linux routes
to the same host.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
import websockets
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from libs.common.rpc_status import error_from_rpc_error
from libs.common.settings import SERVICE_PORT_OFFSETS
from tests.support.identities import API_KEYS, bearer, mesh_metadata, user_metadata
from tests.support.mesh_process import MeshProcess
from tests.support.synthetic_events import job_events, publish
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

HEAD_TIMEOUT = 2.0
BODY_TIMEOUT = 3.0
CONNECTION_CAP = 6
GATEWAY_BURST = 15
PUBLIC_API = {
    "vidsynth.v1.SessionService",
    "vidsynth.v1.ValidatorService",
    "vidsynth.v1.StageRunnerService",
    "vidsynth.v1.ProgressService",
    "vidsynth.v1.CleanupService",
}
LISTED = PUBLIC_API | {
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory) -> Iterator[MeshProcess]:
    mesh = MeshProcess(
        tmp_path_factory.mktemp("edge") / "var",
        extra_env={
            "VIDSYNTH_EDGE_HEADER_TIMEOUT_SECONDS": str(HEAD_TIMEOUT),
            "VIDSYNTH_EDGE_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
            "VIDSYNTH_EDGE_MAX_CONNECTIONS_PER_ADDRESS": str(CONNECTION_CAP),
            # Unauthenticated requests are limited per client address: small, to see it quickly.
            "VIDSYNTH_GATEWAY_RATE_LIMIT_BURST": str(GATEWAY_BURST),
            "VIDSYNTH_GATEWAY_RATE_LIMIT_PER_SECOND": "0.5",
        },
    )
    mesh.wait_up()
    yield mesh
    mesh.stop()


@pytest.fixture
def channel(mesh) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(mesh.grpc_target) as channel:
        yield channel


def backend(mesh: MeshProcess, service: str) -> str:
    return f"127.0.0.1:{mesh.grpc_port + SERVICE_PORT_OFFSETS[service]}"


def raw_connection(mesh: MeshProcess, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", mesh.http_port), timeout=15, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body; status 0 when the peer closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def get(mesh: MeshProcess, source: str, path: str, extra: str = "") -> tuple[int, dict[str, str], bytes]:
    with raw_connection(mesh, source) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n".encode())
        return read_response(sock)


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
        # A path climbing above the root is refused by nginx's parser before any routing
        # (HTTP 400, which gRPC clients read as INTERNAL): refused at once all the same.
        (
            "/vidsynth.v1.SessionService/../../vidsynth.internal.v1.SessionInternalService/X",
            "INTERNAL",
        ),
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


def test_a_body_over_the_upload_cap_is_refused_before_it_is_sent(mesh) -> None:
    with raw_connection(mesh, "127.0.0.1") as sock:
        sock.sendall(
            b"POST /v1/sessions/ses_x/assets/voice HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {API_KEYS['alice']}\r\n".encode()
            + b"Content-Type: audio/wav\r\nContent-Length: 60000000\r\n\r\n"
        )
        status, headers, body = read_response(sock)
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["code"] == "REQUEST_TOO_LARGE" and problem["status"] == 413
    assert problem["request_id"] == headers["x-request-id"] and len(problem["request_id"]) == 32


def test_an_overlong_header_line_answers_431(mesh) -> None:
    status, _, body = get(mesh, "127.0.0.1", "/healthz", f"X-Filler: {'a' * 20000}\r\n")
    assert status == 431
    assert json.loads(body)["code"] == "REQUEST_HEADERS_TOO_LARGE"


def test_half_sent_heads_are_dropped_while_other_clients_are_answered(mesh) -> None:
    """Issue 15 item 6 (slowloris): heads that never complete are closed after the head
    timeout; a client elsewhere is answered meanwhile."""
    sockets = [raw_connection(mesh, "127.0.0.2") for _ in range(40)]
    started = time.monotonic()
    for sock in sockets:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    status, _, body = get(mesh, "127.0.0.3", "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert time.monotonic() - started < HEAD_TIMEOUT
    closed_after = []
    for sock in sockets:
        with sock:
            answer = sock.recv(4096)  # blocks until the edge gives up on the head
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
            closed_after.append(time.monotonic() - started)
    assert min(closed_after) >= HEAD_TIMEOUT - 0.5 and max(closed_after) <= HEAD_TIMEOUT + 3


def test_connections_per_address_are_capped_while_another_address_is_served(mesh) -> None:
    held = []
    for _ in range(CONNECTION_CAP):  # requests in progress: heads in, bodies trickling
        sock = raw_connection(mesh, "127.0.0.4")
        sock.sendall(
            b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        held.append(sock)
    try:
        time.sleep(0.3)
        status, headers, body = get(mesh, "127.0.0.4", "/healthz")
        assert status == 429
        assert headers["retry-after"] == "1"
        assert json.loads(body)["code"] == "RATE_LIMITED"
        assert get(mesh, "127.0.0.5", "/healthz")[0] == 200
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while get(mesh, "127.0.0.4", "/healthz")[0] != 200:
        assert time.monotonic() < deadline, "the address stayed capped after its connections closed"
        time.sleep(0.1)


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


def test_a_stalled_body_is_cut_after_the_body_timeout(mesh) -> None:
    with raw_connection(mesh, "127.0.0.6") as sock:
        sock.sendall(
            b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        started = time.monotonic()
        status, _, _ = read_response(sock)
        waited = time.monotonic() - started
    assert status in (0, 408)  # closed, or 408 problem+json
    assert BODY_TIMEOUT - 0.5 <= waited <= BODY_TIMEOUT + 3


def test_the_gateway_sees_each_client_address_not_the_edge(mesh) -> None:
    """Unauthenticated requests are rate-limited per client address at the gateway: one
    address running out leaves another untouched, and a forged X-Forwarded-For is ignored."""
    codes = [get(mesh, "127.0.0.7", "/v1/sessions")[0] for _ in range(GATEWAY_BURST + 5)]
    assert codes[0] == 401 and codes[-1] == 429, codes
    status, _, body = get(mesh, "127.0.0.8", "/v1/sessions")
    assert status == 401 and json.loads(body)["code"] == "UNAUTHENTICATED"
    forged = get(mesh, "127.0.0.9", "/v1/sessions", "X-Forwarded-For: 127.0.0.7\r\nX-Real-IP: 127.0.0.7\r\n")
    assert forged[0] == 401


async def test_sse_websocket_and_grpc_streams_pass_through_unbuffered(mesh) -> None:
    async with httpx.AsyncClient(base_url=mesh.url, headers=bearer("alice"), timeout=30) as http:
        session_id = (await http.post("/v1/sessions", json={})).json()["session_id"]
        events = job_events()[:4]
        sse_seen: list[int] = []
        ws_seen: list[int] = []
        grpc_seen: list[int] = []

        async def follow_sse() -> None:
            async with http.stream("GET", f"/v1/sessions/{session_id}/events") as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("id: "):
                        sse_seen.append(int(line[4:]))

        async def follow_ws() -> None:
            url = f"ws://127.0.0.1:{mesh.http_port}/v1/sessions/{session_id}/ws"
            async with websockets.connect(url, additional_headers=bearer("alice")) as ws:
                async for message in ws:
                    ws_seen.append(json.loads(message)["seq"])

        async def follow_grpc() -> None:
            async with grpc.aio.insecure_channel(mesh.grpc_target) as channel:
                call = progress_pb2_grpc.ProgressServiceStub(channel).Subscribe(
                    progress_pb2.SubscribeRequest(session_id=session_id), metadata=user_metadata("alice")
                )
                async for event in call:
                    grpc_seen.append(event.seq)

        followers = [asyncio.create_task(f()) for f in (follow_sse, follow_ws, follow_grpc)]
        try:
            # Idle past the head and body timeouts first: open streams are not cut by them.
            await asyncio.sleep(BODY_TIMEOUT + 1.5)
            async with grpc.aio.insecure_channel(backend(mesh, "progress")) as publisher:
                for index, event in enumerate(events, start=1):
                    await publish(publisher, session_id, [event])
                    deadline = time.monotonic() + 2.0  # each event through before the next is sent
                    while not all(index in seen for seen in (sse_seen, ws_seen, grpc_seen)):
                        assert time.monotonic() < deadline, (index, sse_seen, ws_seen, grpc_seen)
                        await asyncio.sleep(0.01)
        finally:
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
    assert sse_seen == ws_seen == grpc_seen == [1, 2, 3, 4]
    assert all(task.exception() is None for task in followers if not task.cancelled())


def test_the_api_key_is_checked_behind_the_edge(channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        session_pb2_grpc.SessionServiceStub(channel).ListSessions(
            session_pb2.ListSessionsRequest(), metadata=(("authorization", "Bearer wrong-key"),), timeout=10
        )
    assert error_from_rpc_error(caught.value).code == "UNAUTHENTICATED"
