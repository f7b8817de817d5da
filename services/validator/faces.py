"""Face detection with the Haar cascade that ships inside opencv-python-headless
(no model download). A face photo must show exactly one face."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from libs.common.errors import VidsynthError

# alt2 ("tree" stages): fewer false hits than the default cascade at a coarse scale step,
# and about a fifth cheaper to run.
CASCADE_PATH = cv2.data.haarcascades + "haarcascade_frontalface_alt2.xml"
# Detection runs on a copy about this long (an integer shrink of the photo); faces worth
# animating survive it, and the smallest face looked for is a fraction of the image,
# so it shrinks with it.
DETECTION_SIDE = 800
# A 1.2 step between pyramid levels scans half the levels of 1.1 (about half the cost);
# with fewer levels, fewer overlapping hits confirm a face, hence 4 neighbours, not 6.
SCALE_FACTOR = 1.2
MIN_NEIGHBORS = 4
# The cascade's own window: no face smaller than this can be found.
CASCADE_WINDOW = 24

# CascadeClassifier is not safe to share between threads.
_local = threading.local()


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    height: int


def _classifier() -> cv2.CascadeClassifier:
    if not hasattr(_local, "cascade"):
        cascade = cv2.CascadeClassifier(CASCADE_PATH)
        if cascade.empty():
            raise RuntimeError(f"cannot load {CASCADE_PATH}")
        _local.cascade = cascade
    return _local.cascade


def warm_up() -> None:
    """Loads this thread's cascade now (the decode worker does it once, before forking)."""
    _classifier()


def detection_copy(image: Image.Image) -> Image.Image:
    """Blocking: a gray copy about DETECTION_SIDE px long (between ~530 and ~1200 px for
    larger photos). An integer reduce() averages whole pixel blocks in one cheap pass
    over the full-size pixels; the colour conversion then runs on the small copy."""
    factor = max(1, round(max(image.size) / DETECTION_SIDE))
    return (image.reduce(factor) if factor > 1 else image).convert("L")


def detect_faces(image: Image.Image, min_size_ratio: float) -> list[Box]:
    """Blocking: face boxes in `image`'s pixel coordinates."""
    small = detection_copy(image)
    scale_x, scale_y = small.width / image.width, small.height / image.height
    gray = cv2.equalizeHist(np.asarray(small))
    min_side = max(CASCADE_WINDOW, int(min(gray.shape) * min_size_ratio))
    found = _classifier().detectMultiScale(
        gray, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS, minSize=(min_side, min_side)
    )
    return [
        Box(round(x / scale_x), round(y / scale_y), round(w / scale_x), round(h / scale_y))
        for (x, y, w, h) in (found if len(found) else [])
    ]


def single_face(image: Image.Image, min_size_ratio: float) -> Box:
    """Blocking: the one face in the photo, or NO_FACE_DETECTED / MULTIPLE_FACES_DETECTED."""
    faces = detect_faces(image, min_size_ratio)
    if not faces:
        raise VidsynthError("NO_FACE_DETECTED")
    if len(faces) > 1:
        raise VidsynthError(
            "MULTIPLE_FACES_DETECTED", f"The photo shows {len(faces)} faces; it must show exactly one."
        )
    return faces[0]
