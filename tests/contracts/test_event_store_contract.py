"""One EventStore contract, run against SQLite and Redis: what the progress log relies on."""

from __future__ import annotations

import asyncio

import pytest

from libs.common import ids
from tests.support.synthetic_events import progress_ticks
from vidsynth.v1 import progress_pb2

SESSION = "ses_contract"


@pytest.fixture
async def store(backend):
    store = await backend.event_store()
    yield store
    await store.close()


@pytest.fixture
async def replica(backend):
    """A second store on the same backend, as another ProgressService replica would hold."""
    store = await backend.event_store()
    yield store
    await store.close()


async def test_concurrent_appends_on_two_replicas_get_gap_free_seqs(backend, store, replica):
    if backend.kind == "sqlite":
        replica = store  # one SQLite file belongs to one process
    batches = await asyncio.gather(
        *((store if i % 2 else replica).append(SESSION, progress_ticks(3)) for i in range(40))
    )
    seqs = sorted(e.seq for batch in batches for e in batch)
    assert seqs == list(range(1, 121))
    for batch in batches:  # each call's events are consecutive
        assert [e.seq for e in batch] == list(range(batch[0].seq, batch[0].seq + 3))
        assert all(e.session_id == SESSION for e in batch)
    assert await replica.last_seq(SESSION) == 120
    assert await store.last_seq("ses_other") == 0
    assert [e.seq for e in await store.read_after(SESSION, 0, 1000)] == list(range(1, 121))


async def test_read_after_keeps_every_field_and_pages(store):
    ticks = progress_ticks(10)
    ticks[3].error.code = "STAGE_FAILED"
    ticks[3].eta_seconds = 12.5
    ticks[3].timestamp.GetCurrentTime()
    stored = await store.append(SESSION, ticks)
    page = await store.read_after(SESSION, 2, 4)
    assert page == stored[2:6]
    assert page[1].error.code == "STAGE_FAILED" and page[1].seq == 4
    assert await store.read_after(SESSION, 10, 5) == []
    assert await store.read_after(SESSION, 8, 5) == stored[8:]


async def test_job_filter_and_latest_job(store):
    first, second = ids.new_id("job"), ids.new_id("job")
    await store.append(SESSION, progress_ticks(600, first))
    await store.append(SESSION, progress_ticks(3, second))
    # A warning that names no job does not hide the latest job.
    await store.append(SESSION, [progress_pb2.ProgressEvent(type=progress_pb2.EVENT_TYPE_WARNING)])
    assert [e.seq for e in await store.read_after(SESSION, 0, 10, job_id=second)] == [601, 602, 603]
    assert [e.seq for e in await store.read_after(SESSION, 601, 1, job_id=second)] == [602]
    assert len(await store.read_after(SESSION, 0, 1000, job_id=first)) == 600
    assert await store.latest_job_id(SESSION) == second
    assert await store.latest_job_id("ses_other") == ""


async def test_retention_is_bounded_keeps_the_newest_and_seqs_keep_growing(backend):
    store = await backend.event_store(max_events_per_session=100)
    try:
        for _ in range(20):
            await store.append(SESSION, progress_ticks(50))
        kept = [e.seq for e in await store.read_after(SESSION, 0, 5000)]
        # SQLite keeps exactly the limit; Redis trims whole stream nodes (MAXLEN ~), so a
        # little more. Either way: bounded, contiguous, ending at the newest.
        assert 100 <= len(kept) <= 400
        assert kept == list(range(1001 - len(kept), 1001))
        assert await store.last_seq(SESSION) == 1000
    finally:
        await store.close()


async def test_delete_drops_one_session_and_restarts_its_seqs(store, replica):
    await store.append(SESSION, progress_ticks(5))
    await store.append("ses_kept", progress_ticks(2))
    assert await replica.delete_session(SESSION) == 5
    assert await store.read_after(SESSION, 0, 10) == []
    assert await store.last_seq(SESSION) == 0
    assert await store.latest_job_id(SESSION) == ""
    assert len(await store.read_after("ses_kept", 0, 10)) == 2
    assert [e.seq for e in await store.append(SESSION, progress_ticks(2))] == [1, 2]
    assert await store.delete_session("ses_never") == 0
