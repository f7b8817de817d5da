"""Face stage: find exactly one face in the photo and crop it, padded to a square, for animation."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from libs.common.errors import VidsynthError

# Detections narrower than this share of the largest face are background faces or false positives.
_SECONDARY_FACE_RATIO = 0.4
# Margin around the detected box, as a share of its size: room for hair, chin and head motion.
_MARGIN = 0.45
# The cascade's box sits high on the face; move the crop down so the chin and mouth are inside.
_DOWN_SHIFT = 0.08


@dataclass(frozen=True)
class FaceBox:
    """The detected face in the source photo's pixels, and where the crop came from."""

    x: int
    y: int
    width: int
    height: int
    image_width: int
    image_height: int
    crop_x: int
    crop_y: int
    crop_size: int


@functools.cache
def _cascade() -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        raise VidsynthError("STAGE_UNAVAILABLE", "The face detector model is missing.")
    return cascade


def detect_faces(image_bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h), largest first, without the small secondary detections."""
    gray = cv2.equalizeHist(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY))
    min_side = max(24, min(gray.shape[:2]) // 12)
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    boxes = sorted((tuple(int(v) for v in box) for box in found), key=lambda b: b[2] * b[3], reverse=True)
    if not boxes:
        return []
    largest_width = boxes[0][2]
    return [b for b in boxes if b[2] >= _SECONDARY_FACE_RATIO * largest_width]  # type: ignore[misc]


def _read_image(path: Path) -> np.ndarray:
    with contextlib.suppress(OSError):
        data = np.fromfile(path, dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if image is not None:
            return image
    raise VidsynthError("STAGE_FAILED", "The photo could not be read.")


def _crop(image_path: Path, out_png: Path, size: int) -> FaceBox:
    image = _read_image(image_path)
    faces = detect_faces(image)
    if not faces:
        raise VidsynthError("NO_FACE_DETECTED")
    if len(faces) > 1:
        raise VidsynthError("MULTIPLE_FACES_DETECTED")
    x, y, w, h = faces[0]
    side = round(max(w, h) * (1 + 2 * _MARGIN))
    centre_x = x + w / 2
    centre_y = y + h / 2 + _DOWN_SHIFT * h
    left = round(centre_x - side / 2)
    top = round(centre_y - side / 2)
    image_h, image_w = image.shape[:2]
    # Pad with replicated edges where the square reaches past the photo.
    pad_left, pad_top = max(0, -left), max(0, -top)
    pad_right, pad_bottom = max(0, left + side - image_w), max(0, top + side - image_h)
    padded = cv2.copyMakeBorder(image, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE)
    square = padded[top + pad_top : top + pad_top + side, left + pad_left : left + pad_left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    crop = cv2.resize(square, (size, size), interpolation=interpolation)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    partial = out_png.with_name(f".{out_png.stem}.partial.png")
    ok, encoded = cv2.imencode(".png", crop)
    if not ok:
        raise VidsynthError("STAGE_FAILED", "The face crop could not be saved.")
    partial.write_bytes(encoded.tobytes())
    partial.replace(out_png)
    return FaceBox(x, y, w, h, image_w, image_h, left, top, side)


async def crop_face(image: Path, out_png: Path, size: int = 256) -> FaceBox:
    """Detect exactly one face in `image` and write a `size`x`size` PNG crop of it to `out_png`.

    Raises NO_FACE_DETECTED or MULTIPLE_FACES_DETECTED (user errors), STAGE_FAILED if unreadable.
    """
    if size < 64 or size % 2:
        raise VidsynthError("INVALID_ARGUMENT", "The face size must be an even number of at least 64 pixels.")
    return await asyncio.to_thread(_crop, image, out_png, size)
