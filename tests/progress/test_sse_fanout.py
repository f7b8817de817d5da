"""The gateway's per-session feed: bounded memory for slow browsers, catch-up from the store."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from services.gateway import event_feeds
from tests.progress.conftest import eventually
from tests.progress.sse_client import events
from tests.support.identities import bearer, user_metadata
from tests.support.synthetic_events import progress_ticks, publish
from vidsynth.v1 import progress_pb2

RING = 16


@pytest.fixture(autouse=True)
def small_ring(monkeypatch):
    monkeypatch.setattr(event_feeds, "FEED_RING_CAPACITY", RING)


def big_events(count: int):
    events_ = progress_ticks(count)
    for event in events_:
        event.message = f"{event.message} {'x' * 32 * 1024}"
    return events_


async def test_stalled_browser_costs_bounded_memory_and_loses_nothing(progress_mesh, gateway):
    session_id = await progress_mesh.create_session()
    url = f"{gateway.url}/v1/sessions/{session_id}/events"
    total = 400  # ~13 MB of events: far more than the transport buffers and the ring hold
    async with (
        httpx.AsyncClient(timeout=60) as client,
        client.stream("GET", url, headers=bearer("alice")) as response,
    ):
        assert response.status_code == 200
        await eventually(lambda: gateway.feed_clients(session_id) == 1, "the stream to join its feed")
        await publish(progress_mesh.channel, session_id, big_events(total), batch_size=20)
        feed = gateway.app.state.gateway.event_feeds.feed(session_id)
        await eventually(lambda: feed.last_seq == total, "the feed to receive everything")
        # The ring stays bounded although the client has read nothing yet.
        assert len(feed.items_after(0)) < 2 * RING
        assert progress_mesh.event_log.broker.subscriber_count(session_id) == 1
        ids: list[int] = []
        async for frame in events(response):
            assert frame.event != "error", frame.data
            ids.append(int(frame.id))
            if ids[-1] == total:
                break
    # Whatever the ring dropped was read back from the store: every event once, in order.
    assert ids == list(range(1, total + 1))


async def test_reconnect_with_old_last_event_id_catches_up_then_joins_the_feed(progress_mesh, gateway):
    session_id = await progress_mesh.create_session()
    url = f"{gateway.url}/v1/sessions/{session_id}/events"
    # A live client keeps the feed (and its ring of the newest events) open.
    async with (
        httpx.AsyncClient(timeout=60) as client,
        client.stream("GET", url, headers=bearer("alice")) as live,
    ):
        await eventually(lambda: gateway.feed_clients(session_id) == 1, "the live client")
        await publish(progress_mesh.channel, session_id, progress_ticks(100), batch_size=10)
        live_ids = []
        async for frame in events(live):
            live_ids.append(int(frame.id))
            if live_ids[-1] == 100:
                break
        feed = gateway.app.state.gateway.event_feeds.feed(session_id)
        assert feed.base_seq > 5  # the ring no longer holds seq 6
        headers = {**bearer("alice"), "Last-Event-ID": "5"}
        async with client.stream("GET", url, headers=headers) as late:
            late_ids = []
            publisher = None
            async for frame in events(late):
                late_ids.append(int(frame.id))
                if late_ids[-1] == 100:
                    publisher = asyncio.create_task(
                        publish(progress_mesh.channel, session_id, progress_ticks(5), batch_size=5)
                    )
                if late_ids[-1] == 105:
                    break
            await publisher
        await eventually(lambda: gateway.feed_clients(session_id) == 1, "the late client to leave")
    assert live_ids == list(range(1, 101))
    assert late_ids == list(range(6, 106))
    assert progress_mesh.event_log.broker.subscriber_count(session_id) <= 1


async def test_feed_resumes_by_seq_when_its_upstream_deadline_passes(progress_mesh):
    session_id = await progress_mesh.create_session()

    def open_short_lived(session: str, after_seq: int):
        return progress_mesh.progress.Subscribe(
            progress_pb2.SubscribeRequest(session_id=session, after_seq=after_seq),
            metadata=user_metadata("alice"),
            timeout=0.3,
        )

    registry = event_feeds.FeedRegistry(open_short_lived)
    received: list[int] = []

    async def reader() -> None:
        async for item in event_feeds.follow(registry, session_id, 0):
            received.append(item.seq)
            if item.seq == 30:
                return

    task = asyncio.create_task(reader())
    for _ in range(6):  # spans several upstream deadlines
        await publish(progress_mesh.channel, session_id, progress_ticks(5), batch_size=5)
        await asyncio.sleep(0.15)
    await asyncio.wait_for(task, 30)
    assert received == list(range(1, 31))
    assert registry.feed_count() == 0  # the last client left: upstream cancelled
    await registry.close()
