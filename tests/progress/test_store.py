"""SqliteEventStore: atomic seqs under concurrency, bounded retention, deletion, restart."""

from __future__ import annotations

import asyncio

from services.progress.store import SqliteEventStore
from tests.support.synthetic_events import progress_ticks


async def test_concurrent_appends_get_gap_free_unique_seqs(tmp_path):
    store = await SqliteEventStore(tmp_path / "p.sqlite3", max_events_per_session=10_000).open()
    try:
        batches = await asyncio.gather(*(store.append("ses_a", progress_ticks(3)) for _ in range(40)))
        seqs = sorted(e.seq for batch in batches for e in batch)
        assert seqs == list(range(1, 121))
        for batch in batches:  # each call's events are consecutive
            assert [e.seq for e in batch] == list(range(batch[0].seq, batch[0].seq + 3))
        assert await store.last_seq("ses_a") == 120
        assert await store.last_seq("ses_b") == 0
    finally:
        await store.close()


async def test_retention_keeps_the_newest_and_seqs_keep_growing(tmp_path):
    store = await SqliteEventStore(tmp_path / "p.sqlite3", max_events_per_session=100).open()
    try:
        for _ in range(3):
            await store.append("ses_a", progress_ticks(50))
        kept = await store.read_after("ses_a", 0, 1000)
        assert [e.seq for e in kept] == list(range(51, 151))
    finally:
        await store.close()


async def test_delete_and_survive_restart(tmp_path):
    path = tmp_path / "p.sqlite3"
    store = await SqliteEventStore(path, max_events_per_session=1000).open()
    ticks = progress_ticks(5)
    await store.append("ses_a", ticks)
    await store.append("ses_b", progress_ticks(2))
    assert await store.latest_job_id("ses_a") == ticks[0].job_id
    await store.close()

    reopened = await SqliteEventStore(path, max_events_per_session=1000).open()
    try:
        assert [e.message for e in await reopened.read_after("ses_a", 2, 10)] == [
            "tick 2",
            "tick 3",
            "tick 4",
        ]
        assert await reopened.delete_session("ses_a") == 5
        assert await reopened.read_after("ses_a", 0, 10) == []
        assert len(await reopened.read_after("ses_b", 0, 10)) == 2
    finally:
        await reopened.close()
