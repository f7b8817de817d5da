"""Decode worker processes, as the validator sees them: each face photo is decoded,
searched for a face and re-encoded in a process of its own (decode_worker.py), never
on the event loop or a thread of the service.

A process per photo is what makes the bounds hold: its CPU time and address space are
capped by the kernel, it can be killed the moment its upload is abandoned or its
wall-clock deadline passes, and when it exits every page it touched is returned (a
decoder in the service's own heap kept hundreds of MB after a burst of bombs).
Starting Python with Pillow and OpenCV takes ~0.3 s of CPU, so a few workers are kept
started and waiting; taking one starts its replacement in the background.

Every worker goes through libs.common.children (own process group, ended and reaped on
every road out, and at shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import structlog

from libs.common import children
from libs.common.errors import CATALOG, VidsynthError
from services.validator import storage
from services.validator.config import ValidatorSettings
from services.validator.decode_limits import DecodeLimits
from services.validator.faces import Box

log = structlog.get_logger("vidsynth.validator.decode")

WORKER_ARGV = (sys.executable, "-m", "services.validator.decode_worker")
# One photo is one core's worth of work: no BLAS or OpenMP thread pools in a worker.
WORKER_ENV_OVERRIDES = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
# Signals that mean the worker hit its CPU cap (SIGPROF from its timer, SIGXCPU from
# RLIMIT_CPU behind it) or was killed for its size (SIGKILL: RLIMIT_CPU's hard limit,
# or the kernel's OOM killer) rather than crashed.
_CPU_CAP_SIGNALS = {signal.SIGPROF, signal.SIGXCPU}
# A crash in a C decoder on hostile bytes is the file's doing, not ours.
_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL}


def decode_limits(settings: ValidatorSettings) -> DecodeLimits:
    return DecodeLimits(
        min_side=settings.validator_image_min_side,
        max_side=settings.validator_image_max_side,
        max_pixels=settings.validator_image_max_pixels,
        max_scans=settings.validator_image_max_scans,
        max_expansion=settings.validator_image_max_expansion,
        expansion_free_bytes=settings.validator_image_expansion_free_bytes,
        face_min_size_ratio=settings.validator_face_min_size_ratio,
        cpu_seconds=settings.validator_decode_cpu_seconds,
        memory_bytes=settings.validator_decode_memory_bytes,
    )


@dataclass(frozen=True)
class DecodedPhoto:
    width: int
    height: int
    box: Box
    sha256: str


def _too_complex(detail: str) -> VidsynthError:
    return VidsynthError("IMAGE_TOO_COMPLEX", detail)


class DecodeWorkers:
    """Hands each photo to a fresh worker process. `start()` fills the warm spares;
    `close()` ends them (in-flight decodes end with their calls)."""

    def __init__(self, limits: DecodeLimits, wall_seconds: float, warm: int) -> None:
        self.limits = limits
        self.wall_seconds = wall_seconds
        self.warm = warm
        self._spares: list[asyncio.subprocess.Process] = []
        self._starting: set[asyncio.Task] = set()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: ValidatorSettings) -> DecodeWorkers:
        return cls(
            decode_limits(settings),
            settings.validator_decode_wall_seconds,
            settings.validator_decode_warm_workers,
        )

    async def start(self) -> None:
        self._replenish()
        if self._starting:
            await asyncio.gather(*self._starting, return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._starting):
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        spares, self._spares = self._spares, []
        await asyncio.gather(*(children.end_child(p, grace=0) for p in spares), return_exceptions=True)

    @staticmethod
    async def _spawn() -> asyncio.subprocess.Process:
        # stderr is the service's own: a worker only writes there when it crashes.
        return await children.start(
            WORKER_ARGV,
            stdin=children.PIPE,
            stdout=children.PIPE,
            stderr=None,
            env={**os.environ, **WORKER_ENV_OVERRIDES},
        )

    async def _add_spare(self) -> None:
        proc = await self._spawn()
        if self._closed:
            await children.end_child(proc, grace=0)
        else:
            self._spares.append(proc)

    def _replenish(self) -> None:
        missing = self.warm - len(self._spares) - len(self._starting)
        for _ in range(max(0, missing) if not self._closed else 0):
            task = asyncio.create_task(self._add_spare())
            self._starting.add(task)
            task.add_done_callback(self._started)

    def _started(self, task: asyncio.Task) -> None:
        self._starting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("decode.worker_not_started", error=str(task.exception()))

    async def _take(self) -> asyncio.subprocess.Process:
        while self._spares:
            proc = self._spares.pop()
            if proc.returncode is None:
                self._replenish()
                return proc
            await children.end_child(proc, grace=0)  # died while waiting: reap it
        self._replenish()
        return await self._spawn()

    async def decode_face(self, path: Path, detected: str, out_path: Path) -> DecodedPhoto:
        """The photo at `path` checked in a worker, its safe copy written to `out_path`
        (the caller deletes it on failure). Catalogued refusals as the worker found them;
        IMAGE_TOO_COMPLEX past the CPU cap or the wall-clock deadline."""
        request = {
            "path": str(path),
            "detected": detected,
            "out": str(out_path),
            "limits": self.limits.to_json(),
        }
        proc = await self._take()
        try:
            async with asyncio.timeout(self.wall_seconds):
                answer = await self._exchange(proc, request)
        except TimeoutError:
            raise _too_complex(
                f"The image took longer than {self.wall_seconds:g} s to check; it is refused."
            ) from None
        finally:
            # Killed at once however we leave: done, refused, timed out or cancelled.
            await children.end_child(proc, grace=0)
        return self._result(answer, proc)

    @staticmethod
    async def _exchange(proc: asyncio.subprocess.Process, request: dict) -> dict | None:
        assert proc.stdin is not None and proc.stdout is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            await proc.stdin.drain()
            proc.stdin.close()
        try:
            line = await proc.stdout.readline()
        except ValueError:  # a line over the stream's limit: not our worker talking
            line = b""
        await proc.wait()
        return json.loads(line) if line.strip() else None

    def _result(self, answer: dict | None, proc: asyncio.subprocess.Process) -> DecodedPhoto:
        if answer is None:
            raise self._death(proc.returncode)
        if not answer.get("ok"):
            code = answer.get("code")
            if code not in CATALOG:
                log.error("decode.unknown_refusal", code=code)
                raise VidsynthError("INTERNAL")
            if code == "INSUFFICIENT_STORAGE":
                raise storage.insufficient_storage()
            raise VidsynthError(code, answer.get("detail") or None)
        x, y, width, height = answer["box"]
        return DecodedPhoto(answer["width"], answer["height"], Box(x, y, width, height), answer["sha256"])

    def _death(self, returncode: int | None) -> VidsynthError:
        """What a worker that exited without answering means."""
        signum = -returncode if returncode is not None and returncode < 0 else None
        if signum in _CPU_CAP_SIGNALS:
            log.warning("decode.cpu_cap", cpu_seconds=self.limits.cpu_seconds, signal=signum)
            return _too_complex(
                f"The image needs more than {self.limits.cpu_seconds:g} s of CPU to check; it is refused."
            )
        if signum == signal.SIGKILL:
            log.warning("decode.killed", signal=signum)
            return _too_complex("The image needs too much time or memory to check; it is refused.")
        if signum in _CRASH_SIGNALS:
            log.error("decode.worker_crashed", signal=signum)
            return VidsynthError("FILE_CORRUPT", "The image could not be decoded; it is damaged.")
        log.error("decode.worker_failed", returncode=returncode)
        return VidsynthError("INTERNAL")
