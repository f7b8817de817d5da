"""Jobs, the processing mode and cost rates in SQLite (WAL), off the event loop.

Behind the small `JobStore` protocol so a Redis variant can replace it. A job is kept
as its serialized `Job` message plus the columns queries need (owner, session, order).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from libs.common.settings import MeshSettings
from libs.common.sqlite import SqliteDatabase
from services.stage_runner.config import StageRunnerSettings
from vidsynth.v1 import common_pb2, stage_runner_pb2

UNFINISHED_STATES = (common_pb2.JOB_STATE_QUEUED, common_pb2.JOB_STATE_RUNNING)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL DEFAULT '',
    spec_hash TEXT NOT NULL DEFAULT '',
    job BLOB NOT NULL,
    trace_parent TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_by_user ON jobs (user_id, seq);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (user_id, idempotency_key)
    WHERE idempotency_key != '';
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cost_rates (
    backend TEXT NOT NULL,
    stage INTEGER NOT NULL,
    rate REAL NOT NULL,
    samples INTEGER NOT NULL,
    PRIMARY KEY (backend, stage)
);
"""


@dataclass(frozen=True)
class StoredJob:
    job: stage_runner_pb2.Job
    user_id: str
    seq: int
    spec_hash: str = ""


@dataclass(frozen=True)
class CostRate:
    backend: str
    stage: int
    rate: float
    samples: int


class JobStore(Protocol):
    async def insert(
        self,
        job: stage_runner_pb2.Job,
        user_id: str,
        idempotency_key: str,
        spec_hash: str,
        trace_parent: str = "",
    ) -> None: ...
    async def trace_parent(self, job_id: str) -> str: ...
    async def update(self, job: stage_runner_pb2.Job) -> None: ...
    async def get(self, job_id: str) -> StoredJob | None: ...
    async def find_idempotent(self, user_id: str, key: str) -> StoredJob | None: ...
    async def list_for_user(
        self, user_id: str, session_id: str, after_seq: int, limit: int
    ) -> list[StoredJob]: ...
    async def unfinished(self) -> list[StoredJob]: ...
    async def get_meta(self, key: str) -> str | None: ...
    async def set_meta(self, key: str, value: str) -> None: ...
    async def cost_rates(self) -> list[CostRate]: ...
    async def save_cost_rate(self, rate: CostRate) -> None: ...
    async def open(self) -> JobStore: ...
    async def close(self) -> None: ...


def _row_to_job(row: tuple) -> StoredJob:
    seq, user_id, spec_hash, blob = row
    return StoredJob(stage_runner_pb2.Job.FromString(blob), user_id, seq, spec_hash)


def _create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    if "trace_parent" not in columns:  # a database from before tracing
        conn.execute("ALTER TABLE jobs ADD COLUMN trace_parent TEXT NOT NULL DEFAULT ''")


class SqliteJobStore:
    """Its statements run on one thread of their own (libs/common/sqlite.py)."""

    def __init__(self, path: Path) -> None:
        self._db = SqliteDatabase(path, name="stage-runner", setup=_create_schema, busy_timeout_ms=30_000)

    async def open(self) -> SqliteJobStore:
        await self._db.open()
        return self

    async def insert(
        self,
        job: stage_runner_pb2.Job,
        user_id: str,
        idempotency_key: str,
        spec_hash: str,
        trace_parent: str = "",
    ) -> None:
        await self._db.fetchall(
            "INSERT INTO jobs (job_id, user_id, session_id, state, idempotency_key, spec_hash, job, "
            "trace_parent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.job_id,
                user_id,
                job.session_id,
                job.state,
                idempotency_key,
                spec_hash,
                job.SerializeToString(),
                trace_parent,
            ),
        )

    async def trace_parent(self, job_id: str) -> str:
        """The W3C traceparent of the request that started the job ("" if none)."""
        rows = await self._db.fetchall("SELECT trace_parent FROM jobs WHERE job_id = ?", (job_id,))
        return rows[0][0] if rows else ""

    async def update(self, job: stage_runner_pb2.Job) -> None:
        await self._db.fetchall(
            "UPDATE jobs SET state = ?, job = ? WHERE job_id = ?",
            (job.state, job.SerializeToString(), job.job_id),
        )

    async def get(self, job_id: str) -> StoredJob | None:
        rows = await self._db.fetchall(
            "SELECT seq, user_id, spec_hash, job FROM jobs WHERE job_id = ?", (job_id,)
        )
        return _row_to_job(rows[0]) if rows else None

    async def find_idempotent(self, user_id: str, key: str) -> StoredJob | None:
        rows = await self._db.fetchall(
            "SELECT seq, user_id, spec_hash, job FROM jobs WHERE user_id = ? AND idempotency_key = ?",
            (user_id, key),
        )
        return _row_to_job(rows[0]) if rows else None

    async def list_for_user(
        self, user_id: str, session_id: str, after_seq: int, limit: int
    ) -> list[StoredJob]:
        if session_id:
            rows = await self._db.fetchall(
                "SELECT seq, user_id, spec_hash, job FROM jobs WHERE user_id = ? AND session_id = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (user_id, session_id, after_seq, limit),
            )
        else:
            rows = await self._db.fetchall(
                "SELECT seq, user_id, spec_hash, job FROM jobs WHERE user_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (user_id, after_seq, limit),
            )
        return [_row_to_job(r) for r in rows]

    async def unfinished(self) -> list[StoredJob]:
        rows = await self._db.fetchall(
            "SELECT seq, user_id, spec_hash, job FROM jobs WHERE state IN (?, ?) ORDER BY seq",
            UNFINISHED_STATES,
        )
        return [_row_to_job(r) for r in rows]

    async def get_meta(self, key: str) -> str | None:
        rows = await self._db.fetchall("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._db.fetchall(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def cost_rates(self) -> list[CostRate]:
        rows = await self._db.fetchall("SELECT backend, stage, rate, samples FROM cost_rates")
        return [CostRate(*r) for r in rows]

    async def save_cost_rate(self, rate: CostRate) -> None:
        await self._db.fetchall(
            "INSERT INTO cost_rates (backend, stage, rate, samples) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(backend, stage) DO UPDATE SET rate = excluded.rate, samples = excluded.samples",
            (rate.backend, rate.stage, rate.rate, rate.samples),
        )

    async def close(self) -> None:
        await self._db.close()


async def open_store(settings: MeshSettings, runner_settings: StageRunnerSettings) -> JobStore:
    """Redis when the mesh has one (replicas share jobs), else this machine's SQLite file."""
    if settings.redis_url:
        from services.stage_runner.redis_wiring import redis_job_store  # it imports this module

        return await redis_job_store(settings, runner_settings).open()
    return await SqliteJobStore(settings.data_dir / runner_settings.stage_runner_db_file).open()
