"""Emergency cleanup: frees space in a safe order and stops once enough is free.

1. temp spools and work files of sessions not processing (keeping anything younger
   than a few minutes: it may belong to an upload or a job that is just starting);
2. every expired session (through SessionService);
3. outputs of sessions not processing, oldest first, never younger than the minimum
   retention.
Assets are never touched here, and nothing of a processing session is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from services.cleanup import fs
from services.cleanup.monitor import Level, ResourceMonitor, existing_ancestor
from services.cleanup.tasks import (
    CleanupContext,
    Outcome,
    expired_outputs,
    remove_finished_work,
    remove_stale_spools,
    run_outcome,
    sweep_expired_sessions,
)


@dataclass
class EmergencyReport:
    outcomes: list[Outcome]
    level_before: Level
    level_after: Level

    @property
    def bytes_freed(self) -> int:
        return sum(o.bytes_freed for o in self.outcomes)


async def _temp_and_work(ctx: CleanupContext, out: Outcome) -> None:
    min_age = ctx.settings.cleanup_emergency_min_age_seconds
    await remove_stale_spools(ctx, out, max_age=min_age)
    await remove_finished_work(ctx, out, max_age=min_age)


async def _all_expired_sessions(ctx: CleanupContext, out: Outcome) -> None:
    await sweep_expired_sessions(ctx, out, limit=0)


def _oldest_outputs(target_free_bytes: int):
    async def run(ctx: CleanupContext, out: Outcome) -> None:
        min_age = ctx.settings.cleanup_emergency_min_output_retention_seconds
        for entry in await expired_outputs(ctx, min_age):
            if await _enough_free(ctx, target_free_bytes):
                return
            freed = await asyncio.to_thread(fs.remove, entry.path)
            out.add(ctx.label(entry.path), freed)

    return run


async def _enough_free(ctx: CleanupContext, target_free_bytes: int) -> bool:
    if target_free_bytes <= 0:
        return False
    free = await asyncio.to_thread(fs.free_bytes, existing_ancestor(ctx.data_dir))
    return free >= target_free_bytes


async def emergency_cleanup(
    ctx: CleanupContext, monitor: ResourceMonitor, target_free_bytes: int = 0
) -> EmergencyReport:
    before = await asyncio.to_thread(monitor.sample)
    steps = [
        ("emergency_temp_and_work", _temp_and_work),
        ("emergency_expired_sessions", _all_expired_sessions),
        ("emergency_oldest_outputs", _oldest_outputs(target_free_bytes)),
    ]
    outcomes: list[Outcome] = []
    for name, step in steps:
        if await _enough_free(ctx, target_free_bytes):
            break
        outcomes.append(await run_outcome(name, ctx, step))
    after = await asyncio.to_thread(monitor.sample)
    return EmergencyReport(outcomes, before.level, after.level)
