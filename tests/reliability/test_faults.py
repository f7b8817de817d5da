"""Issue 11, item 1: each service SIGKILLed and, separately, SIGSTOPped during a job."""

from __future__ import annotations

import pytest

from tests.reliability.faults import FAULT_SERVICES, FAULT_SIGNALS, run_fault_case
from tests.reliability.redis_fault import DurableRedis, redis_mesh_env, run_redis_fault_case
from tests.support.mesh_process import MeshProcess

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sig", FAULT_SIGNALS)
@pytest.mark.parametrize("service", FAULT_SERVICES)
async def test_job_survives_the_fault(ready_mesh, tmp_path, service, sig):
    result = await run_fault_case(ready_mesh, service, sig, tmp_path)
    assert result.survived, result.problems
    # Simulated stages never fail, so every fault here is recovered, not just survived.
    assert result.outcome == "job.completed" and result.outputs_ok, result
    assert result.assets_kept and result.restarted
    assert result.sse_seqs == result.grpc_seqs, "both subscribers saw the same events"


@pytest.fixture(scope="module")
def redis_mesh(tmp_path_factory):
    base = tmp_path_factory.mktemp("redis-faults")
    server = DurableRedis(base / "redis")
    mesh = MeshProcess(base / "var", extra_env=redis_mesh_env(server.url))
    mesh.wait_up(90)
    yield mesh, server
    mesh.stop()
    server.stop()


@pytest.mark.parametrize("sig", FAULT_SIGNALS)
async def test_job_survives_redis_faults_in_the_scaled_set_up(redis_mesh, tmp_path, sig):
    mesh, server = redis_mesh
    mesh.wait_ready(90)
    result = await run_redis_fault_case(mesh, server, sig, tmp_path)
    # Recovered, or failed with a catalogued code; either way no gap and nothing lost.
    assert result.survived, result.problems
    assert result.outcome in ("job.completed", "job.failed")
    if result.outcome == "job.failed":
        # The job store went away: an outage to retry, never blamed on a stage.
        assert result.error_code == "SERVICE_UNAVAILABLE", result
    assert result.assets_kept
    assert result.sse_seqs == result.grpc_seqs
