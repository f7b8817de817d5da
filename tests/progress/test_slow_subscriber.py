"""A subscriber that stops reading is ended with SUBSCRIBER_TOO_SLOW after getting everything
it had buffered, and resumes by seq with exactly the rest."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from libs.common.rpc_status import error_from_rpc_error
from services.progress.broker import Broker
from services.progress.config import ProgressSettings
from tests.support.identities import user_metadata
from tests.support.synthetic_events import progress_ticks, publish
from vidsynth.v1 import progress_pb2

BIG_MESSAGE = "x" * 64 * 1024


@pytest.fixture
def progress_settings() -> ProgressSettings:
    return ProgressSettings(progress_subscriber_buffer=8)


def big_events(count: int) -> list[progress_pb2.ProgressEvent]:
    events = progress_ticks(count)
    for event in events:
        event.message = f"{event.message} {BIG_MESSAGE}"
    return events


async def test_broker_detaches_a_full_buffer_and_drains_it_first():
    broker = Broker(buffer_capacity=4)
    subscription = broker.subscribe("ses_x")
    events = progress_ticks(6)
    for seq, event in enumerate(events, start=1):
        event.seq = seq
    broker.publish("ses_x", events[:3])
    broker.publish("ses_x", events[3:])  # does not fit: detached, nothing partial buffered
    assert broker.subscriber_count("ses_x") == 0
    assert [e.seq for e in await subscription.next_batch()] == [1, 2, 3]
    with pytest.raises(Exception) as caught:
        await subscription.next_batch()
    assert getattr(caught.value, "code", None) == "SUBSCRIBER_TOO_SLOW"


async def test_slow_grpc_subscriber_ends_and_resumes_exactly(progress_mesh):
    session_id = await progress_mesh.create_session()
    call = progress_mesh.progress.Subscribe(
        progress_pb2.SubscribeRequest(session_id=session_id), metadata=user_metadata("alice"), timeout=60
    )
    await call.initial_metadata()
    broker = progress_mesh.event_log.broker
    total = 0
    # Publish until the stalled subscriber's transport and buffer are full and it is detached.
    while broker.subscriber_count(session_id) and total < 4000:
        await publish(progress_mesh.channel, session_id, big_events(20), batch_size=20)
        total += 20
    assert broker.subscriber_count(session_id) == 0, "the stalled subscriber was never detached"

    received: list[int] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for event in call:
            received.append(event.seq)
    error = error_from_rpc_error(caught.value)
    assert error.code == "SUBSCRIBER_TOO_SLOW"
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert received == list(range(1, len(received) + 1))
    assert len(received) < total

    resumed = progress_mesh.progress.Subscribe(
        progress_pb2.SubscribeRequest(session_id=session_id, after_seq=received[-1]),
        metadata=user_metadata("alice"),
        timeout=60,
    )
    rest = []
    async for event in resumed:
        rest.append(event.seq)
        if event.seq == total:
            break
    resumed.cancel()
    assert rest == list(range(received[-1] + 1, total + 1))
    await asyncio.sleep(0)
