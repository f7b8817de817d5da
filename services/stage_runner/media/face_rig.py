"""Rendering a talking head from one photo with numpy/OpenCV: jaw drop, mouth cavity, blinks, head motion.

`FaceRig` locates the mouth and eyes (from the face box in the crop), and `render` draws one frame
from a `Pose`. Motion curves (`poses_for`) come from the speech loudness envelope, so the mouth
opens with the voice and is closed in pauses. Pure functions; callers run them in a worker thread.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from services.stage_runner.media.face import detect_faces

# Feature positions as shares of the face box, for a frontal face as the Haar cascade frames it.
_EYE_Y, _EYE_X_LEFT, _EYE_X_RIGHT = 0.41, 0.32, 0.68
_MOUTH_Y, _MOUTH_WIDTH = 0.79, 0.38
# Where face_crop puts the face when the crop itself is not detected again (see face.py margins).
_FALLBACK_BOX = (0.237, 0.195, 0.526, 0.526)
_GATE_BELOW_PEAK_DB = 32.0
_MIN_SPEECH_DBFS = -55.0


@dataclass(frozen=True)
class Pose:
    mouth_open: float  # 0 closed .. 1 fully open (may exceed 1 with a strong expression)
    blink: float  # 0 eyes open .. 1 closed
    angle_degrees: float
    shift_x: float
    shift_y: float


@dataclass(frozen=True)
class _JawField:
    """The jaw-drop warp, precomputed once: per pixel of the mouth region, how far it moves per
    pixel of mouth opening (the jaw drops at the lips, fading out past the chin; the upper lip lifts a little).
    """

    top: int
    left: int
    xs: np.ndarray = field(repr=False)
    ys: np.ndarray = field(repr=False)
    shift_per_gap: np.ndarray = field(repr=False)

    @classmethod
    def around(
        cls, shape: tuple[int, ...], mouth_x: float, mouth_y: float, half_width: float, face_height: float
    ) -> _JawField:
        h, w = shape[0], shape[1]
        reach = 0.45 * face_height
        top, bottom = max(0, int(mouth_y - 0.3 * reach)), min(h, int(mouth_y + reach) + 1)
        left, right = max(0, int(mouth_x - 4 * half_width)), min(w, int(mouth_x + 4 * half_width) + 1)
        ys, xs = np.mgrid[top:bottom, left:right].astype(np.float32)
        below = ys - mouth_y
        # At the lips the opening ends at the mouth corners (no smeared lip line past them); lower
        # down the whole chin moves, so the profile widens with distance from the lips.
        offset = (xs - mouth_x) / half_width
        at_lips = np.clip(1 - (offset / 1.1) ** 2, 0, 1) ** 1.5
        chin = np.exp(-((offset / 1.9) ** 2))
        near_lips = np.exp(-((below / (0.1 * face_height)) ** 2))
        across = near_lips * at_lips + (1 - near_lips) * chin
        jaw = np.where(below > 0, np.clip(1 - below / reach, 0, 1), 0.0)
        lip = np.where(below < 0, -0.2 * np.clip(1 + below / (0.3 * reach), 0, 1), 0.0)
        return cls(top, left, xs, ys, ((jaw + lip) * across).astype(np.float32))


@dataclass(frozen=True)
class _Eye:
    """One eye: where it is, and the same patch with the eye painted over by the surrounding skin."""

    centre: tuple[float, float]
    half_width: float
    half_height: float
    top: int
    left: int
    ellipse: np.ndarray = field(repr=False)  # soft mask of the eye opening in the patch, 0..1
    rows: np.ndarray = field(repr=False)  # y of each patch row, for the lid line
    closed: np.ndarray = field(repr=False)  # the patch with the eye closed (skin), float32 BGR
    lash_bgr: tuple[float, float, float]

    @classmethod
    def at(
        cls, image: np.ndarray, centre: tuple[float, float], half_width: float, half_height: float
    ) -> _Eye:
        h, w = image.shape[:2]
        pad = int(half_height) + 4
        left, right = max(0, int(centre[0] - half_width) - pad), min(w, int(centre[0] + half_width) + pad + 1)
        top, bottom = (
            max(0, int(centre[1] - half_height) - pad),
            min(h, int(centre[1] + half_height) + pad + 1),
        )
        patch = np.ascontiguousarray(image[top:bottom, left:right])
        hard = np.zeros(patch.shape[:2], dtype=np.uint8)
        local_centre = (round(centre[0] - left), round(centre[1] - top))
        cv2.ellipse(hard, local_centre, (round(half_width), round(half_height)), 0, 0, 360, 255, -1)
        # Skin from around the eye, grown over it: what the closed lid looks like.
        closed = cv2.inpaint(patch, cv2.dilate(hard, np.ones((3, 3), np.uint8)), 5, cv2.INPAINT_TELEA)
        ellipse = cv2.GaussianBlur(hard.astype(np.float32) / 255.0, (0, 0), 1.0)
        lash = tuple(0.45 * float(c) for c in np.median(closed.reshape(-1, 3), axis=0))
        rows = np.arange(top, bottom, dtype=np.float32)[:, None]
        return cls(centre, half_width, half_height, top, left, ellipse, rows, closed.astype(np.float32), lash)  # type: ignore[arg-type]

    def blink(self, frame: np.ndarray, amount: float) -> None:
        """Lower the lid over `amount` (0..1) of the eye's height, in place."""
        lid_line = self.centre[1] - self.half_height + 2 * self.half_height * amount
        covered = self.ellipse * np.clip(lid_line - self.rows + 0.5, 0.0, 1.0)
        rows, cols = self.ellipse.shape
        region = frame[self.top : self.top + rows, self.left : self.left + cols]
        region += covered[..., None] * (self.closed - region)
        if amount > 0.4:
            lash_axes = (self.half_width * (0.6 + 0.4 * amount), 0.8)
            _paint_ellipse(frame, (self.centre[0], lid_line), lash_axes, self.lash_bgr, amount)


def _eye_positions(
    gray: np.ndarray, box: tuple[float, float, float, float]
) -> list[tuple[float, float, float]]:
    """(x, y, half width) of both eyes from OpenCV's eye cascade in the upper face, or geometry."""
    fx, fy, fw, fh = box
    top, bottom, left = int(fy + 0.15 * fh), int(fy + 0.6 * fh), int(fx)
    region = gray[max(0, top) : max(0, bottom), max(0, left) : max(0, int(fx + fw))]
    found = []
    if region.size:
        min_side = max(8, int(0.12 * fw))
        found = _eye_cascade().detectMultiScale(region, 1.1, 4, minSize=(min_side, min_side))
    eyes: list[tuple[float, float, float]] = []
    for half in (0, 1):
        side = [
            (left + x + ew / 2, top + y + eh / 2, 0.3 * ew)
            for x, y, ew, eh in found
            if (left + x + ew / 2 < fx + fw / 2) == (half == 0)
        ]
        if side:
            eyes.append(max(side, key=lambda e: e[2]))
        else:
            x_share = _EYE_X_LEFT if half == 0 else _EYE_X_RIGHT
            eyes.append((fx + x_share * fw, fy + _EYE_Y * fh, 0.1 * fw))
    return eyes


@functools.cache
def _eye_cascade() -> cv2.CascadeClassifier:
    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")


def _mouth_line(gray: np.ndarray, mouth_x: float, half_width: float, fy: float, fh: float) -> float:
    """y of the lip line: the darkest horizontal band below the nose, preferring the usual height.

    The distance penalty keeps a nostril shadow or a bright smile from pulling the line off the lips.
    """
    expected = fy + _MOUTH_Y * fh
    top, bottom = max(0, int(fy + 0.72 * fh)), max(0, int(fy + 0.88 * fh))
    left, right = max(0, int(mouth_x - 0.6 * half_width)), max(0, int(mouth_x + 0.6 * half_width))
    band = gray[top:bottom, left:right].astype(np.float32)
    if band.shape[0] < 3 or band.shape[1] < 1:
        return expected
    profile = np.convolve(band.mean(axis=1), np.ones(3) / 3, mode="same")[1:-1]
    rows = np.arange(top + 1, top + 1 + profile.size)
    cost = profile + 0.8 * np.abs(rows - expected)
    return float(rows[int(np.argmin(cost))])


@dataclass(frozen=True)
class FaceRig:
    base: np.ndarray
    mouth_x: float
    mouth_y: float
    mouth_half_width: float
    face_height: float
    eyes: tuple[_Eye, ...]
    jaw: _JawField

    @classmethod
    def from_image(cls, image: np.ndarray) -> FaceRig:
        h, w = image.shape[:2]
        faces = detect_faces(image)
        if faces:
            fx, fy, fw, fh = (float(v) for v in faces[0])
        else:
            fx, fy, fw, fh = (
                _FALLBACK_BOX[0] * w,
                _FALLBACK_BOX[1] * h,
                _FALLBACK_BOX[2] * w,
                _FALLBACK_BOX[3] * h,
            )
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        eyes = tuple(
            _Eye.at(image, (x, y), half_width, 0.5 * half_width)
            for x, y, half_width in _eye_positions(gray, (fx, fy, fw, fh))
        )
        mouth_x, mouth_half_width = fx + 0.5 * fw, 0.5 * _MOUTH_WIDTH * fw
        mouth_y = _mouth_line(gray, mouth_x, mouth_half_width, fy, fh)
        return cls(
            base=image,
            mouth_x=mouth_x,
            mouth_y=mouth_y,
            mouth_half_width=mouth_half_width,
            face_height=fh,
            eyes=eyes,
            jaw=_JawField.around(image.shape[:2], mouth_x, mouth_y, mouth_half_width, fh),
        )

    @property
    def mouth_box(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the region the mouth moves in, for measuring."""
        half_w = 1.2 * self.mouth_half_width
        top = self.mouth_y - 0.08 * self.face_height
        bottom = self.mouth_y + 0.22 * self.face_height
        return int(self.mouth_x - half_w), int(top), int(2 * half_w), int(bottom - top)


def mouth_envelope(samples: np.ndarray, sample_rate: int, fps: int, frames: int) -> np.ndarray:
    """Mouth opening 0..1 per video frame from the speech loudness; 0 in pauses (noise-gated)."""
    hop = sample_rate / fps
    rms = np.zeros(frames)
    for index in range(frames):
        window = samples[int(index * hop) : int((index + 1) * hop)]
        if window.size:
            rms[index] = float(np.sqrt(np.mean(window.astype(np.float64) ** 2)))
    db = 20 * np.log10(np.maximum(rms, 1e-7))
    peak = float(np.percentile(db, 98)) if frames else 0.0
    gate = max(peak - _GATE_BELOW_PEAK_DB, _MIN_SPEECH_DBFS)
    full = max(peak - 1.0, gate + 1.0)
    # Convex: syllable peaks open wide, consonants and soft sounds only a little.
    target = np.clip((db - gate) / (full - gate), 0.0, 1.0) ** 1.8
    # Open fast, close a little slower, like a jaw; still shut within a few frames of a pause.
    opening = np.zeros(frames)
    level = 0.0
    for index, value in enumerate(target):
        level += (0.75 if value > level else 0.5) * (value - level)
        opening[index] = level if level > 0.02 else 0.0
    return opening


def poses_for(opening: np.ndarray, fps: int, expression_scale: float, seed: int = 7) -> list[Pose]:
    """Per-frame poses: mouth from `opening`, blinks every 2.5-5 s, slow head sway and speech nods."""
    frames = opening.size
    t = np.arange(frames) / fps
    blink = np.zeros(frames)
    rng = np.random.default_rng(seed)
    next_blink = rng.uniform(1.0, 3.0)
    end = float(t[-1]) if frames else 0.0
    while next_blink < end:
        # A blink: lid down over ~0.1 s and up over ~0.12 s.
        phase = (t - next_blink) / 0.22
        blink = np.maximum(blink, np.clip(1 - np.abs(phase * 2 - 1), 0, 1) * (phase >= 0) * (phase <= 1))
        next_blink += rng.uniform(2.5, 5.0)
    sway = 0.5 + 0.5 * min(expression_scale, 2.0)
    angle = sway * (1.1 * np.sin(2 * np.pi * t / 3.7) + 0.5 * np.sin(2 * np.pi * t / 1.9 + 1.0))
    shift_x = sway * 1.4 * np.sin(2 * np.pi * t / 4.3 + 0.5)
    shift_y = sway * (0.8 * np.sin(2 * np.pi * t / 2.9) + 1.2 * opening)
    mouth = np.clip(opening * expression_scale, 0.0, 1.3)
    return [
        Pose(float(mouth[i]), float(blink[i]), float(angle[i]), float(shift_x[i]), float(shift_y[i]))
        for i in range(frames)
    ]


def _paint_ellipse(
    frame: np.ndarray,
    centre: tuple[float, float],
    axes: tuple[float, float],
    colour: tuple[float, float, float],
    opacity: float = 1.0,
) -> None:
    """Blend a soft-edged filled ellipse into `frame` (float32 BGR), touching only its bounding box."""
    h, w = frame.shape[:2]
    pad = 4
    left, right = max(0, int(centre[0] - axes[0]) - pad), min(w, int(centre[0] + axes[0]) + pad + 1)
    top, bottom = max(0, int(centre[1] - axes[1]) - pad), min(h, int(centre[1] + axes[1]) + pad + 1)
    if left >= right or top >= bottom:
        return
    mask = np.zeros((bottom - top, right - left), dtype=np.float32)
    cv2.ellipse(
        mask,
        (round((centre[0] - left) * 4), round((centre[1] - top) * 4)),
        (max(1, round(axes[0] * 4)), max(1, round(axes[1] * 4))),
        0,
        0,
        360,
        opacity,
        -1,
        lineType=cv2.LINE_AA,
        shift=2,
    )
    mask = cv2.GaussianBlur(mask, (0, 0), 1.2)[..., None]
    region = frame[top:bottom, left:right]
    region *= 1.0 - mask
    region += mask * np.asarray(colour, dtype=np.float32)


def render(rig: FaceRig, pose: Pose) -> np.ndarray:
    """One BGR uint8 frame of the rig in `pose`."""
    h, w = rig.base.shape[:2]
    frame = rig.base.astype(np.float32)
    if pose.mouth_open > 0.01:
        gap = pose.mouth_open * 0.1 * rig.face_height
        jaw = rig.jaw
        map_y = jaw.ys - gap * jaw.shift_per_gap
        rows, cols = jaw.xs.shape
        # Sample the untouched frame so the region's edge blends with its surroundings.
        frame[jaw.top : jaw.top + rows, jaw.left : jaw.left + cols] = cv2.remap(
            frame, jaw.xs, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        centre = (rig.mouth_x, rig.mouth_y + 0.4 * gap)
        _paint_ellipse(frame, centre, (0.8 * rig.mouth_half_width, 0.55 * gap + 0.5), (30.0, 25.0, 70.0), 0.9)
        if pose.mouth_open > 0.3:
            teeth_centre = (centre[0], centre[1] - 0.45 * gap)
            teeth_axes = (0.6 * rig.mouth_half_width, 0.12 * gap + 0.5)
            _paint_ellipse(frame, teeth_centre, teeth_axes, (215.0, 225.0, 230.0), 0.8)
    if pose.blink > 0.02:
        for eye in rig.eyes:
            eye.blink(frame, pose.blink)
    pivot = (rig.mouth_x, rig.mouth_y + 0.5 * rig.face_height)
    matrix = cv2.getRotationMatrix2D(pivot, pose.angle_degrees, 1.0)
    matrix[:, 2] += (pose.shift_x * w / 256, pose.shift_y * h / 256)
    frame = cv2.warpAffine(frame, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    return np.clip(frame, 0, 255).astype(np.uint8)
