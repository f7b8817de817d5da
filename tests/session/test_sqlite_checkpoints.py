"""WAL checkpoints of the SQLite session store run on their own thread: statements
never pay for them, pages still reach the main file, and the WAL stays bounded."""

from __future__ import annotations

import asyncio
import sqlite3

from services.session import sqlite_checkpoints
from services.session.store import SqliteSessionStore
from tests.session.test_store_counts import record

ROWS = 300


def rows_in_main_file(path) -> int:
    """Rows as the main database file alone has them (the WAL is ignored)."""
    with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as conn:
        try:
            return conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
        except sqlite3.OperationalError:  # the table itself is not checkpointed yet
            return 0


async def test_background_checkpoints_copy_writes_into_the_main_file(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SqliteSessionStore(path)
    await store.open()
    try:
        for _ in range(ROWS):
            await store.create_within_limits(record("alice"), 10_000, 10_000, 0.0)
        for _ in range(200):
            if rows_in_main_file(path) == ROWS:
                break
            await asyncio.sleep(0.05)
        assert rows_in_main_file(path) == ROWS
    finally:
        await store.close()


async def test_a_wal_past_its_bound_is_truncated(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_checkpoints, "WAL_FRAMES_BEFORE_TRUNCATE", 10)
    path = tmp_path / "s.sqlite3"
    store = SqliteSessionStore(path)
    await store.open()
    try:
        for _ in range(50):
            await store.create_within_limits(record("alice"), 10_000, 10_000, 0.0)
        wal_frames, _ = await asyncio.to_thread(store.checkpointer.checkpoint_now)
        assert wal_frames == 0
        assert (tmp_path / "s.sqlite3-wal").stat().st_size == 0
    finally:
        await store.close()
