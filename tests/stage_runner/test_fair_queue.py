"""Fair shares between users in one stage runner: per-user caps on waiting and running jobs
(USER_JOB_LIMIT_REACHED with RetryInfo), another user's job next in line whatever one user
has queued, positions and ETAs that follow that order, GPU stages taking turns while CPU
stages of different jobs run side by side, and a cancel that lands before a dequeued job's
first step."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from libs.common.identity import Identity, current_identity
from libs.common.rpc_status import error_from_rpc_error
from services.stage_runner.stage_slots import StageSlots
from tests.support.identities import user_metadata
from vidsynth.v1 import common_pb2, session_pb2, stage_runner_pb2

QUEUED, RUNNING = common_pb2.JOB_STATE_QUEUED, common_pb2.JOB_STATE_RUNNING
SCRIPT = "One sentence, please."


async def cancel_all(mesh, jobs, user: str) -> None:
    for job in jobs:
        current = await mesh.get(job.job_id, user)
        if current.state in (QUEUED, RUNNING):
            await mesh.runner.CancelJob(
                stage_runner_pb2.CancelJobRequest(job_id=job.job_id), metadata=user_metadata(user)
            )


async def test_a_users_full_share_refuses_and_another_users_job_goes_ahead(start_mesh):
    # The queue's rule on a fake clock: test_queue_in_process.py; here, through the mesh.
    mesh = await start_mesh(
        stage_runner_max_running_jobs=1,
        stage_runner_max_running_jobs_per_user=1,
        stage_runner_max_queued_jobs_per_user=1,
        stage_runner_simulation_seconds=5.0,
    )
    alice_sessions = [await mesh.ready_session("alice") for _ in range(3)]
    alice = [await mesh.start(s, SCRIPT, user="alice") for s in alice_sessions[:2]]
    assert [j.queue_position for j in alice] == [1, 1]

    # Alice's waiting room is full: her third job is refused, with when to retry.
    with pytest.raises(grpc.RpcError) as caught:
        await mesh.start(alice_sessions[-1], SCRIPT, user="alice")
    error = error_from_rpc_error(caught.value)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.code == "USER_JOB_LIMIT_REACHED" and error.retry_after_seconds >= 5
    assert error.metadata == {"waiting": "1", "limit": "1"}
    assert await mesh.session_state(alice_sessions[-1], "alice") == session_pb2.SESSION_STATE_READY

    bob = await mesh.start(await mesh.ready_session("bob"), SCRIPT, user="bob")
    assert bob.queue_position == 1
    waiting = await mesh.get(alice[1].job_id, "alice")
    assert waiting.state == QUEUED and waiting.queue_position == 2
    assert bob.eta_seconds < waiting.eta_seconds
    await cancel_all(mesh, [bob], "bob")
    await cancel_all(mesh, alice, "alice")


async def test_a_free_slot_goes_to_another_user_not_to_a_user_at_the_cap(start_mesh):
    mesh = await start_mesh(
        stage_runner_max_running_jobs=2,
        stage_runner_max_running_jobs_per_user=1,
        stage_runner_simulation_seconds=5.0,
    )
    alice = [await mesh.start(await mesh.ready_session("alice"), SCRIPT, user="alice") for _ in range(2)]
    await mesh.wait_for(alice[0].job_id, lambda j: j.state == RUNNING, "alice")
    await asyncio.sleep(0.3)
    # A run slot is free, but alice already runs her share.
    assert (await mesh.get(alice[1].job_id, "alice")).state == QUEUED
    bob = await mesh.start(await mesh.ready_session("bob"), SCRIPT, user="bob")
    assert bob.queue_position == 1
    await mesh.wait_for(bob.job_id, lambda j: j.state == RUNNING, "bob")
    assert (await mesh.get(alice[1].job_id, "alice")).queue_position == 1
    await cancel_all(mesh, [bob], "bob")
    await cancel_all(mesh, alice, "alice")


async def test_a_cancel_before_the_jobs_first_step_still_settles_it(start_mesh):
    mesh = await start_mesh(stage_runner_simulation_seconds=5.0)
    session_id = await mesh.ready_session()
    jobs = mesh.wiring.jobs
    current_identity.set(Identity("alice"))
    request = stage_runner_pb2.StartJobRequest(
        session_id=session_id, spec=stage_runner_pb2.JobSpec(script_text=SCRIPT)
    )
    started = await jobs.start(request)
    # Dequeued at once, its task created but not yet run: the cancel comes first.
    assert jobs.queue.running_task(started.job_id) is not None
    cancelled = await jobs.cancel(started.job_id)
    assert cancelled.state == common_pb2.JOB_STATE_CANCELLED
    assert (await mesh.get(started.job_id)).state == common_pb2.JOB_STATE_CANCELLED
    assert await mesh.session_state(session_id) == session_pb2.SESSION_STATE_READY
    assert jobs.queue.live_job(started.job_id) is None


async def test_gpu_stages_take_turns_while_cpu_stages_run_side_by_side():
    slots = StageSlots(stage_limits={}, gpu_slots=1)
    spans: dict[str, tuple[float, float]] = {}

    async def stage(name: str, stage_id: int, needs_gpu: bool) -> None:
        async with slots.hold(stage_id, needs_gpu):
            began = time.monotonic()
            await asyncio.sleep(0.2)
            spans[name] = (began, time.monotonic())

    await asyncio.gather(
        stage("xtts", common_pb2.STAGE_VOICE, True),
        stage("sadtalker", common_pb2.STAGE_ANIMATE, True),
        stage("espeak", common_pb2.STAGE_VOICE, False),
        stage("builtin-animate", common_pb2.STAGE_ANIMATE, False),
    )
    # The two GPU stages (different stages, different jobs) never overlapped...
    first, second = sorted([spans["xtts"], spans["sadtalker"]])
    assert first[1] <= second[0]
    # ...while the CPU ones ran alongside them.
    assert spans["espeak"][0] < first[1] and spans["builtin-animate"][0] < first[1]


async def test_two_users_jobs_run_their_stages_side_by_side_by_default(start_mesh):
    mesh = await start_mesh(stage_runner_simulation_seconds=0.5)
    jobs = [await mesh.start(await mesh.ready_session(user), SCRIPT, user=user) for user in ("alice", "bob")]
    done = [await mesh.wait_done(job.job_id, user) for job, user in zip(jobs, ("alice", "bob"), strict=True)]
    voice = [next(s for s in job.stages if s.stage == common_pb2.STAGE_VOICE) for job in done]
    # No default per-stage limit: bob's voice stage did not wait for alice's to end.
    assert max(s.start_time.ToNanoseconds() for s in voice) < min(s.end_time.ToNanoseconds() for s in voice)
