"""Issue 15, item 3 on a real `vidsynth up` mesh with its default queue settings: one user
starting more jobs than her share is refused with USER_JOB_LIMIT_REACHED (429, Retry-After),
and another user's job is at most second in line, and starts so."""

from __future__ import annotations

import pytest

from tests.reliability.fair_share import HEAVY_JOBS, heavy_user

pytestmark = pytest.mark.slow


async def test_one_user_cannot_hold_the_queue_against_another(ready_mesh):
    result = await heavy_user(ready_mesh)
    # Defaults: one of her jobs runs, five wait, the seventh is refused.
    assert result.heavy_accepted == HEAVY_JOBS
    assert result.heavy_refused == ["429 USER_JOB_LIMIT_REACHED"]
    assert int(result.heavy_retry_after[0]) >= 5
    assert result.other_position <= 2
    assert result.heavy_started_first == 0
