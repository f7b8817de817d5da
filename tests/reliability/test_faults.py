"""Issue 11, item 1: each service SIGKILLed and, separately, SIGSTOPped during a job."""

from __future__ import annotations

import pytest

from tests.reliability.faults import FAULT_SERVICES, FAULT_SIGNALS, run_fault_case

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
