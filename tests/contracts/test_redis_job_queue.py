"""The Redis job queue's own rules, with several replicas' views of one real Redis: the
fair pick across users (per-user running cap counted cluster-wide from the pending
entries), hand-out to exactly one replica, heartbeats, reclaim of a silent replica's job,
cancel, ticks that wake idle replicas, pruning of gone consumers."""

from __future__ import annotations

import asyncio
import random

import pytest

from services.stage_runner.redis_queue import RedisJobStream
from services.stage_runner.redis_store import RedisJobStore
from services.stage_runner.redis_wiring import redis_client
from tests.contracts.test_job_store_contract import new_job, open_job_store
from vidsynth.v1 import common_pb2

NO_CAP = 100


@pytest.fixture
async def redis_jobs(redis_backend):
    """A store and two replicas' views of the job queue."""
    store = open_job_store(redis_backend)
    first = RedisJobStream(store.client, store.keys, "replica-1")
    second = RedisJobStream(store.client, store.keys, "replica-2")
    await first.ensure_group()
    await second.ensure_group()  # a second replica finds the group already there
    yield store, first, second
    await store.close()


async def queued(store: RedisJobStore, stream: RedisJobStream, user: str = "alice") -> str:
    job = new_job()
    await store.insert(job, user, "", "")
    await stream.add(job.job_id, user)
    return job.job_id


async def pick(stream: RedisJobStream, cap: int = NO_CAP):
    return (await stream.pick(cap))[1]


async def test_each_job_goes_to_exactly_one_replica_in_order(redis_jobs) -> None:
    store, first, second = redis_jobs
    job_ids = [await queued(store, first) for _ in range(3)]
    assert [entry.job_id for entry in (await second.waiting_room()).entries] == job_ids
    assert {entry.user_id for entry in (await second.waiting_room()).entries} == {"alice"}

    taken_first = await pick(first)
    taken_second = await pick(second)
    assert [taken_first.job_id, taken_second.job_id] == job_ids[:2]
    assert await first.take(taken_first) == "run"
    assert await second.take(taken_second) == "run"
    assert [entry.job_id for entry in (await first.waiting_room()).entries] == job_ids[2:]
    pending = await store.client.xpending_range(first.stream, "runners", "-", "+", 10)
    assert {(p["message_id"].decode(), p["consumer"].decode()) for p in pending} == {
        (taken_first.entry_id, "replica-1"),
        (taken_second.entry_id, "replica-2"),
    }

    await first.done(taken_first.entry_id)
    assert await store.client.xlen(first.stream) == 1  # a finished job leaves the stream
    assert await pick(first) is not None
    assert await pick(second) is None  # the waiting room is empty


async def test_the_pick_takes_turns_between_users_fifo_within_each(redis_jobs) -> None:
    store, first, second = redis_jobs
    alice = [await queued(store, first, "alice") for _ in range(4)]
    bob = [await queued(store, second, "bob") for _ in range(2)]
    carol = await queued(store, first, "carol")
    order = []
    for replica in (first, second) * 4:
        entry = await pick(replica)
        if entry is not None:
            order.append(entry.job_id)
    # Nobody finishes in between, so each turn goes to whoever runs the fewest jobs.
    assert order == [alice[0], bob[0], carol, alice[1], bob[1], alice[2], alice[3]]


async def test_the_running_cap_per_user_holds_across_replicas(redis_jobs) -> None:
    store, first, second = redis_jobs
    alice = [await queued(store, first, "alice") for _ in range(2)]
    taken = await pick(first, cap=1)
    assert taken.job_id == alice[0]
    # Alice runs one job (on replica-1): replica-2 may not start her second one...
    assert await pick(second, cap=1) is None
    bob = await queued(store, second, "bob")
    # ...but another user's job goes at once.
    assert (await pick(second, cap=1)).job_id == bob
    await first.done(taken.entry_id)
    assert (await pick(second, cap=1)).job_id == alice[1]


async def test_when_a_slot_frees_the_user_served_longest_ago_goes_first(redis_jobs) -> None:
    store, first, second = redis_jobs
    alice = [await queued(store, first, "alice") for _ in range(3)]
    taken = await pick(first, cap=1)
    bob = await queued(store, second, "bob")
    await first.done(taken.entry_id)
    # Neither runs anything now: bob, never served, goes before alice's older jobs.
    assert (await pick(second, cap=1)).job_id == bob
    assert (await pick(first, cap=1)).job_id == alice[1]
    room = await first.waiting_room()
    assert [entry.job_id for entry in room.entries] == alice[2:]
    assert room.served["alice"] > room.served["bob"]


async def test_a_silent_replicas_job_still_counts_for_its_user_and_is_reclaimed(redis_jobs) -> None:
    store, first, second = redis_jobs
    gone = RedisJobStream(store.client, store.keys, "replica-3")
    job_id = await queued(store, first)
    entry = await pick(gone, cap=1)
    assert await gone.take(entry) == "run"
    waiting = await queued(store, first)
    # Replica-3 fell silent holding alice's job: it is still hers (resumed later), so her
    # next job waits rather than run beside it.
    assert await pick(first, cap=1) is None
    await asyncio.sleep(0.3)
    reclaimed = await second.reclaim_one(250)
    assert reclaimed is not None and reclaimed.job_id == job_id and reclaimed.reclaimed
    assert await second.take(reclaimed) == "run"
    assert await pick(first, cap=1) is None
    await second.done(reclaimed.entry_id)
    assert (await pick(first, cap=1)).job_id == waiting


async def test_a_silent_replicas_job_is_reclaimed_and_its_heartbeat_then_fails(redis_jobs) -> None:
    store, first, second = redis_jobs
    job_id = await queued(store, first)
    entry = await pick(first)
    assert await first.take(entry) == "run"

    # While replica-1 heartbeats, its entry is never idle long enough to be taken.
    for _ in range(3):
        await asyncio.sleep(0.1)
        assert await first.heartbeat({job_id: entry.entry_id}) == (set(), set())
        assert await second.reclaim_one(250) is None

    await asyncio.sleep(0.3)  # replica-1 falls silent
    reclaimed = await second.reclaim_one(250)
    assert reclaimed is not None and reclaimed.job_id == job_id and reclaimed.reclaimed
    assert await second.take(reclaimed) == "run"
    assert await store.client.hget(store.keys.job(job_id), "owner") == b"replica-2"
    # Replica-1 wakes up: it learns the job is no longer its own, and cannot steal it back.
    assert await first.heartbeat({job_id: entry.entry_id}) == ({job_id}, set())
    assert await second.heartbeat({job_id: entry.entry_id}) == (set(), set())


async def test_cancel_of_a_waiting_job_takes_it_out_of_the_waiting_room(redis_jobs) -> None:
    store, first, second = redis_jobs
    job_id = await queued(store, first)
    assert await second.request_cancel(job_id) == "mine"
    assert (await first.waiting_room()).entries == []
    assert await pick(first) is None


async def test_cancel_between_pick_and_take_makes_the_canceller_its_owner(redis_jobs) -> None:
    store, first, second = redis_jobs
    job_id = await queued(store, first)
    entry = await pick(first)
    assert await second.request_cancel(job_id) == "mine"
    assert await first.take(entry) == "skip"


async def test_cancel_of_a_running_job_reaches_its_owner_and_a_reclaimer(redis_jobs) -> None:
    store, first, second = redis_jobs
    job_id = await queued(store, first)
    entry = await pick(first)
    await first.take(entry)
    assert await second.request_cancel(job_id) == "owned"
    assert await first.heartbeat({job_id: entry.entry_id}) == (set(), {job_id})

    # Had the owner died, the replica reclaiming the job settles the cancellation.
    await asyncio.sleep(0.3)
    reclaimed = await second.reclaim_one(250)
    assert await second.take(reclaimed) == "cancel"


async def test_finished_jobs_cannot_be_cancelled_or_taken(redis_jobs) -> None:
    store, first, _ = redis_jobs
    job = new_job()
    await store.insert(job, "alice", "", "")
    await first.add(job.job_id, "alice")
    job.state = common_pb2.JOB_STATE_COMPLETED
    await store.update(job)
    assert await first.request_cancel(job.job_id) == "done"
    assert await first.take(await pick(first)) == "skip"


async def test_an_idle_replica_wakes_when_a_job_is_added_or_ends_elsewhere(redis_jobs) -> None:
    store, first, second = redis_jobs
    tick, nothing = await first.pick(1)
    assert nothing is None
    waiter = asyncio.create_task(first.wait_for_tick(tick, 20_000))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    job_id = await queued(store, second)
    await asyncio.wait_for(waiter, 10)  # long before the 20 s block runs out

    entry = await pick(first, cap=1)
    assert entry.job_id == job_id
    await queued(store, second)  # alice's second job: she is at her cap
    tick, nothing = await second.pick(1)
    assert nothing is None
    waiter = asyncio.create_task(second.wait_for_tick(tick, 20_000))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await first.done(entry.entry_id)
    await asyncio.wait_for(waiter, 10)
    assert await pick(second, cap=1) is not None


async def test_jobs_an_older_version_queued_on_the_stream_move_to_the_waiting_room(redis_jobs) -> None:
    store, first, second = redis_jobs
    job = new_job()
    await store.insert(job, "bob", "", "")
    # The previous layout: StartJob appended the job to the stream, undelivered.
    await store.client.xadd(first.stream, {"job_id": job.job_id})
    assert await pick(first) is None  # nothing in the waiting room: it would sit there
    assert await second.adopt_undelivered() == 1
    assert [(e.job_id, e.user_id) for e in (await first.waiting_room()).entries] == [(job.job_id, "bob")]
    assert (await pick(first)).job_id == job.job_id
    assert await second.adopt_undelivered() == 0


async def test_capacity_counts_the_run_slots_of_live_replicas(redis_jobs) -> None:
    _, first, second = redis_jobs
    await first.register(2, ttl_seconds=30)
    await second.register(3, ttl_seconds=30)
    assert await first.capacity() == 5
    await second.forget()
    assert await first.capacity() == 2


async def test_consumers_of_gone_replicas_are_pruned_unless_they_hold_a_job(redis_jobs) -> None:
    store, first, second = redis_jobs
    gone = RedisJobStream(store.client, store.keys, "replica-3")
    for _ in range(3):
        await queued(store, first)
    await first.take(await pick(first))  # replica-1 holds a job
    for replica in (second, gone):  # the others ran one each and hold nothing now
        await replica.done((await pick(replica)).entry_id)
    await asyncio.sleep(0.2)
    assert await first.prune_consumers(100) == 2  # replica-2 and replica-3, never replica-1
    names = {c["name"] for c in await store.client.xinfo_consumers(first.stream, "runners")}
    assert names == {b"replica-1"}
    await queued(store, first)
    assert await pick(second) is not None  # a pruned live replica simply comes back


async def test_a_task_cancelled_inside_redis_commands_always_ends(redis_backend) -> None:
    """The stage runner's Redis client does not lose a cancellation that lands inside a
    command (redis-py's default socket_timeout makes Python 3.11's wait_for do so now and
    then, redis/redis-py#2028), so cancelled jobs and loops end."""
    store = RedisJobStore(redis_client(redis_backend.redis_url), redis_backend.namespace)
    stream = RedisJobStream(store.client, store.keys, "replica-1")
    await stream.ensure_group()
    rng = random.Random(2028)
    try:
        for _ in range(100):

            async def busy() -> None:
                while True:
                    await stream.pick(1)

            task = asyncio.create_task(busy())
            await asyncio.sleep(rng.uniform(0.001, 0.01))
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5)
            assert done and task.cancelled()
    finally:
        await store.close()
