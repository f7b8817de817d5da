"""Replay-then-live over real gRPC on both backends; with Redis across two progress replicas.

With SQLite there is one progress service (its file belongs to it), so "both replicas" are
the same one. With Redis, subscribers sit on replica A while events go in through B.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

import grpc
import pytest

import services.progress.server
import services.session.server
from libs.common.grpc_server import ServiceWiring, keyring_from_settings, start_wiring, stop_wiring
from libs.common.rpc_status import error_from_rpc_error
from tests.support.identities import mesh_metadata, user_metadata
from tests.support.synthetic_events import progress_ticks, publish
from vidsynth.internal.v1 import progress_internal_pb2, progress_internal_pb2_grpc
from vidsynth.v1 import progress_pb2, progress_pb2_grpc, session_pb2, session_pb2_grpc

BIG_MESSAGE = "x" * 64 * 1024


@dataclass
class Replica:
    wiring: ServiceWiring
    channel: grpc.aio.Channel

    @property
    def stub(self) -> progress_pb2_grpc.ProgressServiceStub:
        return progress_pb2_grpc.ProgressServiceStub(self.channel)

    @property
    def broker(self):
        return self.wiring.event_log.broker

    def subscribe(self, session_id: str, after_seq: int = 0):
        return self.stub.Subscribe(
            progress_pb2.SubscribeRequest(session_id=session_id, after_seq=after_seq),
            metadata=user_metadata("alice"),
            timeout=60,
        )


@dataclass
class Replicas:
    a: Replica
    b: Replica
    session_channel: grpc.aio.Channel

    async def create_session(self) -> str:
        stub = session_pb2_grpc.SessionServiceStub(self.session_channel)
        reply = await stub.CreateSession(
            session_pb2.CreateSessionRequest(), metadata=user_metadata("alice"), timeout=10
        )
        return reply.session_id


@pytest.fixture
def subscriber_buffer() -> int:
    return 1024


@pytest.fixture
async def replicas(backend, in_process_mesh, subscriber_buffer):
    in_process_mesh.settings = backend.mesh_settings(in_process_mesh.settings)
    session = await in_process_mesh.start(
        "session",
        functools.partial(services.session.server.build, session_settings=backend.session_settings()),
    )
    progress_settings = backend.progress_settings(progress_subscriber_buffer=subscriber_buffer)
    build = functools.partial(services.progress.server.build, progress_settings=progress_settings)
    first = await in_process_mesh.start("progress", build)
    extra = None
    if backend.kind == "redis":
        wiring = await build(in_process_mesh.settings)
        server, port, health = await start_wiring(
            wiring, "127.0.0.1:0", keyring_from_settings(in_process_mesh.settings)
        )
        extra = (wiring, server, health, grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
    channels = [first.channel(), session.channel()]
    a = Replica(first.wiring, channels[0])
    b = Replica(extra[0], extra[3]) if extra else a
    yield Replicas(a, b, channels[1])
    for channel in channels:
        await channel.close()
    if extra:
        await extra[3].close()
        await stop_wiring(extra[0], extra[1], extra[2], grace=0)


async def eventually(condition, what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def read_until(call, last_seq: int) -> list[int]:
    seqs = []
    async for event in call:
        seqs.append(event.seq)
        if event.seq >= last_seq:
            break
    call.cancel()
    return seqs


async def test_subscribers_joining_during_publishing_get_every_event_once(replicas):
    session_id = await replicas.create_session()
    total, batch = 600, 10
    await publish(replicas.b.channel, session_id, progress_ticks(50), batch_size=50)

    async def publisher(replica, start_delay: float) -> None:
        await asyncio.sleep(start_delay)
        await publish(replica.channel, session_id, progress_ticks((total - 50) // 2), batch_size=batch)

    readers = []
    publishers = [
        asyncio.create_task(publisher(replicas.b, 0)),
        asyncio.create_task(publisher(replicas.a, 0.01)),
    ]
    # Subscribers join at different moments, from different seqs, on both replicas.
    for index, after in enumerate([0, 20, 50, 0, 7, 0]):
        replica = replicas.a if index % 2 == 0 else replicas.b
        readers.append((after, asyncio.create_task(read_until(replica.subscribe(session_id, after), total))))
        await asyncio.sleep(0.02)
    await asyncio.gather(*publishers)
    for after, reader in readers:
        assert await asyncio.wait_for(reader, 60) == list(range(after + 1, total + 1))


async def test_delete_ends_live_subscribers_everywhere(replicas):
    session_id = await replicas.create_session()
    await publish(replicas.b.channel, session_id, progress_ticks(3), batch_size=3)
    calls = [replicas.a.subscribe(session_id), replicas.b.subscribe(session_id)]
    for call in calls:
        assert [(await call.read()).seq for _ in range(3)] == [1, 2, 3]
    deleted = await progress_internal_pb2_grpc.ProgressInternalServiceStub(
        replicas.b.channel
    ).DeleteSessionEvents(
        progress_internal_pb2.DeleteSessionEventsRequest(session_id=session_id),
        metadata=mesh_metadata(),
        timeout=10,
    )
    assert deleted.events_deleted == 3
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(call.read(), 30)
        assert error_from_rpc_error(caught.value).code == "SESSION_NOT_FOUND"
    # The session's log starts over, and a new subscriber sees it from seq 1.
    assert await publish(replicas.a.channel, session_id, progress_ticks(2), batch_size=2) == [1, 2]
    assert await read_until(replicas.b.subscribe(session_id), 2) == [1, 2]


@pytest.mark.parametrize("subscriber_buffer", [8])
async def test_a_stalled_subscriber_ends_too_slow_and_resumes_exactly(replicas):
    session_id = await replicas.create_session()
    call = replicas.a.subscribe(session_id)
    # One event read first puts the stream in its live phase: a buffer that overflows during
    # the replay is not the client's fault and is silently replaced, not ended.
    await publish(replicas.b.channel, session_id, progress_ticks(1))
    assert (await asyncio.wait_for(call.read(), 30)).seq == 1
    total = 1
    # Publish (through the other replica) until the stalled subscriber is detached.
    while replicas.a.broker.subscriber_count(session_id) and total < 4000:
        ticks = progress_ticks(20)
        for event in ticks:
            event.message = BIG_MESSAGE
        await publish(replicas.b.channel, session_id, ticks, batch_size=20)
        total += 20
    assert replicas.a.broker.subscriber_count(session_id) == 0, "the stalled subscriber was never detached"

    received: list[int] = [1]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while (event := await call.read()) is not grpc.aio.EOF:
            received.append(event.seq)
    assert error_from_rpc_error(caught.value).code == "SUBSCRIBER_TOO_SLOW"
    assert received == list(range(1, len(received) + 1))
    assert len(received) < total
    rest = await read_until(replicas.b.subscribe(session_id, received[-1]), total)
    assert rest == list(range(received[-1] + 1, total + 1))


async def test_live_events_from_both_replicas_arrive_in_seq_order(replicas):
    session_id = await replicas.create_session()
    watchers = [replicas.a.subscribe(session_id), replicas.b.subscribe(session_id)]
    brokers = {id(r.broker): r.broker for r in (replicas.a, replicas.b)}.values()
    await eventually(
        lambda: sum(b.subscriber_count(session_id) for b in brokers) == 2,
        "both subscriptions",
    )
    readers = [asyncio.create_task(read_until(call, 200)) for call in watchers]
    await asyncio.gather(
        publish(replicas.a.channel, session_id, progress_ticks(100)),
        publish(replicas.b.channel, session_id, progress_ticks(100)),
    )
    for reader in readers:
        assert await asyncio.wait_for(reader, 60) == list(range(1, 201))
