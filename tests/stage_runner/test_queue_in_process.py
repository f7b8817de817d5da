"""The queue of one process in-process, on a fake clock (queue_rig.py): FIFO order and
positions, ETAs that come true when estimates are exact, fair shares between users,
per-user and global caps with RetryInfo, cancels, resuming after a restart. The whole-mesh
tests (test_queue_and_cancel.py, test_fair_queue.py) keep one real path per feature."""

from __future__ import annotations

import asyncio

import pytest

from libs.common.errors import VidsynthError
from services.stage_runner.execution import LiveJob
from services.stage_runner.store import StoredJob
from tests.stage_runner.queue_rig import make_rig, new_job, settle
from vidsynth.v1 import common_pb2

QUEUED, RUNNING = common_pb2.JOB_STATE_QUEUED, common_pb2.JOB_STATE_RUNNING
COMPLETED, CANCELLED = common_pb2.JOB_STATE_COMPLETED, common_pb2.JOB_STATE_CANCELLED


@pytest.fixture
async def rigs(tmp_path):
    made = []

    def make(**settings):
        directory = tmp_path / f"rig{len(made)}"
        directory.mkdir()
        made.append(make_rig(directory, **settings))
        return made[-1]

    yield make
    for rig in made:
        await rig.queue.stop()
        await rig.store.close()


async def test_jobs_run_one_at_a_time_in_order_and_their_etas_come_true(rigs):
    rig = rigs(stage_runner_max_running_jobs=1)
    jobs = [await rig.submit("alice", seconds=5) for _ in range(5)]
    assert [j.queue_position for j in jobs] == [1, 1, 2, 3, 4]
    # Hand-worked: one slot, 5 s each, so job k (from 0) ends at 5 (k + 1).
    assert [j.eta_seconds for j in jobs] == [5, 10, 15, 20, 25]
    await rig.clock.advance(30)
    assert rig.states(jobs) == [COMPLETED] * 5
    assert [rig.runner.finished[j.job_id] for j in jobs] == [5, 10, 15, 20, 25]
    starts = [rig.runner.started[j.job_id] for j in jobs]
    assert starts == [0, 5, 10, 15, 20]

    queued = rig.runner.queued_events(jobs[-1].job_id)
    assert [e.position for e in queued] == [4, 3, 2, 1]
    assert all(e.eta_seconds > 0 for e in queued)
    etas = [e.eta_seconds for e in queued]
    assert etas == sorted(etas, reverse=True)
    # Each published ETA is when the job really ended (estimates were exact).
    assert all(e.at + e.eta_seconds == 25 for e in queued)


async def test_a_running_jobs_progress_moves_the_etas_of_jobs_queued_behind_it(rigs):
    rig = rigs(stage_runner_max_running_jobs=1)
    first = await rig.submit("alice", seconds=10)
    await rig.clock.advance(4)
    second = await rig.submit("alice", seconds=10)
    # 6 s left of the first, then the second's 10 s.
    assert second.queue_position == 1 and second.eta_seconds == 16
    await rig.clock.advance(16)
    assert rig.runner.finished[second.job_id] == 20
    assert rig.job(first.job_id).state == COMPLETED


async def test_another_users_job_is_next_whatever_one_user_has_queued(rigs):
    heavy = 6
    rig = rigs(
        stage_runner_max_running_jobs=1,
        stage_runner_max_running_jobs_per_user=1,
        stage_runner_max_queued_jobs_per_user=heavy - 1,
    )
    alice = [await rig.submit("alice", seconds=2) for _ in range(heavy)]
    assert [j.queue_position for j in alice] == [1, 1, 2, 3, 4, 5]

    # Alice's waiting room is full: her seventh job is refused, with when to retry.
    with pytest.raises(VidsynthError) as caught:
        await rig.submit("alice")
    assert caught.value.code == "USER_JOB_LIMIT_REACHED" and caught.value.retry_after_seconds >= 5
    assert caught.value.metadata == {"waiting": str(heavy - 1), "limit": str(heavy - 1)}

    bob = await rig.submit("bob", seconds=2)
    assert bob.queue_position == 1
    waiting = [rig.job(j.job_id) for j in alice[1:]]
    assert [j.queue_position for j in waiting] == [2, 3, 4, 5, 6]
    assert bob.eta_seconds < min(j.eta_seconds for j in waiting)

    # What really happens: bob's job is the next to start, while alice's wait.
    await rig.clock.advance(2)
    assert rig.job(bob.job_id).state == RUNNING
    assert rig.states(alice[1:]) == [QUEUED] * (heavy - 1)
    await rig.clock.advance(2)
    assert rig.job(bob.job_id).state == COMPLETED
    assert rig.runner.started[alice[1].job_id] >= rig.runner.finished[bob.job_id]

    # Alice's waiting jobs were told they moved back when bob's went ahead.
    positions = [e.position for e in rig.runner.queued_events(alice[1].job_id)]
    assert positions == [1, 2, 1]


async def test_a_free_slot_goes_to_another_user_not_to_a_user_at_the_cap(rigs):
    rig = rigs(stage_runner_max_running_jobs=2, stage_runner_max_running_jobs_per_user=1)
    alice = [await rig.submit("alice", seconds=60) for _ in range(2)]
    await rig.clock.advance(1)
    # A run slot is free, but alice already runs her share.
    assert rig.states(alice) == [RUNNING, QUEUED]
    bob = await rig.submit("bob", seconds=60)
    assert bob.queue_position == 1
    await settle()
    assert rig.job(bob.job_id).state == RUNNING
    assert rig.job(alice[1].job_id).queue_position == 1
    # Alice's second job starts when her first ends (t=60), not when bob's does.
    await rig.clock.advance(60)
    assert rig.runner.started[alice[1].job_id] == 60


async def test_a_full_waiting_room_refuses_with_when_to_retry(rigs):
    rig = rigs(stage_runner_max_running_jobs=1, stage_runner_max_queued_jobs=1)
    await rig.submit("alice", seconds=30)
    await rig.submit("bob", seconds=30)
    with pytest.raises(VidsynthError) as caught:
        await rig.submit("carol")
    assert caught.value.code == "QUEUE_FULL"
    # The waiting job starts when the running one ends, 30 s from now.
    assert caught.value.retry_after_seconds == 30
    assert caught.value.metadata == {"waiting": "1"}
    await rig.clock.advance(31)
    await rig.submit("carol")


async def test_cancelling_a_waiting_job_moves_the_one_behind_it_up(rigs):
    rig = rigs(stage_runner_max_running_jobs=1)
    first, waiting, behind = [await rig.submit("alice", seconds=10) for _ in range(3)]
    cancelled = await rig.queue.cancel(StoredJob(rig.job(waiting.job_id), "alice", 0))
    assert cancelled.state == CANCELLED
    assert rig.queue.live_job(waiting.job_id) is None
    assert [e.position for e in rig.runner.queued_events(behind.job_id)] == [2, 1]
    with pytest.raises(VidsynthError) as caught:
        await rig.queue.cancel(StoredJob(cancelled, "alice", 0))
    assert caught.value.code == "JOB_NOT_CANCELLABLE"
    await rig.clock.advance(20)
    assert rig.runner.finished[first.job_id] == 10 and rig.runner.started[behind.job_id] == 10
    assert waiting.job_id not in rig.runner.started


async def test_cancelling_a_running_job_frees_its_slot_at_once(rigs):
    rig = rigs(stage_runner_max_running_jobs=1)
    running, waiting = [await rig.submit("alice", seconds=10) for _ in range(2)]
    await rig.clock.advance(3)
    cancelled = await rig.queue.cancel(StoredJob(rig.job(running.job_id), "alice", 0))
    assert cancelled.state == CANCELLED
    await settle()
    assert rig.runner.started[waiting.job_id] == 3


async def test_a_cancel_before_the_jobs_first_step_still_settles_it(rigs):
    rig = rigs()
    job = new_job(5)
    await rig.store.insert(job, "alice", "", "")
    live = LiveJob(job, "alice")
    await rig.queue.enqueue(live)
    # Dequeued at once, its task created but not yet run: the cancel comes first.
    assert rig.queue.running_task(job.job_id) is not None and job.job_id not in rig.runner.started
    cancelled = await rig.queue.cancel(StoredJob(job, "alice", 0))
    assert cancelled.state == CANCELLED and live.ended
    assert rig.queue.live_job(job.job_id) is None


async def test_jobs_left_running_resume_first_then_the_queued_ones_in_order(rigs):
    rig = rigs(stage_runner_max_running_jobs=1, stage_runner_max_running_jobs_per_user=1)
    queued_first = new_job(2)
    was_running = new_job(4)
    queued_second = new_job(2)
    for job, state in ((queued_first, QUEUED), (was_running, RUNNING), (queued_second, QUEUED)):
        job.state = state
        await rig.store.insert(job, "alice", "", "")
    assert await rig.queue.resume() == 3
    await rig.clock.advance(10)
    started = sorted(rig.runner.started, key=rig.runner.started.get)
    assert started == [was_running.job_id, queued_first.job_id, queued_second.job_id]
    assert [rig.runner.started[j] for j in started] == [0, 4, 6]


async def test_stopping_interrupts_running_jobs_and_starts_nothing_more(rigs):
    rig = rigs(stage_runner_max_running_jobs=1)
    running, waiting = [await rig.submit("alice", seconds=10) for _ in range(2)]
    await rig.clock.advance(1)
    await asyncio.wait_for(rig.queue.stop(), timeout=5)
    await rig.clock.advance(20)
    # Interrupted, not settled: it stays RUNNING for the next process to resume.
    assert rig.job(running.job_id).state == RUNNING and running.job_id not in rig.runner.finished
    assert waiting.job_id not in rig.runner.started
