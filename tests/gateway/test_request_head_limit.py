"""The real gateway server (uvicorn + httptools, as `vidsynth up` runs it) bounds a
request's head: past 64 KiB of request line and headers it answers 431
REQUEST_HEADERS_TOO_LARGE and closes, while bodies and normal heads pass untouched."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
import uvicorn

from services.gateway.app import create_app
from services.gateway.http_protocol import MAX_REQUEST_HEAD_BYTES
from services.gateway.server import uvicorn_config
from tests.support.identities import bearer
from tests.support.ports import free_port

AUTHORIZATION = bearer("alice")["Authorization"]


@pytest.fixture
async def gateway_port(session_service, in_process_mesh, gateway_settings):
    settings = in_process_mesh.settings.model_copy(
        update={"http_host": "127.0.0.1", "http_port": free_port()}
    )
    app = create_app(settings, gateway_settings)
    server = uvicorn.Server(uvicorn_config(app, settings))
    task = asyncio.create_task(server.serve())
    for _ in range(400):
        if server.started:
            break
        await asyncio.sleep(0.025)
    yield settings.http_port
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)
    await app.state.gateway.close()


async def exchange(port: int, request: bytes) -> tuple[int, dict, bytes]:
    """Sends `request` (as far as the server lets it) and reads one response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        with contextlib.suppress(ConnectionError):
            for start in range(0, len(request), 65536):
                writer.write(request[start : start + 65536])
                await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers["content-length"]))
        return int(lines[0].split()[1]), headers, body
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def one_header(size: int) -> str:
    return f"X-Filler: {'a' * size}\r\n"


def many_headers(total: int) -> str:
    return "".join(f"X-Filler-{i}: {'a' * 40}\r\n" for i in range(total // 50))


@pytest.mark.parametrize(
    "headers",
    [
        one_header(MAX_REQUEST_HEAD_BYTES + 1024),
        one_header(8 * 1024 * 1024),
        many_headers(MAX_REQUEST_HEAD_BYTES + 4096),
    ],
    ids=["just-over", "8-MB-header", "many-small-headers"],
)
async def test_an_oversized_head_is_refused_with_431(gateway_port, headers):
    request = f"GET /healthz HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()
    status, headers, body = await exchange(gateway_port, request)
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    problem = json.loads(body)
    assert problem["code"] == "REQUEST_HEADERS_TOO_LARGE"
    assert problem["status"] == 431
    assert problem["request_id"] == headers["x-request-id"]


async def test_a_large_but_allowed_head_and_keep_alive_requests_pass(gateway_port):
    filler = "a" * (MAX_REQUEST_HEAD_BYTES // 2)
    request = f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway_port)
    try:
        for _ in range(3):  # one connection, several requests: the count starts over each time
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            assert head.startswith(b"HTTP/1.1 200")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_body_larger_than_the_head_limit_is_not_counted_as_head(gateway_port):
    body = json.dumps({"display_name": "x" * (2 * MAX_REQUEST_HEAD_BYTES)}).encode()
    request = (
        f"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTHORIZATION}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    status, _, problem = await exchange(gateway_port, request)
    # The body cap (4 KiB in these tests) answers, not the head limit.
    assert (status, json.loads(problem)["code"]) == (413, "REQUEST_TOO_LARGE")
