"""GET /v1/sessions/{id}/ws: the same JSON as SSE, resume by ?after=, refusals before accept."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.identities import bearer, mesh_metadata
from tests.support.synthetic_events import job_events, progress_ticks, publish
from vidsynth.internal.v1 import progress_internal_pb2


def ws_url(base: str, session_id: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{base.replace('http://', 'ws://')}/v1/sessions/{session_id}/ws" + (f"?{query}" if query else "")


async def test_websocket_replays_then_lives_and_resumes(progress_mesh, gateway_url):
    session_id = await progress_mesh.create_session()
    job = job_events()
    await publish(progress_mesh.channel, session_id, job[:5], batch_size=5)
    async with connect(ws_url(gateway_url, session_id), additional_headers=bearer("alice")) as ws:
        first = [json.loads(await ws.recv()) for _ in range(3)]
    assert [m["seq"] for m in first] == [1, 2, 3]
    assert first[0]["type"] == "job.queued"

    async with connect(
        ws_url(gateway_url, session_id, after="3", until_terminal="true"), additional_headers=bearer("alice")
    ) as ws:
        publisher = asyncio.create_task(publish(progress_mesh.channel, session_id, job[5:], batch_size=4))
        rest = [json.loads(message) async for message in ws]
        await publisher
        assert ws.close_code == 1000
    assert [m["seq"] for m in rest] == list(range(4, len(job) + 1))
    assert rest[-1]["type"] == "job.completed"


async def test_websocket_with_stream_token(progress_mesh, gateway_url):
    session_id = await progress_mesh.create_session()
    other = await progress_mesh.create_session()
    await publish(progress_mesh.channel, session_id, progress_ticks(2), batch_size=2)
    async with httpx.AsyncClient(timeout=30) as client:
        minted = await client.post(
            f"{gateway_url}/v1/sessions/{session_id}/stream-token", headers=bearer("alice")
        )
    token = minted.json()["token"]
    async with connect(ws_url(gateway_url, session_id, token=token)) as ws:
        assert json.loads(await ws.recv())["seq"] == 1
    with pytest.raises(InvalidStatus) as caught:
        async with connect(ws_url(gateway_url, other, token=token)):
            pass
    assert caught.value.response.status_code == 401
    assert json.loads(caught.value.response.body)["code"] == "STREAM_TOKEN_INVALID"


@pytest.mark.parametrize(
    ("user", "status", "code"), [("bob", 404, "SESSION_NOT_FOUND"), (None, 401, "UNAUTHENTICATED")]
)
async def test_websocket_refusals_are_http_problems(progress_mesh, gateway_url, user, status, code):
    session_id = await progress_mesh.create_session("alice")
    with pytest.raises(InvalidStatus) as caught:
        async with connect(ws_url(gateway_url, session_id), additional_headers=bearer(user) if user else {}):
            pass
    assert caught.value.response.status_code == status
    assert json.loads(caught.value.response.body)["code"] == code


async def test_websocket_stream_error_then_close(progress_mesh, gateway_url):
    session_id = await progress_mesh.create_session()
    await publish(progress_mesh.channel, session_id, progress_ticks(1))
    async with connect(ws_url(gateway_url, session_id), additional_headers=bearer("alice")) as ws:
        assert json.loads(await ws.recv())["seq"] == 1
        await progress_mesh.progress_internal.DeleteSessionEvents(
            progress_internal_pb2.DeleteSessionEventsRequest(session_id=session_id),
            metadata=mesh_metadata(),
            timeout=10,
        )
        error = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4404
    assert error["type"] == "error"
    assert error["error"]["code"] == "SESSION_NOT_FOUND"


async def test_websocket_disconnect_cancels_upstream(progress_mesh, gateway_url):
    session_id = await progress_mesh.create_session()
    broker = progress_mesh.event_log.broker
    async with connect(ws_url(gateway_url, session_id), additional_headers=bearer("alice")):
        for _ in range(400):
            if broker.subscriber_count(session_id) == 1:
                break
            await asyncio.sleep(0.025)
        assert broker.subscriber_count(session_id) == 1
    for _ in range(400):
        if broker.subscriber_count(session_id) == 0:
            break
        await asyncio.sleep(0.025)
    assert broker.subscriber_count(session_id) == 0
