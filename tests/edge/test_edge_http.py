"""The edge's HTTP address in front of a real `vidsynth up` mesh: body cap, long header
lines, slow heads (issue 15 item 6), stalled bodies, the per-address cap, real client
addresses at the gateway, and SSE / WebSocket / gRPC streams passed on unbuffered."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import httpx
import pytest
import websockets

from tests.edge.mesh import (
    BODY_TIMEOUT,
    CONNECTION_CAP,
    GATEWAY_BURST,
    HEAD_TIMEOUT,
    backend,
    get,
    raw_connection,
    read_response,
)
from tests.support.identities import API_KEYS, bearer, user_metadata
from tests.support.synthetic_events import job_events, publish
from vidsynth.v1 import progress_pb2, progress_pb2_grpc

pytestmark = pytest.mark.slow


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


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/sessions/ses_%00", 400, "INVALID_ARGUMENT"),  # nginx refuses a NUL before any route
        ("/v1/sessions/%2e%2e%2f%2e%2e%2f%2e%2e%2fx", 400, "INVALID_ARGUMENT"),  # above the root
        ("/__vidsynth_edge/bad_request", 404, "NOT_FOUND"),  # the edge's own error page, from outside
        ("/v1/sessions/ses_x", 400, "INVALID_ID"),  # parsed by nginx: the gateway's answer
    ],
)
def test_requests_nginx_refuses_itself_answer_problem_json(mesh, path, status, code) -> None:
    answer, headers, body = get(mesh, "127.0.0.1", path, f"Authorization: Bearer {API_KEYS['alice']}\r\n")
    assert (answer, headers["content-type"]) == (status, "application/problem+json")
    assert json.loads(body)["code"] == code


@pytest.mark.parametrize(("path", "allow"), [("/healthz", "GET"), ("/v1/sessions/ses_x", "DELETE, GET")])
def test_trace_which_nginx_refuses_itself_answers_405_with_allow(mesh, path, allow) -> None:
    """nginx turns TRACE away before any location; the gateway still gives the answer RFC 9110
    asks for (405 with Allow listing the path's methods), as problem+json."""
    with raw_connection(mesh, "127.0.0.1") as sock:
        sock.sendall(f"TRACE {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        status, headers, body = read_response(sock)
    assert (status, headers["content-type"], headers["allow"]) == (405, "application/problem+json", allow)
    assert json.loads(body)["code"] == "METHOD_NOT_ALLOWED"


def test_an_overlong_header_line_answers_431(mesh) -> None:
    status, _, body = get(mesh, "127.0.0.1", "/healthz", f"X-Filler: {'a' * 20000}\r\n")
    assert status == 431
    assert json.loads(body)["code"] == "REQUEST_HEADERS_TOO_LARGE"


def test_half_sent_heads_are_dropped_while_other_clients_are_answered(mesh) -> None:
    """Issue 15 item 6 (slowloris): heads that never complete are closed after the head
    timeout; a client elsewhere is answered meanwhile."""
    sockets = [raw_connection(mesh, "127.0.0.2") for _ in range(300)]
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
