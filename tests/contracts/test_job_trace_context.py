"""A job keeps the W3C traceparent of the request that started it, on SQLite and Redis
alike, so whichever replica runs or resumes it continues that trace."""

from __future__ import annotations

import sqlite3

import redis.asyncio as redis

from libs.common import ids
from services.stage_runner.redis_store import RedisJobStore
from services.stage_runner.store import SqliteJobStore
from vidsynth.v1 import common_pb2, stage_runner_pb2

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def open_job_store(backend):
    if backend.kind == "redis":
        return RedisJobStore(redis.Redis.from_url(backend.redis_url), backend.namespace, 3600)
    return SqliteJobStore(backend.data_dir / "stage_runner.sqlite3")


def new_job() -> stage_runner_pb2.Job:
    return stage_runner_pb2.Job(
        job_id=ids.new_id("job"), session_id="ses_trace", state=common_pb2.JOB_STATE_QUEUED
    )


async def test_the_traceparent_survives_updates_and_is_read_by_another_replica(backend) -> None:
    store, replica = open_job_store(backend), open_job_store(backend)
    try:
        traced, untraced = new_job(), new_job()
        await store.insert(traced, "alice", "", "hash", TRACEPARENT)
        await store.insert(untraced, "alice", "", "hash")
        traced.state = common_pb2.JOB_STATE_RUNNING
        await store.update(traced)
        assert await replica.trace_parent(traced.job_id) == TRACEPARENT
        assert await replica.trace_parent(untraced.job_id) == ""
        assert await replica.trace_parent(ids.new_id("job")) == ""
        assert (await replica.get(traced.job_id)).job == traced
    finally:
        await store.close()
        await replica.close()


async def test_a_database_from_before_tracing_gains_the_column(tmp_path) -> None:
    path = tmp_path / "stage_runner.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        """CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL,
            session_id TEXT NOT NULL, state INTEGER NOT NULL, idempotency_key TEXT NOT NULL DEFAULT '',
            spec_hash TEXT NOT NULL DEFAULT '', job BLOB NOT NULL);"""
    )
    job = new_job()
    old.execute(
        "INSERT INTO jobs (job_id, user_id, session_id, state, job) VALUES (?, 'alice', 'ses_trace', 1, ?)",
        (job.job_id, job.SerializeToString()),
    )
    old.commit()
    old.close()
    store = SqliteJobStore(path)
    try:
        assert await store.trace_parent(job.job_id) == ""
        assert (await store.get(job.job_id)).job == job
        fresh = new_job()
        await store.insert(fresh, "alice", "", "", TRACEPARENT)
        assert await store.trace_parent(fresh.job_id) == TRACEPARENT
    finally:
        await store.close()
