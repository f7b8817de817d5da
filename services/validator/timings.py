"""Per-phase wall-clock timings of one upload, logged at debug level so a slow upload
can be explained (`VIDSYNTH_LOG_LEVEL=debug`; `python -m bench.upload --timings` prints
their medians)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Iterator
from typing import TypeVar

import structlog

log = structlog.get_logger("vidsynth.validator.timings")

T = TypeVar("T")


class PhaseTimings:
    """Milliseconds spent per named phase; a phase entered twice accumulates."""

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self.ms: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.ms[name] = round(self.ms.get(name, 0.0) + seconds * 1000, 1)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    async def timed(self, name: str, awaitable: Awaitable[T]) -> T:
        with self.phase(name):
            return await awaitable

    def log(self, event: str = "upload.timings") -> None:
        log.debug(event, total_ms=round((time.perf_counter() - self._started) * 1000, 1), phases_ms=self.ms)
