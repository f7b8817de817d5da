"""Face stage: find exactly one face in the photo and crop it, padded to a square, for animation.

The face mesh (mediapipe, 478 landmarks) finds the face first and its landmarks are written next
to the crop, in the crop's pixels, for the mesh rig. When the mesh finds no face the OpenCV
cascade does (the fallback path, animated by the simpler OpenCV rig) and the result says so.
A small face is upscaled with Lanczos, a large one reduced with area averaging."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import structlog

from libs.common.errors import VidsynthError
from services.stage_runner.media import face_mesh

log = structlog.get_logger("stage_runner.media.face")

# Detections narrower than this share of the largest face are background faces or false positives.
_SECONDARY_FACE_RATIO = 0.4
# Margin around the detected box, as a share of its size: room for hair, chin and head motion.
_MARGIN = 0.45
# The cascade's box sits high on the face; move the crop down so the chin and mouth are inside.
_DOWN_SHIFT = 0.08
_MESH_MARGIN, _MESH_UP_SHIFT = 0.42, 0.08


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
    # "mesh" (landmarks written) or "opencv" (the cascade fallback), and why the fallback.
    finder: str = "opencv"
    fallback_reason: str = ""


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


def _mesh_faces(image: np.ndarray) -> tuple[list[np.ndarray], str]:
    """The mesh's faces (largest first, background faces dropped), or [] and why not."""
    try:
        faces = face_mesh.landmarks(image)
    except face_mesh.FaceMeshUnavailable as error:
        return [], f"the face mesh is unavailable ({error})"
    if not faces:
        return [], "the face mesh found no face"
    widths = [float(np.ptp(points[:, 0])) for points in faces]
    return [f for f, w in zip(faces, widths, strict=True) if w >= _SECONDARY_FACE_RATIO * widths[0]], ""


def _square_crop(image: np.ndarray, left: int, top: int, side: int, size: int) -> np.ndarray:
    image_h, image_w = image.shape[:2]
    # Pad with replicated edges where the square reaches past the photo.
    pad_left, pad_top = max(0, -left), max(0, -top)
    pad_right, pad_bottom = max(0, left + side - image_w), max(0, top + side - image_h)
    padded = cv2.copyMakeBorder(image, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE)
    square = padded[top + pad_top : top + pad_top + side, left + pad_left : left + pad_left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LANCZOS4
    return cv2.resize(square, (size, size), interpolation=interpolation)


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial.png")
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise VidsynthError("STAGE_FAILED", "The face crop could not be saved.")
    partial.write_bytes(encoded.tobytes())
    partial.replace(path)


def _crop(image_path: Path, out_png: Path, size: int, landmarks_json: Path | None) -> FaceBox:
    image = _read_image(image_path)
    image_h, image_w = image.shape[:2]
    meshes, reason = _mesh_faces(image) if landmarks_json is not None else ([], "")
    if len(meshes) > 1:
        raise VidsynthError("MULTIPLE_FACES_DETECTED")
    if meshes:
        points = meshes[0]
        x, y = float(points[:, 0].min()), float(points[:, 1].min())
        w, h = float(np.ptp(points[:, 0])), float(np.ptp(points[:, 1]))
        # The mesh spans brow to chin, tighter than the cascade's box: a wider margin for hair.
        side = round(max(w, h) * (1 + 2 * _MESH_MARGIN))
        left, top = round(x + w / 2 - side / 2), round(y + h / 2 - side / 2 - _MESH_UP_SHIFT * h)
        scale = size / side
        crop_points = (points - np.array([left, top], np.float32)) * scale
        _write_png(out_png, _square_crop(image, left, top, side, size))
        assert landmarks_json is not None
        landmarks_json.write_text(json.dumps({"size": size, "points": np.round(crop_points, 2).tolist()}))
        return FaceBox(round(x), round(y), round(w), round(h), image_w, image_h, left, top, side, "mesh")
    faces = detect_faces(image)
    if not faces:
        raise VidsynthError("NO_FACE_DETECTED")
    if len(faces) > 1:
        raise VidsynthError("MULTIPLE_FACES_DETECTED")
    x, y, w, h = faces[0]
    side = round(max(w, h) * (1 + 2 * _MARGIN))
    left = round(x + w / 2 - side / 2)
    top = round(y + h / 2 + _DOWN_SHIFT * h - side / 2)
    _write_png(out_png, _square_crop(image, left, top, side, size))
    if reason:
        log.info("face.opencv_fallback", reason=reason)
    return FaceBox(x, y, w, h, image_w, image_h, left, top, side, "opencv", reason)


async def crop_face(
    image: Path, out_png: Path, size: int = 256, landmarks_json: Path | None = None
) -> FaceBox:
    """Detect exactly one face in `image` and write a `size`x`size` PNG crop of it to `out_png`.

    With `landmarks_json` the face mesh is tried first and, when it finds the face, its landmarks
    (in the crop's pixels) are written there; else the OpenCV cascade crops and the file is not
    written (`FaceBox.finder` says which, `fallback_reason` why).
    Raises NO_FACE_DETECTED or MULTIPLE_FACES_DETECTED (user errors), STAGE_FAILED if unreadable.
    """
    if size < 64 or size % 2:
        raise VidsynthError("INVALID_ARGUMENT", "The face size must be an even number of at least 64 pixels.")
    return await asyncio.to_thread(_crop, image, out_png, size, landmarks_json)


def read_landmarks(path: Path) -> np.ndarray:
    """The (478, 2) crop-pixel landmarks `crop_face` wrote."""
    points = np.asarray(json.loads(path.read_text())["points"], dtype=np.float32)
    if points.shape != (face_mesh.LANDMARK_COUNT, 2):
        raise VidsynthError("STAGE_FAILED", "The face landmarks are damaged.")
    return points
