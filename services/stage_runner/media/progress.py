"""The progress callback every media function accepts, and helpers to scale it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

ProgressCallback = Callable[[float, str], Awaitable[None]]
# A chain of stages reports (stage name, that stage's percent, message): each stage's own
# progress, never a figure for the whole chain (the stage runner alone weighs stages).
StageProgressCallback = Callable[[str, float, str], Awaitable[None]]


async def report(on_progress: ProgressCallback | None, percent: float, message: str) -> None:
    if on_progress is not None:
        await on_progress(max(0.0, min(100.0, percent)), message)


def scaled(on_progress: ProgressCallback | None, start: float, end: float) -> ProgressCallback | None:
    """A callback that maps a sub-step's 0..100 onto `start..end` of the caller's range."""
    if on_progress is None:
        return None

    async def _scaled(percent: float, message: str) -> None:
        await on_progress(start + (end - start) * max(0.0, min(100.0, percent)) / 100.0, message)

    return _scaled


def for_stage(on_stage_progress: StageProgressCallback | None, stage: str) -> ProgressCallback | None:
    """A stage's callback that reports its 0..100 under the stage's name."""
    if on_stage_progress is None:
        return None

    async def _for_stage(percent: float, message: str) -> None:
        await on_stage_progress(stage, max(0.0, min(100.0, percent)), message)

    return _for_stage
