"""The progress callback every media function accepts, and helpers to scale it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

ProgressCallback = Callable[[float, str], Awaitable[None]]


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
