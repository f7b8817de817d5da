"""Runs external model commands: argv only (no shell), in their own process group,
with a timeout, tqdm-style percentages turned into progress, cancel by killpg."""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import structlog

from libs.common import children
from libs.common.errors import VidsynthError
from services.stage_runner.media.progress import ProgressCallback

log = structlog.get_logger("vidsynth.stage_runner.external")

# tqdm prints "42%|████      | 42/100 [...]"; accept decimals too ("42.5%|").
_TQDM_PERCENT = re.compile(rb"(\d{1,3}(?:\.\d+)?)%\s*\|")
_LINE_BREAK = re.compile(rb"[\r\n]")
MAX_PENDING_BYTES = 64 * 1024
TERMINATE_GRACE_SECONDS = 1.0
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def render_template(template: str, values: dict[str, str]) -> str:
    """Fills `{name}` placeholders; an unknown one is a configuration error, not silently kept."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise VidsynthError(
                "STAGE_UNAVAILABLE", f"The backend command uses an unknown placeholder {{{name}}}."
            )
        return values[name]

    return _PLACEHOLDER.sub(fill, template)


class PercentParser:
    """Turns a stream of tqdm lines into one rising percentage over `bars` bars."""

    def __init__(self, bars: int = 1) -> None:
        self._bars = max(1, bars)
        self._completed_bars = 0
        self._last_bar_percent = 0.0
        self.percent = 0.0

    def feed(self, line: bytes) -> float | None:
        """The new overall percent when `line` moved it, else None."""
        matches = _TQDM_PERCENT.findall(line)
        if not matches:
            return None
        bar_percent = min(100.0, float(matches[-1]))
        if bar_percent < self._last_bar_percent:
            self._completed_bars = min(self._bars - 1, self._completed_bars + 1)
        self._last_bar_percent = bar_percent
        overall = min(99.0, (self._completed_bars * 100.0 + bar_percent) / self._bars)
        if int(overall) <= int(self.percent):
            return None
        self.percent = overall
        return overall


@dataclass
class CommandResult:
    returncode: int
    output_tail: list[str]


async def run_command(
    argv: list[str],
    *,
    cwd: Path | None,
    timeout_seconds: float,
    on_progress: ProgressCallback,
    label: str,
    progress_bars: int = 1,
) -> CommandResult:
    """Runs `argv` to completion; STAGE_TIMEOUT past `timeout_seconds`, CancelledError kills the group."""
    try:
        proc = await children.start(argv, cwd=cwd, stdout=children.PIPE, stderr=children.STDOUT)
    except children.ChildNotStartable as error:
        log.warning("external.not_startable", label=label, error=str(error))
        raise VidsynthError("STAGE_UNAVAILABLE", f"The {label} command could not be started.") from None
    parser = PercentParser(progress_bars)
    tail: deque[str] = deque(maxlen=40)

    async def handle(line: bytes) -> None:
        if not line.strip():
            return
        tail.append(line.decode(errors="replace")[-300:])
        percent = parser.feed(line)
        if percent is not None:
            await on_progress(percent, f"{label} {int(percent)}%")

    async def pump() -> None:
        assert proc.stdout is not None
        pending = b""
        while chunk := await proc.stdout.read(4096):
            pending += chunk
            *lines, pending = _LINE_BREAK.split(pending)
            for line in lines:
                await handle(line)
            if len(pending) > MAX_PENDING_BYTES:
                await handle(pending[-MAX_PENDING_BYTES:])
                pending = b""
        await handle(pending)

    try:
        async with asyncio.timeout(timeout_seconds):
            await pump()
            returncode = await proc.wait()
    except TimeoutError:
        log.warning("external.timeout", label=label, timeout=timeout_seconds, tail=list(tail)[-5:])
        raise VidsynthError(
            "STAGE_TIMEOUT", f"The {label} step took longer than {timeout_seconds:g} s."
        ) from None
    finally:
        # Cancelled (user cancel, shutdown), crashed, timed out, or done with grandchildren
        # left behind: the whole group ends here.
        await children.end_child(proc, TERMINATE_GRACE_SECONDS)
    if returncode != 0:
        log.warning("external.failed", label=label, returncode=returncode, tail=list(tail)[-10:])
        raise VidsynthError("STAGE_FAILED", f"The {label} step failed (exit status {returncode}).")
    return CommandResult(returncode, list(tail))
