"""What only the Redis stores do: key layout and TTLs, index pruning, live readers, replicas of
SessionService sharing state, and an unreachable Redis answered as SERVICE_UNAVAILABLE."""

from __future__ import annotations

import asyncio
import functools

import grpc
import httpx
import pytest
import redis.asyncio as redis

import services.progress.server
import services.session.server
from libs.common.errors import VidsynthError
from libs.common.grpc_server import keyring_from_settings, start_wiring, stop_wiring
from libs.common.rpc_status import error_from_rpc_error
from services.gateway.app import create_app
from services.progress.broker import Broker
from services.progress.redis_live import RedisLiveFeed
from services.progress.redis_store import RedisEventStore
from services.session.lifecycle import NEVER, PROCESSING
from services.session.redis_store import DEFAULT_KEY_GRACE_SECONDS, RedisSessionStore
from tests.contracts.test_session_store_contract import NOW, TTL, record
from tests.support.identities import bearer, mesh_metadata, user_metadata
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.synthetic_events import progress_ticks
from vidsynth.internal.v1 import progress_internal_pb2, progress_internal_pb2_grpc
from vidsynth.v1 import progress_pb2, progress_pb2_grpc, session_pb2, session_pb2_grpc


@pytest.fixture
async def raw(redis_backend):
    client = redis.Redis.from_url(redis_backend.redis_url)
    yield client
    await client.aclose()


async def test_every_key_is_namespaced_and_session_hashes_expire_after_a_grace(redis_backend, raw):
    sessions = redis_backend.session_store()
    events = await redis_backend.event_store()
    await sessions.open()
    try:
        idle, busy = record(), record()
        for item in (idle, busy):
            await sessions.create_within_limits(item, 10, 100, NOW)
        await sessions.replace(busy.evolve(state=PROCESSING, expires_at=NEVER, version=2), 1)
        await events.append(idle.session_id, progress_ticks(3))
        keys = [key.decode() async for key in raw.scan_iter(match="*")]
        mine = [key for key in keys if key.startswith(redis_backend.namespace)]
        assert len(mine) >= 7 and {"session", "progress"} <= {k.split(":")[1] for k in mine}
        ttl_ms = await raw.pttl(f"{redis_backend.namespace}session:{idle.session_id}")
        # Relative to the session's activity, whatever the clock said: TTL plus the grace.
        assert 0 < (TTL + DEFAULT_KEY_GRACE_SECONDS) * 1000 - ttl_ms < 60_000
        assert await raw.pttl(f"{redis_backend.namespace}session:{busy.session_id}") == -1
    finally:
        await sessions.close()
        await events.close()


async def test_index_entries_of_a_vanished_hash_are_pruned(redis_backend, raw):
    store = redis_backend.session_store()
    await store.open()
    try:
        kept, vanished = record(), record(created=NOW + 1)
        for item in (kept, vanished):
            await store.create_within_limits(item, 10, 100, NOW)
        # As if Redis had dropped the hash by its TTL before any sweep came.
        await raw.delete(f"{redis_backend.namespace}session:{vanished.session_id}")
        assert [r.session_id for r in await store.list_for_user("alice", None, 10)] == [kept.session_id]
        assert [r.session_id for r in await store.expired(NOW + 10 * TTL, 0)] == [kept.session_id]
        for index in ("session:expiry", "session:user-expiry:alice", "session:user-created:alice"):
            assert await raw.zscore(f"{redis_backend.namespace}{index}", vanished.session_id) is None
    finally:
        await store.close()


async def test_a_live_reader_runs_while_a_session_has_subscribers(redis_backend):
    store = await redis_backend.event_store()
    broker = Broker(buffer_capacity=16)
    feed = RedisLiveFeed(store, broker, block_seconds=0.05)
    try:
        subscription = broker.subscribe("ses_live")
        await asyncio.gather(feed.watch("ses_live"), feed.watch("ses_live"))
        assert feed.reader_count() == 1
        await store.append("ses_live", progress_ticks(2))
        assert [e.seq for e in await asyncio.wait_for(subscription.next_batch(), 30)] == [1, 2]
        broker.unsubscribe(subscription)
        for _ in range(1500):
            if feed.reader_count() == 0:
                break
            await asyncio.sleep(0.02)
        assert feed.reader_count() == 0
    finally:
        await feed.close()
        await store.close()


async def test_session_replicas_share_sessions_and_caps(redis_backend, in_process_mesh):
    in_process_mesh.settings = redis_backend.mesh_settings(in_process_mesh.settings)
    build = functools.partial(
        services.session.server.build,
        session_settings=redis_backend.session_settings(session_max_per_user=2),
    )
    first = await in_process_mesh.start("session", build)
    wiring = await build(in_process_mesh.settings)
    server, port, health = await start_wiring(
        wiring, "127.0.0.1:0", keyring_from_settings(in_process_mesh.settings)
    )
    try:
        async with first.channel() as a, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as b:
            stub_a, stub_b = session_pb2_grpc.SessionServiceStub(a), session_pb2_grpc.SessionServiceStub(b)
            alice = user_metadata("alice")
            made = await stub_a.CreateSession(
                session_pb2.CreateSessionRequest(display_name="x"), metadata=alice
            )
            seen = await stub_b.GetSession(
                session_pb2.GetSessionRequest(session_id=made.session_id), metadata=alice
            )
            assert seen.display_name == "x"
            await stub_b.CreateSession(session_pb2.CreateSessionRequest(), metadata=alice)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub_a.CreateSession(session_pb2.CreateSessionRequest(), metadata=alice)
            assert error_from_rpc_error(caught.value).code == "SESSION_LIMIT_REACHED"
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub_b.GetSession(
                    session_pb2.GetSessionRequest(session_id=made.session_id), metadata=user_metadata("bob")
                )
            assert error_from_rpc_error(caught.value).code == "SESSION_NOT_FOUND"
    finally:
        await stop_wiring(wiring, server, health, grace=0)


async def test_stores_refuse_to_open_without_redis():
    url = f"redis://127.0.0.1:{free_port()}/0"
    for store in (RedisSessionStore(url), RedisEventStore(url, 100)):
        with pytest.raises(VidsynthError) as caught:
            await store.open()
        assert caught.value.code == "SERVICE_UNAVAILABLE"
        await store.close()


async def test_redis_going_away_is_service_unavailable_over_grpc_and_http(tmp_path, in_process_mesh):
    own_redis = RedisServer(tmp_path / "redis")
    try:
        in_process_mesh.settings = in_process_mesh.settings.model_copy(update={"redis_url": own_redis.url})
        session = await in_process_mesh.start("session", services.session.server.build)
        progress = await in_process_mesh.start("progress", services.progress.server.build)
        async with session.channel() as s_channel, progress.channel() as p_channel:
            sessions = session_pb2_grpc.SessionServiceStub(s_channel)
            events = progress_pb2_grpc.ProgressServiceStub(p_channel)
            made = await sessions.CreateSession(
                session_pb2.CreateSessionRequest(), metadata=user_metadata("alice")
            )
            live = events.Subscribe(
                progress_pb2.SubscribeRequest(session_id=made.session_id),
                metadata=user_metadata("alice"),
                timeout=60,
            )
            await live.initial_metadata()
            broker = progress.wiring.event_log.broker
            for _ in range(1500):
                if broker.subscriber_count(made.session_id):
                    break
                await asyncio.sleep(0.02)
            own_redis.stop()

            # A live subscriber is ended so it reconnects (elsewhere, or once Redis is back).
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await asyncio.wait_for(live.read(), 60)
            assert error_from_rpc_error(caught.value).code == "SERVICE_UNAVAILABLE"
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await sessions.CreateSession(
                    session_pb2.CreateSessionRequest(), metadata=user_metadata("alice")
                )
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert error_from_rpc_error(caught.value).code == "SERVICE_UNAVAILABLE"
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await progress_internal_pb2_grpc.ProgressInternalServiceStub(p_channel).PublishEvents(
                    progress_internal_pb2.PublishEventsRequest(
                        session_id=made.session_id, events=progress_ticks(1)
                    ),
                    metadata=mesh_metadata(),
                )
            assert error_from_rpc_error(caught.value).code == "SERVICE_UNAVAILABLE"

        app = create_app(in_process_mesh.settings)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw.test"
        ) as http:
            reply = await http.post("/v1/sessions", headers=bearer("alice"), json={})
        await app.state.gateway.close()
        assert reply.status_code == 503
        assert reply.headers["content-type"].startswith("application/problem+json")
        assert reply.json()["code"] == "SERVICE_UNAVAILABLE"
    finally:
        own_redis.stop()
