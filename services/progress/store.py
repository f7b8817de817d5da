"""Where progress events are kept: a small interface and its SQLite (WAL) implementation.

Every SQLite call runs on the database's one statement thread, so the event loop never
blocks and the read-assign-insert of `append` is a single transaction no other call can
interleave with: seqs stay strictly increasing and gap-free under concurrent publishers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from libs.common.settings import MeshSettings
from libs.common.sqlite import SqliteDatabase, transaction
from services.progress.config import ProgressSettings
from services.progress.redis_store import RedisEventStore
from vidsynth.v1 import progress_pb2

DATABASE_FILE = "progress.sqlite3"

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
    """EventStore on one SQLite file in WAL mode (libs/common/sqlite.py); the oldest events
    beyond `max_events_per_session` are dropped when new ones arrive."""

    def __init__(self, path: Path, max_events_per_session: int) -> None:
        self._db = SqliteDatabase(path, name="progress", setup=lambda conn: conn.executescript(SCHEMA))
        self._max_events = max_events_per_session

    async def open(self) -> SqliteEventStore:
        await self._db.open()
        return self

    async def close(self) -> None:
        await self._db.close()

    async def append(
        self, session_id: str, events: Sequence[progress_pb2.ProgressEvent]
    ) -> list[progress_pb2.ProgressEvent]:
        return await self._db.run(self._append, session_id, list(events))

    def _append(
        self, db: sqlite3.Connection, session_id: str, events: list[progress_pb2.ProgressEvent]
    ) -> list[progress_pb2.ProgressEvent]:
        with transaction(db):
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
        return stored

    async def read_after(
        self, session_id: str, after_seq: int, limit: int, job_id: str = ""
    ) -> list[progress_pb2.ProgressEvent]:
        if job_id:
            rows = await self._db.fetchall(
                "SELECT body FROM events WHERE session_id = ? AND seq > ? AND job_id = ? "
                "ORDER BY seq LIMIT ?",
                (session_id, after_seq, job_id, limit),
            )
        else:
            rows = await self._db.fetchall(
                "SELECT body FROM events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (session_id, after_seq, limit),
            )
        return [progress_pb2.ProgressEvent.FromString(row[0]) for row in rows]

    async def last_seq(self, session_id: str) -> int:
        rows = await self._db.fetchall("SELECT last_seq FROM session_seq WHERE session_id = ?", (session_id,))
        return rows[0][0] if rows else 0

    async def latest_job_id(self, session_id: str) -> str:
        rows = await self._db.fetchall(
            "SELECT job_id FROM events WHERE session_id = ? AND job_id != '' ORDER BY seq DESC LIMIT 1",
            (session_id,),
        )
        return rows[0][0] if rows else ""

    async def delete_session(self, session_id: str) -> int:
        return await self._db.run(self._delete_session, session_id)

    @staticmethod
    def _delete_session(db: sqlite3.Connection, session_id: str) -> int:
        with transaction(db):
            deleted = db.execute("DELETE FROM events WHERE session_id = ?", (session_id,)).rowcount
            db.execute("DELETE FROM session_seq WHERE session_id = ?", (session_id,))
        return deleted


async def open_store(settings: MeshSettings, progress_settings: ProgressSettings) -> EventStore:
    """Redis when the mesh has one (replicas share the streams), else this machine's SQLite file."""
    if settings.redis_url:
        return await RedisEventStore(
            settings.redis_url,
            progress_settings.progress_max_events_per_session,
            progress_settings.progress_redis_namespace,
        ).open()
    return await SqliteEventStore(
        settings.data_dir / DATABASE_FILE, progress_settings.progress_max_events_per_session
    ).open()
