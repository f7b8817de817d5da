"""Each service opens its store one way, `open_store(settings, service_settings)`: Redis when
VIDSYNTH_REDIS_URL is set, else its SQLite file under the data dir; open and usable either way.
The SQLite stores share one statement-thread helper (libs/common/sqlite.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from libs.common.sqlite import SqliteDatabase, transaction
from services.progress import store as progress_store
from services.progress.redis_store import RedisEventStore
from services.session import store as session_store
from services.session.redis_store import RedisSessionStore
from services.stage_runner import store as job_store
from services.stage_runner.config import StageRunnerSettings
from services.stage_runner.redis_store import RedisJobStore
from tests.contracts.test_job_store_contract import new_job
from tests.contracts.test_session_store_contract import NOW, record
from vidsynth.v1 import progress_pb2


async def test_each_service_opens_the_store_its_settings_name(backend, mesh_settings):
    settings = backend.mesh_settings(mesh_settings)
    sessions = await session_store.open_store(settings, backend.session_settings())
    events = await progress_store.open_store(settings, backend.progress_settings())
    runner_settings = StageRunnerSettings(stage_runner_redis_namespace=backend.namespace or "vidsynth:")
    jobs = await job_store.open_store(settings, runner_settings)
    try:
        expected = (
            (RedisSessionStore, RedisEventStore, RedisJobStore)
            if backend.kind == "redis"
            else (session_store.SqliteSessionStore, progress_store.SqliteEventStore, job_store.SqliteJobStore)
        )
        assert tuple(map(type, (sessions, events, jobs))) == expected
        made = record()
        assert await sessions.create_within_limits(made, 10, 100, NOW) is session_store.CreateOutcome.CREATED
        assert (await sessions.get(made.session_id)) == made
        (stored,) = await events.append(made.session_id, [progress_pb2.ProgressEvent(message="queued")])
        assert stored.seq == 1
        job = new_job()
        await jobs.insert(job, "alice", "", "")
        assert (await jobs.get(job.job_id)).job == job
    finally:
        for store in (sessions, events, jobs):
            await store.close()
    files = sorted(p.name for p in settings.data_dir.glob("*.sqlite3"))
    if backend.kind == "redis":
        assert files == []
    else:
        assert files == ["progress.sqlite3", "session.sqlite3", runner_settings.stage_runner_db_file]


async def test_statements_run_in_order_on_one_thread_off_the_loop(tmp_path):
    db = SqliteDatabase(
        tmp_path / "d" / "t.sqlite3", name="t", setup=lambda c: c.execute("CREATE TABLE t (n INTEGER)")
    )
    await db.open()
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o700
    threads = set()

    def insert(conn, n):
        threads.add(threading.get_ident())
        conn.execute("INSERT INTO t VALUES (?)", (n,))

    await asyncio.gather(*(db.run(insert, n) for n in range(50)))
    assert [n for (n,) in await db.fetchall("SELECT n FROM t ORDER BY rowid")] == list(range(50))
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert await db.changed("DELETE FROM t WHERE n < ?", (10,)) == 10

    def half_done(conn):
        with transaction(conn):
            conn.execute("DELETE FROM t")
            raise ValueError("stop half way")

    with pytest.raises(ValueError):
        await db.run(half_done)
    assert (await db.fetchall("SELECT count(*) FROM t"))[0][0] == 40  # rolled back whole
    await db.close()
    with pytest.raises(RuntimeError):
        await db.fetchall("SELECT 1")
    await db.close()  # twice is fine
