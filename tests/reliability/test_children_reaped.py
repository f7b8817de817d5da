"""Issue 15, item 2: no helper process outlives its job. On a real mesh running the built-in
backends (real ffmpeg, ffprobe, the speech worker), 20 jobs are started and cancelled at
random moments, and the stage runner is stopped (SIGTERM) mid-job; afterwards no process is
left running under any service but each service's one resident worker (children_left.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import psutil
import pytest

from tests.reliability.children_left import (
    BUILTIN_MESH_ENV,
    SCRIPT,
    all_descendants,
    describe,
    helpers_of,
    mesh_helpers,
    ready_session,
    start_and_cancel,
    still_running,
)
from tests.reliability.faults import child_pid
from tests.support.identities import API_KEYS
from tests.support.mesh_process import MeshProcess
from vidsynth.http_client import GatewayClient

pytestmark = pytest.mark.slow
JOBS = 20
HELPER_WAIT_SECONDS = 60.0


@pytest.fixture(scope="module")
def builtin_mesh(tmp_path_factory):
    mesh = MeshProcess(tmp_path_factory.mktemp("children") / "var", extra_env=BUILTIN_MESH_ENV)
    mesh.wait_up(90)
    yield mesh
    mesh.stop()


async def test_jobs_cancelled_at_random_moments_leave_no_helper_running(builtin_mesh):
    builtin_mesh.wait_ready(90)
    result = await start_and_cancel(builtin_mesh, JOBS)
    assert result.cycles == JOBS
    assert result.cancelled == JOBS, result.other_outcomes
    # The cancels really hit running helpers (else this proves nothing).
    assert result.helpers_at_cancel >= JOBS // 4, result
    assert result.left == [], result.left


async def wait_for_helper(pid: int, timeout: float = HELPER_WAIT_SECONDS) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = helpers_of(pid)
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError("the job never started a helper process")


async def test_sigterm_of_the_stage_runner_mid_job_leaves_no_helper(builtin_mesh):
    builtin_mesh.wait_ready(90)
    async with GatewayClient(builtin_mesh.url, API_KEYS["alice"], timeout=120) as client:
        session_id = await ready_session(client)
        job = await client.start_job(session_id, {"script_text": SCRIPT})
        runner = child_pid(builtin_mesh, "stage_runner")
        await wait_for_helper(runner)
        # Everything under it, its resident speech worker too, must end with it.
        helpers = all_descendants(runner)
        os.kill(runner, signal.SIGTERM)
        await asyncio.to_thread(psutil.Process(runner).wait, 30)
        left = await asyncio.to_thread(still_running, helpers)
        assert left == [], [describe(p) for p in left]

        # `up` restarts the runner, which resumes the job; end it and look again.
        builtin_mesh.wait_ready(90)
        await client.cancel_job(job["job_id"])
    left = await asyncio.to_thread(still_running, mesh_helpers(builtin_mesh))
    assert left == [], [describe(p) for p in left]
