"""Fair shares between users with two stage_runner replicas on one real Redis: the per-user
caps hold cluster-wide, another user's job is next in line (and reported so from either
replica) whatever one user has queued, and it really starts first."""

from __future__ import annotations

import grpc
import pytest

from libs.common.rpc_status import error_from_rpc_error
from tests.scale.replicas import two_replicas
from tests.stage_runner.test_fair_queue import SCRIPT, cancel_all
from vidsynth.v1 import common_pb2

QUEUED, RUNNING = common_pb2.JOB_STATE_QUEUED, common_pb2.JOB_STATE_RUNNING
HEAVY_JOBS = 6


async def test_another_users_job_goes_next_on_whichever_replica_frees_first(
    in_process_mesh, redis_server, tmp_path
):
    async with two_replicas(
        in_process_mesh,
        redis_server,
        tmp_path,
        stage_runner_max_running_jobs=1,
        stage_runner_max_running_jobs_per_user=2,
        stage_runner_max_queued_jobs_per_user=HEAVY_JOBS - 2,
        stage_runner_simulation_seconds=0.5,
        stage_runner_heartbeat_seconds=0.2,
    ) as (a, b):
        alice_sessions = [await a.ready_session("alice") for _ in range(HEAVY_JOBS + 1)]
        alice = [
            await (a if i % 2 else b).start(s, SCRIPT, user="alice")
            for i, s in enumerate(alice_sessions[:HEAVY_JOBS])
        ]
        # Both replicas run one of alice's jobs; the other four wait, seen alike from both.
        for job in alice[:2]:
            await a.wait_for(job.job_id, lambda j: j.state == RUNNING, "alice")
        for mesh in (a, b):
            assert [(await mesh.get(j.job_id, "alice")).queue_position for j in alice[2:]] == [1, 2, 3, 4]

        with pytest.raises(grpc.RpcError) as caught:
            await b.start(alice_sessions[-1], SCRIPT, user="alice")
        error = error_from_rpc_error(caught.value)
        assert error.code == "USER_JOB_LIMIT_REACHED" and error.retry_after_seconds >= 5

        bob = await b.start(await b.ready_session("bob"), SCRIPT, user="bob")
        assert bob.queue_position == 1
        for mesh in (a, b):
            assert (await mesh.get(bob.job_id, "bob")).queue_position == 1
            behind = [await mesh.get(j.job_id, "alice") for j in alice[2:]]
            assert [j.queue_position for j in behind] == [2, 3, 4, 5]
            assert (await mesh.get(bob.job_id, "bob")).eta_seconds <= min(j.eta_seconds for j in behind)

        done = await a.wait_done(bob.job_id, "bob")
        assert done.state == common_pb2.JOB_STATE_COMPLETED
        third = await b.wait_for(alice[2].job_id, lambda j: j.state != QUEUED, "alice")
        assert done.start_time.ToNanoseconds() <= third.start_time.ToNanoseconds()
        await cancel_all(a, alice, "alice")


async def test_the_running_cap_per_user_leaves_a_replica_to_another_user(
    in_process_mesh, redis_server, tmp_path
):
    async with two_replicas(
        in_process_mesh,
        redis_server,
        tmp_path,
        stage_runner_max_running_jobs=1,
        stage_runner_max_running_jobs_per_user=1,
        stage_runner_simulation_seconds=5.0,
        stage_runner_heartbeat_seconds=0.2,
    ) as (a, b):
        alice = [
            await (a, b)[i].start(await a.ready_session("alice"), SCRIPT, user="alice") for i in range(2)
        ]
        running = await a.wait_for(alice[0].job_id, lambda j: j.state == RUNNING, "alice")
        assert running.state == RUNNING
        # One replica is idle, but alice runs her one job already.
        assert (await b.get(alice[1].job_id, "alice")).queue_position == 1
        bob = await a.start(await a.ready_session("bob"), SCRIPT, user="bob")
        assert bob.queue_position == 1
        await b.wait_for(bob.job_id, lambda j: j.state == RUNNING, "bob")
        assert (await a.get(alice[1].job_id, "alice")).state == QUEUED
        await cancel_all(a, [bob], "bob")
        await cancel_all(b, alice, "alice")
