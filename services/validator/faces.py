"""Face detection with the Haar cascade that ships inside opencv-python-headless
(no model download). A face photo must show exactly one face."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from libs.common.errors import VidsynthError

CASCADE_PATH = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
# Detection runs on a copy no larger than this; faces worth animating survive the shrink.
DETECTION_MAX_SIDE = 800

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


def detect_faces(image: Image.Image, min_size_ratio: float) -> list[Box]:
    """Blocking: face boxes in `image`'s pixel coordinates."""
    gray = np.asarray(image.convert("L"))
    scale = min(1.0, DETECTION_MAX_SIDE / max(gray.shape))
    if scale < 1:
        size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    min_side = max(24, int(min(gray.shape) * min_size_ratio))
    found = _classifier().detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=6, minSize=(min_side, min_side)
    )
    return [
        Box(round(x / scale), round(y / scale), round(w / scale), round(h / scale))
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
