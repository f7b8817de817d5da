"""The one way the mesh runs a child process (ffmpeg, ffprobe, espeak-ng, Piper, external
model commands, ...): each child gets its own process group, and leaving `child_process`
by any road (success, error, timeout, cancellation, shutdown) ends the whole group and
reaps it. No child outlives the call that started it.

`run` covers the common case (feed some bytes, collect the output, with a deadline);
`child_process` is for callers that stream to or from the child themselves.

Inside a trace, each child is a span named after its command, from start to reaping,
with its pid and exit status: never its arguments, which carry user data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from opentelemetry.trace import Span

from libs.common import tracing

log = structlog.get_logger("vidsynth.children")

PIPE = asyncio.subprocess.PIPE
DEVNULL = asyncio.subprocess.DEVNULL
STDOUT = asyncio.subprocess.STDOUT
TERMINATE_GRACE_SECONDS = 1.0
# What `run` keeps of a child's output: enough for any probe's JSON or a decoded clip,
# never an unbounded buffer.
DEFAULT_MAX_OUTPUT_BYTES = 512 * 1024 * 1024
_STDERR_KEEP_BYTES = 64 * 1024

# Every child started here and not yet reaped, so shutdown can end them all.
_live: set[asyncio.subprocess.Process] = set()
# The span of each traced child not reaped yet (see tracing.start_child_span); weak, so
# a child its caller never ended cannot keep its span alive.
_spans: weakref.WeakKeyDictionary[asyncio.subprocess.Process | subprocess.Popen, Span] = (
    weakref.WeakKeyDictionary()
)


class ChildTimeout(TimeoutError):
    """The child ran past its deadline; it has been killed and reaped."""


class ChildNotStartable(OSError):
    """The executable is missing or cannot be run."""


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def stderr_tail(self) -> str:
        return self.stderr.decode("utf-8", "replace")[-2000:]


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def end_child(proc: asyncio.subprocess.Process, grace: float = TERMINATE_GRACE_SECONDS) -> None:
    """SIGTERM the child's group, SIGKILL what is left after `grace`, reap the child.

    Safe to call more than once. Cancelling the caller does not skip the reaping: the
    wait is shielded and finished before the cancellation goes on.
    """
    try:
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
        # Grandchildren that kept the group alive after the child itself exited go too.
        _signal_group(proc.pid, signal.SIGKILL)
        await asyncio.shield(proc.wait())
    except asyncio.CancelledError:
        _signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            await asyncio.shield(proc.wait())
        raise
    finally:
        _live.discard(proc)
        tracing.end_child_span(_spans.pop(proc, None), proc.pid, proc.returncode)


async def start(
    argv: Sequence[str | Path],
    *,
    stdin: int | None = DEVNULL,
    stdout: int | None = DEVNULL,
    stderr: int | None = DEVNULL,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    traced: bool = True,
) -> asyncio.subprocess.Process:
    """Starts `argv` (never through a shell) in a process group of its own. Prefer
    `child_process`, which also ends it; whoever calls this must call `end_child`.
    `traced=False` for long-lived workers, whose lifetime is no step of any request."""
    child_span = tracing.start_child_span(argv[0]) if traced else None
    try:
        proc = await asyncio.create_subprocess_exec(
            *(str(a) for a in argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=str(cwd) if cwd else None,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as error:
        tracing.end_child_span(child_span, None, None)
        raise ChildNotStartable(str(error)) from None
    _live.add(proc)
    if child_span is not None:
        _spans[proc] = child_span
    return proc


@contextlib.asynccontextmanager
async def child_process(
    argv: Sequence[str | Path],
    *,
    stdin: int | None = DEVNULL,
    stdout: int | None = DEVNULL,
    stderr: int | None = DEVNULL,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    grace: float = TERMINATE_GRACE_SECONDS,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`async with child_process([...], stdout=PIPE) as proc:` the child lives only inside the block."""
    proc = await start(argv, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, env=env)
    try:
        yield proc
    finally:
        await end_child(proc, grace)


async def _read_bounded(
    proc: asyncio.subprocess.Process, stream: asyncio.StreamReader | None, limit: int, keep_tail: bool
) -> bytes:
    """All of `stream`; past `limit` bytes, its last `limit` bytes (`keep_tail`) or, for
    output the caller needs whole, OutputTooLarge once the child is killed and its pipe drained
    (a pipe left unread would keep the transport open after the child is gone)."""
    if stream is None:
        return b""
    parts: list[bytes] = []
    size = 0
    while chunk := await stream.read(256 * 1024):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            if not keep_tail:
                _signal_group(proc.pid, signal.SIGKILL)
                while await stream.read(256 * 1024):
                    pass
                raise OutputTooLarge(limit)
            joined = b"".join(parts)
            parts, size = [joined[-limit:]], limit
    return b"".join(parts)


class OutputTooLarge(ValueError):
    """The child wrote more than the caller allowed; it has been ended."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"child output over {limit} bytes")
        self.limit = limit


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        return  # the child stopped reading; its exit status tells why
    finally:
        proc.stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await proc.stdin.wait_closed()


async def run(
    argv: Sequence[str | Path],
    *,
    time_limit: float,
    input: bytes | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
) -> Completed:
    """Runs `argv` to its end with `input` on stdin; ChildTimeout past `time_limit` seconds,
    ChildNotStartable when it cannot start, OutputTooLarge past `max_output_bytes` of stdout.
    The child is ended and reaped on every one of those, and on cancellation."""
    async with child_process(
        argv, stdin=PIPE if input is not None else DEVNULL, stdout=PIPE, stderr=PIPE, cwd=cwd, env=env
    ) as proc:
        work = [
            asyncio.ensure_future(_read_bounded(proc, proc.stdout, max_output_bytes, keep_tail=False)),
            asyncio.ensure_future(_read_bounded(proc, proc.stderr, _STDERR_KEEP_BYTES, keep_tail=True)),
        ]
        if input is not None:
            work.append(asyncio.ensure_future(_feed(proc, input)))
        try:
            async with asyncio.timeout(time_limit):
                results = await asyncio.gather(*work)
                returncode = await proc.wait()
        except TimeoutError:
            raise ChildTimeout(f"{Path(str(argv[0])).name} ran past {time_limit:g} s") from None
        finally:
            for task in work:
                task.cancel()
            await asyncio.gather(*work, return_exceptions=True)
        return Completed(returncode, results[0], results[1])


def popen_in_group(argv: Sequence[str | Path], **kwargs) -> subprocess.Popen:
    """Blocking `subprocess.Popen` in a group of its own, for the rare caller that must
    spawn from a worker thread (see validator.audio_prestart); end it with `end_popen`."""
    child_span = tracing.start_child_span(argv[0])
    try:
        proc = subprocess.Popen([str(a) for a in argv], start_new_session=True, **kwargs)
    except BaseException:
        tracing.end_child_span(child_span, None, None)
        raise
    if child_span is not None:
        _spans[proc] = child_span
    return proc


def end_popen(proc: subprocess.Popen, grace: float = TERMINATE_GRACE_SECONDS) -> int:
    """Blocking twin of `end_child` for `popen_in_group` children."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    _signal_group(proc.pid, signal.SIGKILL)
    returncode = proc.wait()
    tracing.end_child_span(_spans.pop(proc, None), proc.pid, returncode)
    return returncode


def live_children() -> list[int]:
    """Pids of the children started here that have not been reaped yet."""
    return [proc.pid for proc in _live]


async def end_all_children() -> None:
    """At shutdown: whatever is still running is ended and reaped."""
    if _live:
        log.warning("children.ending_at_shutdown", pids=live_children())
        await asyncio.gather(*(end_child(proc) for proc in list(_live)), return_exceptions=True)
