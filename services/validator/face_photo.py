"""A face photo's whole check on its pixels: the bounded decode, exactly one face, and
the safe copy written to its partial file. Blocking; it runs inside a decode worker
process (decode_worker.py), never in the service itself.

Each step's wall-clock span is recorded in `phases` (name -> [start_ns, end_ns, ok]),
which the validator turns into trace spans (decode, face, safe_copy)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from services.validator import faces, images
from services.validator.decode_limits import DecodeLimits

T = TypeVar("T")
Phases = dict[str, list]


@contextlib.contextmanager
def _phase(phases: Phases, name: str) -> Iterator[None]:
    started, ok = time.time_ns(), False
    try:
        yield
        ok = True
    finally:
        phases[name] = [started, time.time_ns(), ok]


def _timed(phases: Phases, name: str, step: Callable[..., T], *args: object) -> T:
    with _phase(phases, name):
        return step(*args)


@dataclass(frozen=True)
class FacePhoto:
    width: int
    height: int
    box: faces.Box
    sha256: str


def check_face_photo(
    path: Path, detected: str, out_path: Path, limits: DecodeLimits, phases: Phases | None = None
) -> FacePhoto:
    """Decodes `path` once; the same pixels serve the detector and the re-encode into
    `out_path`. Raises the catalogued refusal; `out_path` is the caller's to delete then."""
    phases = {} if phases is None else phases
    with _phase(phases, "decode"):
        image = images.decode_image(path, detected, limits)
    # Both release the GIL in C: detect and re-encode side by side.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="safe-copy") as pool:
        encoding = pool.submit(_timed, phases, "safe_copy", images.encode_safe_copy, image, out_path)
        with _phase(phases, "face"):
            box = faces.single_face(image, limits.face_min_size_ratio)
        sha256 = encoding.result()
    return FacePhoto(image.width, image.height, box, sha256)
