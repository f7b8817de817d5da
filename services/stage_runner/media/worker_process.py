"""A long-lived child process that answers one JSON line per JSON line request.

It keeps a model loaded between jobs (Piper's voice) instead of paying its start-up per job.
Started through `libs.common.children` (own process group), so a crash, a timeout, a cancelled
caller or the service's shutdown ends and reaps it; the next call starts a fresh one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sys
from collections.abc import Sequence

import structlog

from libs.common import children

log = structlog.get_logger("stage_runner.media.worker")

_STDERR_LINES_KEPT = 40


class WorkerFailed(RuntimeError):
    """The worker could not start, died, answered garbage or ran past its time; it has been ended."""


class WorkerProcess:
    def __init__(self, module: str, name: str, extra_argv: Sequence[str] = ()) -> None:
        self._argv = [sys.executable, "-m", module, *extra_argv]
        self.name = name
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES_KEPT)
        self._lock = asyncio.Lock()
        self.starts = 0

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    async def _start(self) -> asyncio.subprocess.Process:
        try:
            proc = await children.start(
                self._argv, stdin=children.PIPE, stdout=children.PIPE, stderr=children.PIPE, traced=False
            )
        except children.ChildNotStartable as error:
            raise WorkerFailed(f"{self.name} worker cannot start: {error}") from None
        self._stderr_task = asyncio.create_task(self._drain_stderr(proc))
        self.starts += 1
        log.info("worker.started", worker=self.name, pid=proc.pid)
        return proc

    async def _drain_stderr(self, proc: asyncio.subprocess.Process) -> None:
        # Read continuously: a full stderr pipe would stall the worker.
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            self._stderr_tail.append(line.decode("utf-8", "replace").rstrip()[:300])

    async def call(self, request: dict, *, time_limit: float) -> dict:
        """One request, one answer; WorkerFailed (worker ended) on any failure of the process."""
        async with self._lock:
            if not self.running:
                await self._end()
                self._proc = await self._start()
            proc = self._proc
            assert proc is not None and proc.stdin is not None and proc.stdout is not None
            try:
                async with asyncio.timeout(time_limit):
                    proc.stdin.write(json.dumps(request).encode("utf-8") + b"\n")
                    await proc.stdin.drain()
                    line = await proc.stdout.readline()
            except TimeoutError:
                await self._end()
                raise WorkerFailed(f"{self.name} worker ran past {time_limit:g} s") from None
            except (BrokenPipeError, ConnectionResetError, ValueError, asyncio.LimitOverrunError):
                # ValueError: an answer line past the reader's 64 KiB limit (callers send one
                # chunk of script per request, whose answer is a few KiB).
                line = b""
            except asyncio.CancelledError:
                # A half-answered request would desynchronise the next one: start afresh.
                await self._end()
                raise
            if not line:
                await self._end()
                raise WorkerFailed(f"{self.name} worker died: {' | '.join(list(self._stderr_tail)[-3:])}")
            try:
                answer = json.loads(line)
            except ValueError:
                await self._end()
                raise WorkerFailed(f"{self.name} worker answered something that is not JSON") from None
            if not isinstance(answer, dict):
                await self._end()
                raise WorkerFailed(f"{self.name} worker answered something that is not an object")
            return answer

    async def _end(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            await children.end_child(proc)
            log.info("worker.ended", worker=self.name, pid=proc.pid)
        task, self._stderr_task = self._stderr_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        async with self._lock:
            await self._end()
