"""GET /v1/sessions/{id}/events over a real uvicorn gateway."""

from __future__ import annotations

import asyncio

import httpx

from libs.common.ids import new_id
from services.gateway import routes_events
from services.gateway.config import GatewaySettings
from tests.progress.conftest import eventually
from tests.progress.sse_client import events, frames
from tests.support.identities import bearer, mesh_metadata
from tests.support.synthetic_events import job_events, progress_ticks, publish
from vidsynth.internal.v1 import progress_internal_pb2


def events_url(base: str, session_id: str) -> str:
    return f"{base}/v1/sessions/{session_id}/events"


async def wait_for_subscribers(progress_mesh, session_id: str, count: int) -> None:
    broker = progress_mesh.event_log.broker
    for _ in range(800):
        if broker.subscriber_count(session_id) == count:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{broker.subscriber_count(session_id)} subscribers, expected {count}")


async def test_sse_frames_headers_and_replay_then_live(progress_mesh, gateway_url):
    session_id = await progress_mesh.create_session()
    job = job_events()
    await publish(progress_mesh.channel, session_id, job[:4], batch_size=4)
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream(
            "GET",
            events_url(gateway_url, session_id),
            params={"until_terminal": "true"},
            headers=bearer("alice"),
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        publisher = asyncio.create_task(publish(progress_mesh.channel, session_id, job[4:], batch_size=3))
        received = [frame async for frame in frames(response)]
        await publisher
    assert received[0].retry == 3000
    data_frames = [f for f in received if f.data_lines]
    assert [int(f.id) for f in data_frames] == list(range(1, len(job) + 1))
    assert data_frames[0].event == "job.queued"
    assert data_frames[-1].event == "job.completed"
    body = data_frames[3].json()
    assert body["seq"] == 4 and body["session_id"] == session_id
    assert body["type"] == data_frames[3].event
    assert body["stage"] == "script"


async def test_sse_reconnect_with_last_event_id_gets_exactly_the_rest(progress_mesh, gateway_url):
    session_id = await progress_mesh.create_session()
    job = job_events(ticks_per_stage=4)
    await publish(progress_mesh.channel, session_id, job[:10], batch_size=10)
    seen: list[int] = []
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream(
            "GET", events_url(gateway_url, session_id), headers=bearer("alice")
        ) as response:
            async for frame in events(response):
                seen.append(int(frame.id))
                if len(seen) == 6:
                    break
        # The rest is published while the client is away, and some after it is back.
        await publish(progress_mesh.channel, session_id, job[10:20], batch_size=5)
        headers = {**bearer("alice"), "Last-Event-ID": str(seen[-1])}
        async with client.stream(
            "GET",
            events_url(gateway_url, session_id),
            params={"until_terminal": "true", "after": "2"},  # Last-Event-ID wins
            headers=headers,
        ) as response:
            publisher = asyncio.create_task(publish(progress_mesh.channel, session_id, job[20:]))
            seen.extend([int(frame.id) async for frame in events(response)])
            await publisher
    assert seen == list(range(1, len(job) + 1))


async def test_sse_after_query_resumes(progress_mesh, gateway_url):
    session_id = await progress_mesh.create_session()
    await publish(progress_mesh.channel, session_id, job_events(), batch_size=100)
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream(
            "GET",
            events_url(gateway_url, session_id),
            params={"after": "5", "until_terminal": "true"},
            headers=bearer("alice"),
        ) as response,
    ):
        ids = [int(frame.id) async for frame in events(response)]
    assert ids[0] == 6


async def test_200_concurrent_sse_subscribers_get_every_event_in_order(progress_mesh, gateway):
    session_id = await progress_mesh.create_session()
    subscribers = 200
    job = job_events(ticks_per_stage=2)
    limits = httpx.Limits(max_connections=subscribers + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def subscribe() -> list[int]:
            async with client.stream(
                "GET",
                events_url(gateway.url, session_id),
                params={"until_terminal": "true"},
                headers=bearer("alice"),
            ) as response:
                assert response.status_code == 200
                return [int(frame.id) async for frame in events(response)]

        readers = [asyncio.create_task(subscribe()) for _ in range(subscribers)]
        await eventually(lambda: gateway.feed_clients(session_id) == subscribers, "200 SSE clients")
        # The gateway fans out: one upstream subscription serves all 200 browsers.
        broker = progress_mesh.event_log.broker
        await eventually(lambda: broker.subscriber_count(session_id) == 1, "the feed's upstream call")
        await publish(progress_mesh.channel, session_id, job, batch_size=3)
        results = await asyncio.wait_for(asyncio.gather(*readers), 90)
    expected = list(range(1, len(job) + 1))
    assert all(result == expected for result in results)
    await eventually(lambda: gateway.feed_clients(session_id) == 0, "clients gone")
    await wait_for_subscribers(progress_mesh, session_id, 0)


async def test_client_disconnect_cancels_the_upstream_call(progress_mesh, gateway):
    session_id = await progress_mesh.create_session()
    await publish(progress_mesh.channel, session_id, progress_ticks(2), batch_size=2)
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("GET", events_url(gateway.url, session_id), headers=bearer("alice")) as response,
    ):
        async for _ in events(response):
            break
        await wait_for_subscribers(progress_mesh, session_id, 1)
        assert gateway.feed_clients(session_id) == 1
    await wait_for_subscribers(progress_mesh, session_id, 0)
    assert gateway.feed_clients(session_id) == 0


async def test_stream_error_is_an_sse_error_event(progress_mesh, gateway_url):
    session_id = await progress_mesh.create_session()
    await publish(progress_mesh.channel, session_id, progress_ticks(1))
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("GET", events_url(gateway_url, session_id), headers=bearer("alice")) as response,
    ):
        received = []
        async for frame in events(response):
            received.append(frame)
            if len(received) == 1:
                await progress_mesh.progress_internal.DeleteSessionEvents(
                    progress_internal_pb2.DeleteSessionEventsRequest(session_id=session_id),
                    metadata=mesh_metadata(),
                    timeout=10,
                )
    assert received[-1].event == "error"
    assert received[-1].json()["error"]["code"] == "SESSION_NOT_FOUND"


async def test_refusals_are_problem_json(progress_mesh, gateway_url):
    session_id = await progress_mesh.create_session("alice")
    async with httpx.AsyncClient(timeout=30) as client:
        cases = [
            (events_url(gateway_url, session_id), bearer("bob"), {}, 404, "SESSION_NOT_FOUND"),
            (events_url(gateway_url, new_id("session")), bearer("alice"), {}, 404, "SESSION_NOT_FOUND"),
            (events_url(gateway_url, session_id), {}, {}, 401, "UNAUTHENTICATED"),
            (
                events_url(gateway_url, session_id),
                {"Authorization": "Bearer nope"},
                {},
                401,
                "UNAUTHENTICATED",
            ),
            (events_url(gateway_url, "ses_bad"), bearer("alice"), {}, 400, "INVALID_ID"),
            (
                events_url(gateway_url, session_id),
                {**bearer("alice"), "Last-Event-ID": "x"},
                {},
                400,
                "INVALID_ARGUMENT",
            ),
            (events_url(gateway_url, session_id), bearer("alice"), {"job_id": "job_1"}, 400, "INVALID_ID"),
            (events_url(gateway_url, session_id), {}, {"token": "st1.x.y"}, 401, "STREAM_TOKEN_INVALID"),
        ]
        for url, headers, params, status, code in cases:
            response = await client.get(url, headers=headers, params=params)
            assert response.status_code == status, (url, headers, params, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == code


async def test_idle_stream_gets_ping_comments(progress_mesh, gateway_url, monkeypatch):
    monkeypatch.setattr(routes_events, "PING_SECONDS", 0.2)
    session_id = await progress_mesh.create_session()
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("GET", events_url(gateway_url, session_id), headers=bearer("alice")) as response,
    ):
        pinged = False
        async for frame in frames(response):
            if "ping" in frame.comments:
                pinged = True
                break
    assert pinged


async def test_a_resume_point_beyond_the_last_event_is_409_event_seq_ahead(progress_mesh, gateway_url):
    """Issue 18: Last-Event-ID (or ?after=) past the session's last event gets a clear answer
    instead of a stream that waits for events that may never come."""
    session_id = await progress_mesh.create_session()
    url = events_url(gateway_url, session_id)
    async with httpx.AsyncClient(timeout=30) as client:
        empty = await client.get(url, headers={**bearer("alice"), "Last-Event-ID": "1"})
        assert empty.status_code == 409 and empty.json()["code"] == "EVENT_SEQ_AHEAD"
        await publish(progress_mesh.channel, session_id, job_events()[:5], batch_size=5)
        for headers, params in [
            ({**bearer("alice"), "Last-Event-ID": "6"}, {}),
            (bearer("alice"), {"after": "99"}),
        ]:
            ahead = await client.get(url, headers=headers, params=params)
            assert ahead.status_code == 409, ahead.text
            problem = ahead.json()
            assert problem["code"] == "EVENT_SEQ_AHEAD" and "(5)" in problem["detail"]
            assert ahead.headers["content-type"] == "application/problem+json"
        # Another user's session is still not found, whatever the resume point.
        foreign = await client.get(url, headers={**bearer("bob"), "Last-Event-ID": "99"})
        assert foreign.status_code == 404 and foreign.json()["code"] == "SESSION_NOT_FOUND"
        # The last event itself is a fine resume point: the stream then waits for the next.
        async with client.stream("GET", url, headers={**bearer("alice"), "Last-Event-ID": "5"}) as response:
            assert response.status_code == 200


async def test_a_stream_ends_after_its_lifetime_and_resumes_by_seq(progress_mesh, gateway):
    gateway.app.state.gateway.gateway_settings = GatewaySettings(
        gateway_rate_limit_per_second=10_000, gateway_rate_limit_burst=10_000, gateway_stream_max_seconds=0.5
    )
    session_id = await progress_mesh.create_session()
    job = job_events()
    await publish(progress_mesh.channel, session_id, job[:3], batch_size=3)
    url = events_url(gateway.url, session_id)
    async with httpx.AsyncClient(timeout=30) as client:
        started = asyncio.get_running_loop().time()
        async with client.stream("GET", url, headers=bearer("alice")) as response:
            first = [int(frame.id) async for frame in events(response)]  # ends by itself
        assert first == [1, 2, 3]
        assert asyncio.get_running_loop().time() - started < 10
        await publish(progress_mesh.channel, session_id, job[3:], batch_size=50)
        headers = {**bearer("alice"), "Last-Event-ID": "3"}
        async with client.stream("GET", url, headers=headers, params={"until_terminal": "true"}) as response:
            rest = [int(frame.id) async for frame in events(response)]
    assert first + rest == list(range(1, len(job) + 1))
