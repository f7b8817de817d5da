"""Decode workers, as the validator sees them: each face photo is decoded, searched for
a face and re-encoded in a process of its own, never on the event loop or a thread of
the service.

A process per photo is what makes the bounds hold: its CPU time and address space are
capped by the kernel, it is killed the moment its upload is abandoned or its wall-clock
deadline passes, and when it exits every page it touched is returned (a decoder in the
service's own heap kept hundreds of MB after a burst of bombs). Starting Python with
Pillow and OpenCV costs most of a second of CPU, so the processes are forked from one
that has them loaded (decode_worker.py): a photo costs a fork, not a start.

That worker is the validator's child through libs.common.children (own process group,
so ending it ends every photo process too: on shutdown, or when it stops answering),
and it kills and reaps the photo processes it forked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from libs.common import children, tracing
from libs.common.errors import CATALOG, VidsynthError
from services.validator import storage
from services.validator.config import ValidatorSettings
from services.validator.decode_limits import DecodeLimits
from services.validator.faces import Box

log = structlog.get_logger("vidsynth.validator.decode")

WORKER_ARGV = (sys.executable, "-m", "services.validator.decode_worker")
# One photo is one core's worth of work: no BLAS or OpenMP thread pools, which would also
# make forking unsafe.
WORKER_ENV_OVERRIDES = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
# How long a killed photo process may take to be reported reaped before the whole worker
# (and every photo process in its group) is ended instead.
KILL_REPORT_SECONDS = 5.0
# Signals that mean the photo process hit its CPU cap (SIGPROF from its timer, SIGXCPU from
# RLIMIT_CPU behind it) or was killed for its size (SIGKILL: RLIMIT_CPU's hard limit, or
# the kernel's OOM killer) rather than crashed.
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


def _trace_phases(answer: dict) -> None:
    """The photo process's steps (decode, face, safe_copy) as spans of the current one."""
    phases = answer.get("phases")
    if not isinstance(phases, dict):
        return
    code = "" if answer.get("ok") else str(answer.get("code") or "")
    for name, (started, ended, ok) in sorted(phases.items(), key=lambda item: item[1][0]):
        tracing.record_span(f"check {name.replace('_', ' ')}", started, ended, error="" if ok else code)


def _too_complex(detail: str) -> VidsynthError:
    return VidsynthError("IMAGE_TOO_COMPLEX", detail)


@dataclass
class _Worker:
    proc: asyncio.subprocess.Process
    reader: asyncio.Task | None = None
    # Photo processes in flight, by id: the future gets the worker's report of their end.
    waiting: dict[int, asyncio.Future] = field(default_factory=dict)


class DecodeWorkers:
    """Runs each photo in a process forked by the decode worker. `start()` starts the
    worker (it is restarted on demand if it dies); `close()` ends it and every photo
    process with it."""

    def __init__(self, limits: DecodeLimits, wall_seconds: float) -> None:
        self.limits = limits
        self.wall_seconds = wall_seconds
        self._worker: _Worker | None = None
        self._starting = asyncio.Lock()
        self._ids = itertools.count(1)

    @classmethod
    def from_settings(cls, settings: ValidatorSettings) -> DecodeWorkers:
        return cls(decode_limits(settings), settings.validator_decode_wall_seconds)

    async def start(self) -> None:
        await self._running()

    async def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            await self._end(worker)

    @property
    def pid(self) -> int | None:
        return self._worker.proc.pid if self._worker else None

    async def _running(self) -> _Worker:
        async with self._starting:
            if self._worker is None or self._worker.proc.returncode is not None:
                proc = await children.start(
                    WORKER_ARGV,
                    stdin=children.PIPE,
                    stdout=children.PIPE,
                    stderr=None,  # the service's own: only tracebacks of crashes go there
                    env={**os.environ, **WORKER_ENV_OVERRIDES},
                    traced=False,  # one worker serves every upload
                )
                worker = _Worker(proc)
                worker.reader = asyncio.create_task(self._read_reports(worker))
                self._worker = worker
            return self._worker

    async def _read_reports(self, worker: _Worker) -> None:
        """Hands each photo process's end to whoever waits for it, until the worker stops."""
        assert worker.proc.stdout is not None
        try:
            while line := await worker.proc.stdout.readline():
                report = json.loads(line)
                waiter = worker.waiting.pop(report["id"], None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(report)
        except (ValueError, KeyError) as error:  # not our worker talking: stop trusting it
            log.error("decode.worker_garbled", error=str(error))
        finally:
            if self._worker is worker:
                self._worker = None
            # Its photo processes are in its process group: ended with it.
            await children.end_child(worker.proc, grace=0)
            for job_id, waiter in list(worker.waiting.items()):
                if not waiter.done():
                    waiter.set_result({"id": job_id, "answer": None, "signal": 0, "exit": -1})

    async def _end(self, worker: _Worker) -> None:
        await children.end_child(worker.proc, grace=0)
        if worker.reader is not None:
            await asyncio.gather(worker.reader, return_exceptions=True)

    @staticmethod
    async def _send(worker: _Worker, message: dict) -> None:
        assert worker.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            worker.proc.stdin.write(json.dumps(message).encode() + b"\n")
            await worker.proc.stdin.drain()

    async def decode_face(self, path: Path, detected: str, out_path: Path) -> DecodedPhoto:
        """The photo at `path` checked in a process of its own, its safe copy written to
        `out_path` (the caller deletes it on failure; the process is gone by then).
        Catalogued refusals as the process found them; IMAGE_TOO_COMPLEX past the CPU
        cap or the wall-clock deadline."""
        worker = await self._running()
        job_id = next(self._ids)
        ended = asyncio.get_running_loop().create_future()
        worker.waiting[job_id] = ended
        request = {
            "path": str(path),
            "detected": detected,
            "out": str(out_path),
            "limits": self.limits.to_json(),
        }
        try:
            await self._send(worker, {"op": "decode", "id": job_id, "request": request})
            async with asyncio.timeout(self.wall_seconds):
                report = await asyncio.shield(ended)
        except TimeoutError:
            await self._kill(worker, job_id, ended)
            raise _too_complex(
                f"The image took longer than {self.wall_seconds:g} s to check; it is refused."
            ) from None
        except asyncio.CancelledError:
            # The upload was abandoned: its photo process goes at once, and is gone before
            # the caller removes the partial safe copy it may be writing.
            await asyncio.shield(self._kill(worker, job_id, ended))
            raise
        finally:
            worker.waiting.pop(job_id, None)
        _trace_phases(report.get("answer") or {})
        return self._result(report)

    async def _kill(self, worker: _Worker, job_id: int, ended: asyncio.Future) -> None:
        if ended.done():
            return
        await self._send(worker, {"op": "kill", "id": job_id})
        try:
            await asyncio.wait_for(asyncio.shield(ended), KILL_REPORT_SECONDS)
        except TimeoutError:
            log.error("decode.worker_unresponsive", job_id=job_id)
            if self._worker is worker:
                self._worker = None
            await self._end(worker)

    def _result(self, report: dict) -> DecodedPhoto:
        answer = report.get("answer")
        if answer is None:
            raise self._death(report)
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

    def _death(self, report: dict) -> VidsynthError:
        """What a photo process that ended without answering means."""
        signum = report.get("signal") or None
        if signum in _CPU_CAP_SIGNALS:
            log.warning("decode.cpu_cap", cpu_seconds=self.limits.cpu_seconds, signal=signum)
            return _too_complex(
                f"The image needs more than {self.limits.cpu_seconds:g} s of CPU to check; it is refused."
            )
        if signum == signal.SIGKILL:
            log.warning("decode.killed", signal=signum)
            return _too_complex("The image needs too much time or memory to check; it is refused.")
        if signum in _CRASH_SIGNALS:
            log.error("decode.crashed", signal=signum)
            return VidsynthError("FILE_CORRUPT", "The image could not be decoded; it is damaged.")
        log.error("decode.failed", signal=signum, exit=report.get("exit"))
        return VidsynthError("INTERNAL")
