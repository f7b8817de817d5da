"""Concurrency of stages across the jobs of one process: the GPU's slots and optional
per-stage limits (VIDSYNTH_STAGE_RUNNER_GPU_SLOTS, _STAGE_LIMITS)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from services.stage_runner.backends.base import stage_from_name
from services.stage_runner.config import StageRunnerSettings


class StageSlots:
    def __init__(self, stage_limits: dict[int, int], gpu_slots: int) -> None:
        self._stage_slots = {stage: asyncio.Semaphore(n) for stage, n in stage_limits.items()}
        self._gpu_slots = asyncio.Semaphore(gpu_slots)

    @classmethod
    def from_settings(cls, config: StageRunnerSettings) -> StageSlots:
        limits = {stage_from_name(name): n for name, n in config.stage_limits.items()}
        return cls(limits, config.stage_runner_gpu_slots)

    @contextlib.asynccontextmanager
    async def hold(self, stage: int, needs_gpu: bool) -> AsyncIterator[None]:
        """Holds one of the stage's slots (when it has a limit) and, for a backend that needs
        the GPU, a GPU slot, while the stage runs. CPU stages of different jobs (users) run
        side by side, so no user's short job waits for another's long stage on the CPU."""
        async with contextlib.AsyncExitStack() as held:
            slot = self._stage_slots.get(stage)
            if slot is not None:
                await held.enter_async_context(slot)
            if needs_gpu:
                await held.enter_async_context(self._gpu_slots)
            yield
