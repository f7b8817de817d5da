"""Where progress events are kept: a small interface and its SQLite (WAL) implementation.

Every SQLite call runs on one dedicated thread, so the event loop never blocks and the
read-assign-insert of `append` is a single transaction no other call can interleave with:
seqs stay strictly increasing and gap-free under concurrent publishers.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, TypeVar

from vidsynth.v1 import progress_pb2

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS session_seq (
    session_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
"""


class EventStore(Protocol):
    """Per-session, append-only event log with seqs assigned by the store."""

    async def append(
        self, session_id: str, events: Sequence[progress_pb2.ProgressEvent]
    ) -> list[progress_pb2.ProgressEvent]:
        """Stores `events` with the session's next seqs; returns them with `seq` set."""
        ...

    async def read_after(
        self, session_id: str, after_seq: int, limit: int, job_id: str = ""
    ) -> list[progress_pb2.ProgressEvent]:
        """Up to `limit` events with seq > after_seq, oldest first (optionally one job's)."""
        ...

    async def last_seq(self, session_id: str) -> int: ...

    async def latest_job_id(self, session_id: str) -> str:
        """The job of the session's most recent event that names one ("" when none)."""
        ...

    async def delete_session(self, session_id: str) -> int:
        """Drops every event of the session; returns how many there were."""
        ...

    async def close(self) -> None: ...


class SqliteEventStore:
    """EventStore on one SQLite file in WAL mode; the oldest events beyond
    `max_events_per_session` are dropped when new ones arrive."""

    def __init__(self, path: Path, max_events_per_session: int) -> None:
        self._path = path
        self._max_events = max_events_per_session
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="progress-sqlite")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> SqliteEventStore:
        await self._run(self._open_sync)
        return self

    def _open_sync(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(SCHEMA)
        self._conn = conn

    async def _run(self, fn: Callable[..., T], *args) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("store is not open")
        return self._conn

    async def append(
        self, session_id: str, events: Sequence[progress_pb2.ProgressEvent]
    ) -> list[progress_pb2.ProgressEvent]:
        return await self._run(self._append_sync, session_id, list(events))

    def _append_sync(
        self, session_id: str, events: list[progress_pb2.ProgressEvent]
    ) -> list[progress_pb2.ProgressEvent]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT last_seq FROM session_seq WHERE session_id = ?", (session_id,)
            ).fetchone()
            seq = row[0] if row else 0
            stored: list[progress_pb2.ProgressEvent] = []
            for event in events:
                seq += 1
                copy = progress_pb2.ProgressEvent()
                copy.CopyFrom(event)
                copy.seq = seq
                copy.session_id = session_id
                stored.append(copy)
            db.executemany(
                "INSERT INTO events (session_id, seq, job_id, body) VALUES (?, ?, ?, ?)",
                [(session_id, e.seq, e.job_id, e.SerializeToString()) for e in stored],
            )
            db.execute(
                "INSERT INTO session_seq (session_id, last_seq) VALUES (?, ?) "
                "ON CONFLICT(session_id) DO UPDATE SET last_seq = excluded.last_seq",
                (session_id, seq),
            )
            db.execute(
                "DELETE FROM events WHERE session_id = ? AND seq <= ?", (session_id, seq - self._max_events)
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return stored

    async def read_after(
        self, session_id: str, after_seq: int, limit: int, job_id: str = ""
    ) -> list[progress_pb2.ProgressEvent]:
        return await self._run(self._read_after_sync, session_id, after_seq, limit, job_id)

    def _read_after_sync(
        self, session_id: str, after_seq: int, limit: int, job_id: str
    ) -> list[progress_pb2.ProgressEvent]:
        if job_id:
            rows = self._db.execute(
                "SELECT body FROM events WHERE session_id = ? AND seq > ? AND job_id = ? "
                "ORDER BY seq LIMIT ?",
                (session_id, after_seq, job_id, limit),
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT body FROM events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (session_id, after_seq, limit),
            ).fetchall()
        return [progress_pb2.ProgressEvent.FromString(row[0]) for row in rows]

    async def last_seq(self, session_id: str) -> int:
        return await self._run(self._last_seq_sync, session_id)

    def _last_seq_sync(self, session_id: str) -> int:
        row = self._db.execute(
            "SELECT last_seq FROM session_seq WHERE session_id = ?", (session_id,)
        ).fetchone()
        return row[0] if row else 0

    async def latest_job_id(self, session_id: str) -> str:
        return await self._run(self._latest_job_id_sync, session_id)

    def _latest_job_id_sync(self, session_id: str) -> str:
        row = self._db.execute(
            "SELECT job_id FROM events WHERE session_id = ? AND job_id != '' ORDER BY seq DESC LIMIT 1",
            (session_id,),
        ).fetchone()
        return row[0] if row else ""

    async def delete_session(self, session_id: str) -> int:
        return await self._run(self._delete_session_sync, session_id)

    def _delete_session_sync(self, session_id: str) -> int:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            deleted = db.execute("DELETE FROM events WHERE session_id = ?", (session_id,)).rowcount
            db.execute("DELETE FROM session_seq WHERE session_id = ?", (session_id,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return deleted

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
