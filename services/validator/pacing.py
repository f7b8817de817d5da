"""How long an upload's next message may take to arrive. Three bounds, whichever comes
first: nothing at all for `idle_seconds` (DEADLINE_EXCEEDED), an average rate below
`min_bytes_per_second` once `grace_seconds` have passed, or the whole upload taking
longer than `max_seconds` (both UPLOAD_TOO_SLOW). A client trickling a byte every few
seconds passes the idle bound forever; it cannot pass the rate bound."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from libs.common.errors import VidsynthError

SLOW_RETRY_AFTER_SECONDS = 1.0


@dataclass
class TransferPace:
    idle_seconds: float
    min_bytes_per_second: float
    grace_seconds: float
    max_seconds: float
    clock: Callable[[], float] = time.monotonic
    received: int = 0
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def record(self, size: int) -> None:
        self.received += size

    def next_wait(self) -> tuple[float, str]:
        """(seconds the next message may take, which bound that is); zero or less: refuse now."""
        elapsed = self.clock() - self.started
        bounds = [(self.idle_seconds, "idle"), (self.max_seconds - elapsed, "total")]
        if self.min_bytes_per_second > 0:
            # The moment the bytes so far fall below the floor: their worth in seconds, after the grace.
            owed_by = self.grace_seconds + self.received / self.min_bytes_per_second
            bounds.append((owed_by - elapsed, "rate"))
        return min(bounds)

    def refusal(self, bound: str) -> VidsynthError:
        """The refusal for passing `bound`, as of now."""
        if bound == "idle":
            return VidsynthError(
                "DEADLINE_EXCEEDED", f"The upload stalled: nothing arrived for {self.idle_seconds:g} s."
            )
        if bound == "total":
            return VidsynthError(
                "UPLOAD_TOO_SLOW",
                f"The upload did not arrive in full within {self.max_seconds:g} s.",
                retry_after_seconds=SLOW_RETRY_AFTER_SECONDS,
            )
        elapsed = self.clock() - self.started
        rate = self.received / elapsed if elapsed > 0 else 0.0
        return VidsynthError(
            "UPLOAD_TOO_SLOW",
            f"The upload arrived at {rate:,.0f} bytes/s; at least {self.min_bytes_per_second:,.0f} "
            "bytes/s is needed.",
            retry_after_seconds=SLOW_RETRY_AFTER_SECONDS,
        )
