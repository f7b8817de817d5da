"""One JobStore contract, run against SQLite and Redis (the Redis job queue's own rules are
in test_redis_job_queue.py)."""

from __future__ import annotations

import sqlite3

import pytest
import redis.asyncio as redis

from libs.common import ids
from services.stage_runner.redis_store import IdempotencyKeyTaken, RedisJobStore
from services.stage_runner.store import CostRate, SqliteJobStore
from vidsynth.v1 import common_pb2, stage_runner_pb2

SESSION_A = "ses_contract_a"
SESSION_B = "ses_contract_b"


def open_job_store(backend):
    if backend.kind == "redis":
        return RedisJobStore(redis.Redis.from_url(backend.redis_url), backend.namespace, 3600)
    return SqliteJobStore(backend.data_dir / "stage_runner.sqlite3")


@pytest.fixture
async def store(backend):
    store = open_job_store(backend)
    yield store
    await store.close()


@pytest.fixture
async def replica(backend):
    """A second store on the same backend, as another stage_runner replica would hold."""
    store = open_job_store(backend)
    yield store
    await store.close()


def new_job(session_id: str = SESSION_A, state: int = common_pb2.JOB_STATE_QUEUED) -> stage_runner_pb2.Job:
    job = stage_runner_pb2.Job(
        job_id=ids.new_id("job"),
        session_id=session_id,
        state=state,
        spec=stage_runner_pb2.JobSpec(script_text="Hello"),
    )
    job.stages.add(stage=common_pb2.STAGE_VOICE, estimated_seconds=2.0)
    return job


async def test_inserted_job_reads_back_whole_with_owner_and_fingerprint(store, replica) -> None:
    job = new_job()
    await store.insert(job, "alice", "", "hash-1")
    for reader in (store, replica):
        stored = await reader.get(job.job_id)
        assert stored is not None
        assert stored.job == job
        assert (stored.user_id, stored.spec_hash) == ("alice", "hash-1")
        assert stored.seq > 0
    assert await store.get(ids.new_id("job")) is None


async def test_update_replaces_the_job_and_moves_it_out_of_unfinished(store, replica) -> None:
    first, second = new_job(), new_job(state=common_pb2.JOB_STATE_RUNNING)
    await store.insert(first, "alice", "", "")
    await store.insert(second, "bob", "", "")
    assert [s.job.job_id for s in await replica.unfinished()] == [first.job_id, second.job_id]

    first.state = common_pb2.JOB_STATE_COMPLETED
    first.overall_percent = 100.0
    await replica.update(first)
    assert (await store.get(first.job_id)).job.overall_percent == 100.0
    assert [s.job.job_id for s in await store.unfinished()] == [second.job_id]

    # Updating a job that was never inserted creates nothing.
    ghost = new_job()
    await store.update(ghost)
    assert await store.get(ghost.job_id) is None


async def test_listing_is_per_user_in_order_with_session_filter_and_pages(store) -> None:
    alice = [new_job(SESSION_A), new_job(SESSION_B), new_job(SESSION_A)]
    for job in alice:
        await store.insert(job, "alice", "", "")
    await store.insert(new_job(SESSION_A), "bob", "", "")

    everything = await store.list_for_user("alice", "", 0, 10)
    assert [s.job.job_id for s in everything] == [j.job_id for j in alice]
    assert [s.seq for s in everything] == sorted(s.seq for s in everything)
    in_a = await store.list_for_user("alice", SESSION_A, 0, 10)
    assert [s.job.job_id for s in in_a] == [alice[0].job_id, alice[2].job_id]
    first_page = await store.list_for_user("alice", "", 0, 2)
    rest = await store.list_for_user("alice", "", first_page[-1].seq, 2)
    assert [s.job.job_id for s in first_page + rest] == [j.job_id for j in alice]
    assert await store.list_for_user("carol", "", 0, 10) == []


async def test_idempotency_key_finds_its_job_for_its_user_only(store, replica) -> None:
    job = new_job()
    await store.insert(job, "alice", "key-1", "hash-1")
    found = await replica.find_idempotent("alice", "key-1")
    assert found is not None and found.job.job_id == job.job_id and found.spec_hash == "hash-1"
    assert await replica.find_idempotent("bob", "key-1") is None
    assert await replica.find_idempotent("alice", "key-2") is None
    # Bob may use the same key for his own job.
    await replica.insert(new_job(), "bob", "key-1", "hash-2")


async def test_a_second_insert_with_a_used_key_is_refused(store, replica) -> None:
    await store.insert(new_job(), "alice", "key-1", "hash-1")
    with pytest.raises((sqlite3.IntegrityError, IdempotencyKeyTaken)):
        await replica.insert(new_job(), "alice", "key-1", "hash-1")
    assert len(await store.list_for_user("alice", "", 0, 10)) == 1


async def test_meta_and_cost_rates_are_upserted_and_shared(store, replica) -> None:
    assert await store.get_meta("processing_mode") is None
    await store.set_meta("processing_mode", "2")
    await replica.set_meta("processing_mode", "3")
    assert await store.get_meta("processing_mode") == "3"

    await store.save_cost_rate(CostRate("espeak", common_pb2.STAGE_VOICE, 0.5, 1))
    await replica.save_cost_rate(CostRate("espeak", common_pb2.STAGE_VOICE, 0.7, 2))
    await replica.save_cost_rate(CostRate("ffmpeg", common_pb2.STAGE_ASSEMBLE, 1.5, 1))
    rates = sorted(await store.cost_rates(), key=lambda r: r.backend)
    assert rates == [
        CostRate("espeak", common_pb2.STAGE_VOICE, 0.7, 2),
        CostRate("ffmpeg", common_pb2.STAGE_ASSEMBLE, 1.5, 1),
    ]
