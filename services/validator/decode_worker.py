"""A decode worker: `python -m services.validator.decode_worker`, started by the
validator (decode_workers.py) through libs.common.children.

It imports Pillow and OpenCV, then waits on stdin. It takes exactly one job, a JSON
line naming the spooled photo, where to write the safe copy and the limits; caps its
own CPU time (a profiling timer, then RLIMIT_CPU) and address space (RLIMIT_AS: a
MemoryError) before touching a byte of it; answers one JSON line on stdout; and exits,
so every page the decode touched goes back to the system. The validator kills it on
its wall-clock deadline or when the upload is abandoned. EOF on stdin (the validator
stopped or went away) ends a waiting worker.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import sys
from pathlib import Path

import cv2

from libs.common.errors import VidsynthError
from services.validator.decode_limits import DecodeLimits
from services.validator.face_photo import check_face_photo
from services.validator.storage import out_of_space

MAX_REQUEST_BYTES = 64 * 1024


def _address_space_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def cap_resources(limits: DecodeLimits) -> None:
    """From here on: `cpu_seconds` more CPU time and `memory_bytes` more address space
    than the worker holds at rest; no core files.

    The CPU cap is a profiling timer (process CPU time of every thread; SIGPROF, whose
    default action ends the process wherever it is, C decoder included), backed by
    RLIMIT_CPU (whole seconds only: SIGXCPU, then SIGKILL)."""
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
    """One photo: the answer to send back (a result or a catalogued refusal)."""
    limits = DecodeLimits.from_json(request["limits"])
    cap_resources(limits)
    try:
        photo = check_face_photo(Path(request["path"]), request["detected"], Path(request["out"]), limits)
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


def main() -> int:
    cv2.setNumThreads(1)
    line = sys.stdin.buffer.readline(MAX_REQUEST_BYTES)
    if not line.strip():
        return 0  # not needed after all (the validator is stopping)
    answer = run_job(json.loads(line))
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
