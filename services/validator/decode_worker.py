"""The decode worker: `python -m services.validator.decode_worker`, started by the
validator (decode_workers.py) through libs.common.children.

It imports Pillow and OpenCV and loads the face cascade once, then forks one child per
photo (a fork costs milliseconds; starting Python with those libraries costs most of a
second of CPU). The child caps its own CPU time (a profiling timer, RLIMIT_CPU behind it)
and address space (RLIMIT_AS: a MemoryError) before it reads a byte of the photo, does the
bounded decode, the face search and the safe copy, writes its answer to a pipe and exits,
so every page it touched goes back to the system. This process itself never decodes.

Protocol, one JSON object per line:
  stdin   {"op": "decode", "id": 7, "request": {...}}   fork a child for a photo
          {"op": "kill", "id": 7}                         SIGKILL that child (if still running)
  stdout  {"id": 7, "answer": {...} | null, "signal": 0, "exit": 0}
          once the child is reaped; `answer` is null when it died before answering.
EOF on stdin (the validator stopped or went away) kills every child, reaps it and exits.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import selectors
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import cv2

from libs.common.errors import VidsynthError
from services.validator import faces
from services.validator.decode_limits import DecodeLimits
from services.validator.face_photo import check_face_photo
from services.validator.storage import out_of_space

MAX_LINE_BYTES = 64 * 1024
# A child that dies in an unexpected way exits with this (its traceback is on stderr).
CHILD_FAILED_EXIT = 70


def _address_space_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def cap_resources(limits: DecodeLimits) -> None:
    """From here on: `cpu_seconds` of CPU time and `memory_bytes` more address space than
    the process holds now; no core files. A forked child starts with no CPU time used and
    no interval timer, so both count from zero.

    The CPU cap is a profiling timer (CPU time of every thread; SIGPROF, whose default
    action ends the process wherever it is, C decoder included), backed by RLIMIT_CPU
    (whole seconds only: SIGXCPU, then SIGKILL)."""
    signal.setitimer(signal.ITIMER_PROF, limits.cpu_seconds)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(usage.ru_utime + usage.ru_stime + limits.cpu_seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    space = _address_space_bytes() + limits.memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (space, space))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def refusal(code: str, detail: str | None = None) -> dict:
    return {"ok": False, "code": code, "detail": detail}


def run_job(request: dict) -> dict:
    """One photo, in the forked child: the answer to send back (a result or a refusal),
    with the timings of the steps it took (`phases`)."""
    phases: dict[str, list] = {}
    answer = _run_job(request, phases)
    answer["phases"] = phases
    return answer


def _run_job(request: dict, phases: dict[str, list]) -> dict:
    limits = DecodeLimits.from_json(request["limits"])
    cap_resources(limits)
    try:
        photo = check_face_photo(
            Path(request["path"]), request["detected"], Path(request["out"]), limits, phases
        )
    except VidsynthError as error:
        return refusal(error.code, error.detail)
    except MemoryError:
        return refusal("IMAGE_TOO_COMPLEX", "The image needs more memory to decode than allowed.")
    except cv2.error as error:
        # OpenCV reports its own allocation failures this way.
        if "memory" in str(error).lower():
            return refusal("IMAGE_TOO_COMPLEX", "The image needs more memory to decode than allowed.")
        raise
    except OSError as error:
        if out_of_space(error):
            return refusal("INSUFFICIENT_STORAGE")
        raise
    box = photo.box
    return {
        "ok": True,
        "width": photo.width,
        "height": photo.height,
        "box": [box.x, box.y, box.width, box.height],
        "sha256": photo.sha256,
    }


@dataclass
class Job:
    pid: int
    answer_fd: int


class Zygote:
    """Forks, kills and reaps the children; reports each one's end on stdout."""

    def __init__(self) -> None:
        self.jobs: dict[int, Job] = {}
        self.selector = selectors.DefaultSelector()
        self.stdin = sys.stdin.fileno()
        self.pending = b""
        self.wake_read, self.wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # SIGCHLD only has to wake the selector; reaping happens in the loop.
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_write)
        self.selector.register(self.stdin, selectors.EVENT_READ)
        self.selector.register(self.wake_read, selectors.EVENT_READ)

    def serve(self) -> None:
        while True:
            for key, _ in self.selector.select():
                if key.fd == self.stdin:
                    if not self.read_commands():
                        self.shut_down()
                        return
                else:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_read, 4096)
            self.reap()

    def read_commands(self) -> bool:
        """Runs every complete line read; False at EOF."""
        data = os.read(self.stdin, MAX_LINE_BYTES)
        if not data:
            return False
        *lines, self.pending = (self.pending + data).split(b"\n")
        if len(self.pending) > MAX_LINE_BYTES:
            raise ValueError("a command line longer than allowed")
        for line in lines:
            if line.strip():
                self.command(json.loads(line))
        return True

    def command(self, message: dict) -> None:
        job_id = message["id"]
        if message["op"] == "decode":
            self.fork(job_id, message["request"])
        elif message["op"] == "kill" and job_id in self.jobs:
            # Still ours (not reaped yet), so the pid cannot have been reused.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.jobs[job_id].pid, signal.SIGKILL)

    def fork(self, job_id: int, request: dict) -> None:
        answer_read, answer_write = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(answer_read)
            self.become_job(answer_write, request)
        os.close(answer_write)
        self.jobs[job_id] = Job(pid, answer_read)

    def become_job(self, answer_fd: int, request: dict) -> None:
        code = CHILD_FAILED_EXIT
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.selector.close()
            os.close(self.wake_read)
            os.close(self.wake_write)
            for job in self.jobs.values():
                os.close(job.answer_fd)
            os.close(self.stdin)
            answer = json.dumps(run_job(request)).encode()
            os.write(answer_fd, answer)  # well under a pipe's buffer: never blocks
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)

    def reap(self) -> None:
        while self.jobs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job_id = next((i for i, job in self.jobs.items() if job.pid == pid), None)
            if job_id is not None:
                self.report(job_id, self.jobs.pop(job_id), status)

    def report(self, job_id: int, job: Job, status: int) -> None:
        chunks = []
        while chunk := os.read(job.answer_fd, 65536):  # the child is gone: EOF follows its answer
            chunks.append(chunk)
        os.close(job.answer_fd)
        try:
            answer = json.loads(b"".join(chunks))
        except ValueError:
            answer = None  # killed before it answered
        exited = os.WIFEXITED(status)
        line = {
            "id": job_id,
            "answer": answer,
            "signal": 0 if exited else os.WTERMSIG(status),
            "exit": os.WEXITSTATUS(status) if exited else 0,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    def shut_down(self) -> None:
        for job in self.jobs.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(job.pid, signal.SIGKILL)
        for job in list(self.jobs.values()):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(job.pid, 0)
            os.close(job.answer_fd)
        self.jobs.clear()


def main() -> int:
    cv2.setNumThreads(1)  # one photo, one core: no OpenCV thread pool in the children
    faces.warm_up()  # the cascade is loaded once, here, and shared by every child
    Zygote().serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
