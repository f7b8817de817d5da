"""Webhooks against a local receiver, and progress publishing that survives an outage."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from dataclasses import dataclass, field

import grpc
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

import services.progress.server
import services.session.server
from libs.common.clients import MeshClients
from libs.common.errors import VidsynthError
from libs.common.grpc_server import keyring_from_settings, start_wiring, stop_wiring
from services.stage_runner.publisher import ProgressPublisher
from services.stage_runner.webhooks import WebhookSender, check_webhook_url
from tests.support.identities import user_metadata
from tests.support.ports import free_port
from vidsynth.v1 import common_pb2, progress_pb2, progress_pb2_grpc, session_pb2, session_pb2_grpc

SECRET = "webhook-test-secret"


@dataclass
class Receiver:
    url: str
    received: list[tuple[dict, bytes]] = field(default_factory=list)
    failures_left: int = 0
    hits: int = 0


@pytest.fixture
async def receiver():
    state = Receiver("")

    async def hook(request: Request) -> Response:
        state.hits += 1
        body = await request.body()
        if state.failures_left > 0:
            state.failures_left -= 1
            return JSONResponse({"error": "try later"}, status_code=503)
        state.received.append((dict(request.headers), body))
        return JSONResponse({"ok": True})

    async def moved(request: Request) -> Response:
        state.hits += 1
        return RedirectResponse("/hook", status_code=307)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"]), Route("/moved", moved, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    for _ in range(400):
        if server.started:
            break
        await asyncio.sleep(0.025)
    state.url = f"http://127.0.0.1:{port}"
    yield state
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)


def verify(headers: dict, body: bytes) -> bool:
    timestamp = headers["x-vidsynth-timestamp"]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["x-vidsynth-signature"], f"sha256={expected}")


async def test_delivery_is_signed_and_retried(receiver):
    receiver.failures_left = 2
    sender = WebhookSender(SECRET, max_attempts=4, backoff_seconds=0.05, timeout_seconds=5)
    try:
        assert await sender.deliver(
            receiver.url + "/hook", "job.completed", {"type": "job.completed", "n": 1}
        )
    finally:
        await sender.close()
    assert receiver.hits == 3 and len(receiver.received) == 1
    headers, body = receiver.received[0]
    assert verify(headers, body) and headers["x-vidsynth-event"] == "job.completed"
    assert json.loads(body) == {"type": "job.completed", "n": 1}


async def test_redirects_are_not_followed(receiver):
    sender = WebhookSender(SECRET, max_attempts=3, backoff_seconds=0.05, timeout_seconds=5)
    try:
        assert not await sender.deliver(receiver.url + "/moved", "job.failed", {"type": "job.failed"})
    finally:
        await sender.close()
    assert receiver.hits == 1 and receiver.received == []


def test_only_allowed_hosts_are_accepted():
    allowed = frozenset({"hooks.example.com", "127.0.0.1:8999"})
    check_webhook_url("https://hooks.example.com/x", allowed, True)
    check_webhook_url("http://127.0.0.1:8999/x", allowed, True)
    for url in (
        "https://evil.example.com/x",
        "http://127.0.0.1:9000/x",
        "ftp://hooks.example.com/x",
        "https://user:pw@hooks.example.com/x",
        "hooks.example.com/x",
    ):
        with pytest.raises(VidsynthError) as caught:
            check_webhook_url(url, allowed, True)
        assert caught.value.code == "WEBHOOK_URL_NOT_ALLOWED"
    with pytest.raises(VidsynthError):  # no secret configured: nothing could be signed
        check_webhook_url("https://hooks.example.com/x", allowed, False)


async def test_job_completion_posts_the_webhook(start_mesh, receiver):
    host = receiver.url.removeprefix("http://")
    mesh = await start_mesh(
        stage_runner_webhook_allowed_hosts=host,
        stage_runner_webhook_secret=SECRET,
        stage_runner_webhook_backoff_seconds=0.05,
    )
    receiver.failures_left = 1
    session_id = await mesh.ready_session()
    job = await mesh.start(session_id, webhook_url=receiver.url + "/hook")
    await mesh.wait_done(job.job_id)
    for _ in range(200):
        if receiver.received:
            break
        await asyncio.sleep(0.05)
    headers, body = receiver.received[0]
    assert verify(headers, body)
    payload = json.loads(body)
    assert payload["type"] == "job.completed"
    assert payload["job"]["job_id"] == job.job_id and payload["job"]["state"] == "completed"


async def test_publisher_buffers_through_an_outage(in_process_mesh, mesh_settings):
    session = await in_process_mesh.start("session", services.session.server.build)
    async with grpc.aio.insecure_channel(session.address) as channel:
        created = await session_pb2_grpc.SessionServiceStub(channel).CreateSession(
            session_pb2.CreateSessionRequest(), metadata=user_metadata("alice"), timeout=10
        )
    progress_port = free_port()
    settings = in_process_mesh.settings.model_copy(update={"progress_addr": f"127.0.0.1:{progress_port}"})
    clients = MeshClients(settings)
    publisher = ProgressPublisher(clients, max_buffer=15)
    publisher.start()
    for percent in range(20):
        publisher.publish(
            progress_pb2.ProgressEvent(
                type=progress_pb2.EVENT_TYPE_STAGE_PROGRESS,
                session_id=created.session_id,
                job_id="job_" + "1" * 24,
                stage=common_pb2.STAGE_VOICE,
                stage_percent=percent,
            )
        )
    publisher.publish(
        progress_pb2.ProgressEvent(
            type=progress_pb2.EVENT_TYPE_JOB_COMPLETED,
            session_id=created.session_id,
            job_id="job_" + "1" * 24,
        )
    )
    assert not await publisher.flush(0.5)  # ProgressService is down: nothing delivered, nothing blocked
    assert publisher.dropped == 6  # bounded: the oldest progress events gave way

    wiring = await services.progress.server.build(settings)
    server, _, health = await start_wiring(
        wiring, f"127.0.0.1:{progress_port}", keyring_from_settings(settings)
    )
    try:
        assert await publisher.flush(20)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{progress_port}") as channel:
            stream = progress_pb2_grpc.ProgressServiceStub(channel).Subscribe(
                progress_pb2.SubscribeRequest(session_id=created.session_id, until_terminal=True),
                metadata=user_metadata("alice"),
                timeout=20,
            )
            events = [e async for e in stream]
        assert [e.stage_percent for e in events[:-1]] == list(range(6, 20))
        assert events[-1].type == progress_pb2.EVENT_TYPE_JOB_COMPLETED
    finally:
        await publisher.stop()
        await clients.close()
        await stop_wiring(wiring, server, health, grace=0)
