"""Property: replay-then-live under a concurrent publisher has no gap, no duplicate, order kept."""

from __future__ import annotations

import asyncio
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.identities import user_metadata
from tests.support.synthetic_events import progress_ticks, publish
from vidsynth.v1 import progress_pb2


async def read_until(call, last_seq: int) -> list[progress_pb2.ProgressEvent]:
    received = []
    async for event in call:
        received.append(event)
        if event.seq >= last_seq:
            break
    return received


async def publish_batches(channel, session_id, events, sizes, jitter: random.Random) -> None:
    start = 0
    for size in sizes:
        await publish(channel, session_id, events[start : start + size], batch_size=size)
        start += size
        # Interleave with the subscriber's replay at varying points.
        for _ in range(jitter.randint(0, 3)):
            await asyncio.sleep(0)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    before=st.lists(st.integers(1, 6), max_size=6),
    during=st.lists(st.integers(1, 6), min_size=1, max_size=8),
    data=st.data(),
)
async def test_replay_then_live_no_gap_no_duplicate(progress_mesh, before, during, data):
    session_id = await progress_mesh.reset_session()
    total_before, total = sum(before), sum(before) + sum(during)
    events = progress_ticks(total)
    after_seq = data.draw(st.integers(0, total_before), label="after_seq")
    jitter = random.Random(data.draw(st.integers(0, 2**16), label="seed"))

    await publish_batches(progress_mesh.channel, session_id, events[:total_before], before, jitter)
    call = progress_mesh.progress.Subscribe(
        progress_pb2.SubscribeRequest(session_id=session_id, after_seq=after_seq),
        metadata=user_metadata("alice"),
        timeout=30,
    )
    reader = asyncio.create_task(read_until(call, total))
    await publish_batches(progress_mesh.channel, session_id, events[total_before:], during, jitter)
    received = await asyncio.wait_for(reader, 30)
    call.cancel()

    assert [e.seq for e in received] == list(range(after_seq + 1, total + 1))
    # Each seq carries the event published in that position.
    assert [e.message for e in received] == [e.message for e in events[after_seq:]]
