"""A face photo's whole check on its pixels: the bounded decode, exactly one face, and
the safe copy written to its partial file. Blocking; it runs inside a decode worker
process (decode_worker.py), never in the service itself."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from services.validator import faces, images
from services.validator.decode_limits import DecodeLimits


@dataclass(frozen=True)
class FacePhoto:
    width: int
    height: int
    box: faces.Box
    sha256: str


def check_face_photo(path: Path, detected: str, out_path: Path, limits: DecodeLimits) -> FacePhoto:
    """Decodes `path` once; the same pixels serve the detector and the re-encode into
    `out_path`. Raises the catalogued refusal; `out_path` is the caller's to delete then."""
    image = images.decode_image(path, detected, limits)
    # Both release the GIL in C: detect and re-encode side by side.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="safe-copy") as pool:
        encoding = pool.submit(images.encode_safe_copy, image, out_path)
        box = faces.single_face(image, limits.face_min_size_ratio)
        sha256 = encoding.result()
    return FacePhoto(image.width, image.height, box, sha256)
