"""The SQLite store's row counts: exact through every write, and back-filled when an
older database (no counts yet) is opened."""

from __future__ import annotations

import sqlite3

from libs.common import ids
from services.session.records import SessionRecord
from services.session.sqlite_schema import TABLES
from services.session.store import CreateOutcome, SqliteSessionStore

NOW = 1_800_000_000.0


def record(user_id: str, expires_at: float = NOW + 60) -> SessionRecord:
    return SessionRecord(
        session_id=ids.new_id("session"),
        user_id=user_id,
        state=1,
        display_name="",
        create_time=NOW,
        update_time=NOW,
        last_active_time=NOW,
        expires_at=expires_at,
    )


def counts(path) -> tuple[dict[str, int], int]:
    with sqlite3.connect(path) as conn:
        per_user = dict(conn.execute("SELECT user_id, sessions FROM session_counts").fetchall())
        (total,) = conn.execute("SELECT sessions FROM session_total").fetchone()
    return per_user, total


async def test_counts_follow_inserts_deletes_and_owner_changes(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SqliteSessionStore(path)
    await store.open()
    try:
        alice = [record("alice") for _ in range(3)]
        for r in [*alice, record("bob")]:
            assert await store.create_within_limits(r, 10, 10, NOW) is CreateOutcome.CREATED
        assert counts(path) == ({"alice": 3, "bob": 1}, 4)
        await store.delete(alice[0].session_id)
        moved = alice[1].evolve(user_id="bob", version=alice[1].version + 1)
        assert await store.replace(moved, expected_version=alice[1].version)
        assert counts(path) == ({"alice": 1, "bob": 2}, 3)
        await store.delete(alice[2].session_id)
        assert counts(path) == ({"bob": 2}, 2)
    finally:
        await store.close()


async def test_expired_rows_count_only_until_the_exact_check(tmp_path):
    """Rows still there but expired push the row count to the cap; the exact count of
    unexpired sessions then admits the create."""
    store = SqliteSessionStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        for _ in range(2):
            await store.create_within_limits(record("alice", expires_at=NOW - 1), 2, 2, NOW - 10)
        assert await store.create_within_limits(record("alice"), 2, 2, NOW) is CreateOutcome.CREATED
        assert await store.create_within_limits(record("alice"), 2, 3, NOW) is CreateOutcome.CREATED
        assert await store.create_within_limits(record("alice"), 2, 9, NOW) is CreateOutcome.USER_LIMIT
        assert await store.create_within_limits(record("bob"), 9, 2, NOW) is CreateOutcome.GLOBAL_LIMIT
    finally:
        await store.close()


async def test_a_database_from_before_the_counts_is_backfilled(tmp_path):
    path = tmp_path / "s.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(TABLES)
        for user_id, n in (("alice", 4), ("bob", 2)):
            for _ in range(n):
                conn.execute(
                    "INSERT INTO sessions VALUES (?, ?, 1, '', '', ?, ?, ?, ?, 0, x'')",
                    (ids.new_id("session"), user_id, NOW, NOW, NOW, NOW + 60),
                )
    store = SqliteSessionStore(path)
    await store.open()
    try:
        assert counts(path) == ({"alice": 4, "bob": 2}, 6)
        assert await store.create_within_limits(record("alice"), 4, 100, NOW) is CreateOutcome.USER_LIMIT
        assert await store.create_within_limits(record("bob"), 4, 100, NOW) is CreateOutcome.CREATED
    finally:
        await store.close()
    reopened = SqliteSessionStore(path)
    await reopened.open()  # migrations are applied once
    await reopened.close()
    assert counts(path) == ({"alice": 4, "bob": 3}, 7)
