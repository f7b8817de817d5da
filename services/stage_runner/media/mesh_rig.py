"""A talking head on the face mesh: lips and jaw warped piecewise-affinely, a real mouth interior.

Set up once per face (`MeshRig.from_landmarks`):
- the photo's mouth hole (teeth, cavity inside the inner-lip contour) is painted out with the
  surrounding lip colours, so lips that close stretch over lip, not over teeth;
- the photo's own teeth are kept as a patch when its mouth is open, else a synthetic band;
- every landmark of the lower face gets a jaw weight, every lip point its pair across the mouth.
Per frame (`render`): vertex displacements from the mouth pose, one remap of the mouth/jaw
region, the interior drawn inside the moved inner-lip contour (shaded cavity, upper teeth fixed
to the skull, lower teeth and a hint of tongue moving with the jaw), lids for blinks, and a
small head motion. Everything outside the mouth/jaw region is the photo. Pure functions;
callers run them in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from services.stage_runner.media.face_rig import _Eye
from services.stage_runner.media.mesh_warp import MeshWarp

# MediaPipe face mesh indices, left to right across the face as seen in the image.
UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
UPPER_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
JAW_LINE = (132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361)
NOSE_BOTTOM, CHIN, BROW = 2, 152, 9
EYES = ((33, 133, 159, 145), (362, 263, 386, 374))  # corners and lids of each eye
# The widest jaw drop, as a share of the brow-to-chin height.
OPEN_GAP = 0.13
WIDE_SHARE, ROUND_SHARE = 0.10, 0.22
CAVITY_BGR = np.array((34.0, 32.0, 62.0), np.float32)
TONGUE_BGR = np.array((88.0, 92.0, 160.0), np.float32)
TEETH_BGR = np.array((208.0, 220.0, 228.0), np.float32)


@dataclass(frozen=True)
class MeshPose:
    open: float  # 0 lips pressed .. 1 wide open (a little more with strong expression)
    wide: float  # -1 rounded (oo, w) .. 0 neutral .. 1 spread (ee)
    blink: float
    angle_degrees: float
    shift_x: float
    shift_y: float


@dataclass(frozen=True)
class MeshRig:
    base: np.ndarray  # the photo with the mouth hole painted out
    photo: np.ndarray
    warp: MeshWarp
    ids: np.ndarray = field(repr=False)  # landmark id of each moving vertex
    rest: np.ndarray = field(repr=False)  # (V, 2) rest positions of the moving vertices
    jaw_weight: np.ndarray = field(repr=False)
    lateral: np.ndarray = field(repr=False)  # -1 left corner .. 1 right corner, for widening
    upper_pos: np.ndarray = field(repr=False)  # vertex index of each UPPER_INNER/OUTER point
    lower_pos: np.ndarray = field(repr=False)
    upper_outer_pos: np.ndarray = field(repr=False)
    lower_outer_pos: np.ndarray = field(repr=False)
    rest_gap: np.ndarray = field(repr=False)  # inner-lip gap per pair at rest
    profile: np.ndarray = field(repr=False)  # share of the full opening per pair
    face_height: float = 0.0
    mouth_width: float = 0.0
    teeth: np.ndarray | None = field(default=None, repr=False)  # photo's interior, float32, or None
    teeth_mask: np.ndarray | None = field(default=None, repr=False)
    teeth_box: tuple[int, int, int, int] = (0, 0, 0, 0)
    eyes: tuple[_Eye, ...] = ()
    pivot: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def from_landmarks(cls, photo: np.ndarray, points: np.ndarray) -> MeshRig:
        h, w = photo.shape[:2]
        face_height = float(points[CHIN, 1] - points[BROW, 1])
        corners = points[[61, 291]]
        centre_x = float(corners[:, 0].mean())
        corner_y = float(corners[:, 1].mean())
        half_mouth = float(abs(corners[1, 0] - corners[0, 0]) / 2)
        jaw_x = points[list(JAW_LINE), 0]
        left = int(max(0, jaw_x.min() - 0.08 * face_height))
        right = int(min(w, jaw_x.max() + 0.08 * face_height + 1))
        top = int(max(0, points[NOSE_BOTTOM, 1] - 0.06 * face_height))
        bottom = int(min(h, points[CHIN, 1] + 0.45 * face_height))
        inside = (
            (points[:, 0] > left + 2)
            & (points[:, 0] < right - 2)
            & (points[:, 1] > top + 2)
            & (points[:, 1] < bottom - 2)
        )
        ids = np.nonzero(inside)[0]
        ids = ids[ids < 468]  # no iris points
        rest = points[ids]
        position = {int(landmark): index for index, landmark in enumerate(ids)}
        jaw_len = max(1.0, float(points[CHIN, 1]) - corner_y)
        depth = np.clip((rest[:, 1] - corner_y) / jaw_len, 0.0, 1.2)
        across = np.clip(1 - ((rest[:, 0] - centre_x) / (1.9 * half_mouth)) ** 2, 0.0, 1.0)
        jaw_weight = np.minimum(1.0, 1.3 * depth) * (0.25 + 0.75 * across)
        lateral = np.clip((rest[:, 0] - centre_x) / max(half_mouth, 1.0), -1.5, 1.5)
        # Landmarks above the lip line (nose, cheeks) stay; only lips and the lower face move.
        lip_ids = {*UPPER_INNER, *LOWER_INNER, *UPPER_OUTER, *LOWER_OUTER}
        above = np.array([int(i) not in lip_ids and rest[k, 1] < corner_y for k, i in enumerate(ids)])
        jaw_weight[above] = 0.0
        lateral = np.where(
            above, 0.0, lateral * np.where(np.array([int(i) in lip_ids for i in ids]), 1.0, 0.3)
        )
        upper = np.array([position[i] for i in UPPER_INNER])
        lower = np.array([position[i] for i in LOWER_INNER])
        rest_gap = np.maximum(0.0, rest[lower, 1] - rest[upper, 1])
        pair_x = (rest[upper, 0] + rest[lower, 0]) / 2
        profile = np.clip(1 - ((pair_x - centre_x) / max(half_mouth, 1.0)) ** 2, 0.0, 1.0) ** 0.6
        warp = MeshWarp.build(rest, (left, top, right, bottom))
        base, teeth, teeth_mask, teeth_box = _paint_out_mouth(photo, points, rest_gap.max(), 2 * half_mouth)
        eyes = tuple(_eye(photo, points, eye) for eye in EYES)
        return cls(
            base=base,
            photo=photo,
            warp=warp,
            ids=ids,
            rest=rest,
            jaw_weight=jaw_weight.astype(np.float32),
            lateral=lateral.astype(np.float32),
            upper_pos=upper,
            lower_pos=lower,
            upper_outer_pos=np.array([position[i] for i in UPPER_OUTER]),
            lower_outer_pos=np.array([position[i] for i in LOWER_OUTER]),
            rest_gap=rest_gap.astype(np.float32),
            profile=profile.astype(np.float32),
            face_height=face_height,
            mouth_width=2 * half_mouth,
            teeth=teeth,
            teeth_mask=teeth_mask,
            teeth_box=teeth_box,
            eyes=eyes,
            pivot=(centre_x, float(points[CHIN, 1]) + 0.3 * face_height),
        )

    @property
    def mouth_box(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the region the mouth moves in, for measuring."""
        return self.warp.left, self.warp.top, self.warp.width, self.warp.height

    def displacement(self, pose: MeshPose) -> tuple[np.ndarray, float]:
        """Per moving vertex (dx, dy) for `pose`, and the jaw drop in pixels."""
        target_gap = max(0.0, pose.open) * OPEN_GAP * self.face_height * self.profile
        jaw_drop = max(0.0, pose.open) * OPEN_GAP * self.face_height
        moved = np.zeros_like(self.rest)
        moved[:, 1] = self.jaw_weight * jaw_drop
        # Lips: make each inner pair's gap the target; the lower lip takes most of the change.
        after_jaw = self.rest_gap + moved[self.lower_pos, 1] - moved[self.upper_pos, 1]
        change = target_gap - after_jaw
        lower_share = np.where(change < 0, 0.62, 0.85)
        lower_dy = moved[self.lower_pos, 1] + lower_share * change
        upper_dy = moved[self.upper_pos, 1] - (1 - lower_share) * change
        for positions, dy in (
            (self.lower_pos, lower_dy),
            (self.lower_outer_pos, lower_dy),
            (self.upper_pos, upper_dy),
            (self.upper_outer_pos, upper_dy),
        ):
            moved[positions, 1] = dy
        half = self.mouth_width / 2
        stretch = pose.wide * (WIDE_SHARE if pose.wide > 0 else ROUND_SHARE) * half
        moved[:, 0] = self.lateral * stretch
        return moved, jaw_drop

    def render(self, pose: MeshPose) -> np.ndarray:
        frame = self.base.copy()
        moved, jaw_drop = self.displacement(pose)
        warp = self.warp
        region = warp.warp(self.base, moved)
        _draw_interior(self, region, self.rest + moved, jaw_drop)
        frame[warp.top : warp.top + warp.height, warp.left : warp.left + warp.width] = region
        if pose.blink > 0.02:
            lids = frame.astype(np.float32)
            for eye in self.eyes:
                eye.blink(lids, pose.blink)
            frame = np.clip(lids, 0, 255).astype(np.uint8)
        h, w = frame.shape[:2]
        matrix = cv2.getRotationMatrix2D(self.pivot, pose.angle_degrees, 1.0)
        matrix[:, 2] += (pose.shift_x * w / 256, pose.shift_y * h / 256)
        return cv2.warpAffine(frame, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def _eye(photo: np.ndarray, points: np.ndarray, eye: tuple[int, int, int, int]) -> _Eye:
    outer, inner, upper, lower = (points[i] for i in eye)
    centre = ((outer[0] + inner[0]) / 2, (upper[1] + lower[1]) / 2)
    half_width = abs(inner[0] - outer[0]) / 2 * 1.1
    half_height = max(abs(lower[1] - upper[1]) / 2 * 1.25, 0.2 * half_width)
    return _Eye.at(photo, centre, half_width, half_height)


def _inner_polygon(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points[list(UPPER_INNER)], points[list(LOWER_INNER)][::-1]]).astype(np.float32)


def _paint_out_mouth(
    photo: np.ndarray, points: np.ndarray, rest_gap: float, mouth_width: float
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, tuple[int, int, int, int]]:
    """The photo with its mouth hole filled from the lips around it; and the photo's own mouth
    interior (teeth) as a patch when the mouth is open enough to show them."""
    hole = np.zeros(photo.shape[:2], np.uint8)
    polygon = _inner_polygon(points)
    cv2.fillPoly(hole, [np.round(polygon * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    # Teeth reach a little past the landmarks' contour: paint out a margin too.
    grown = cv2.dilate(hole, np.ones((3, 3), np.uint8), iterations=max(2, round(0.025 * mouth_width)))
    base = cv2.inpaint(photo, grown, 4, cv2.INPAINT_TELEA)
    if rest_gap < 0.06 * mouth_width:
        return base, None, None, (0, 0, 0, 0)
    x, y, w, h = cv2.boundingRect(np.round(polygon).astype(np.int32))
    x, y = max(0, x - 2), max(0, y - 2)
    box = (x, y, w + 4, h + 4)
    teeth = photo[y : y + h + 4, x : x + w + 4].astype(np.float32)
    mask = cv2.GaussianBlur(hole[y : y + h + 4, x : x + w + 4].astype(np.float32) / 255.0, (0, 0), 0.8)
    return base, teeth, mask, box


def _paste(
    canvas: np.ndarray, alpha: np.ndarray, patch: np.ndarray, mask: np.ndarray, x: int, y: int
) -> None:
    """Blend `patch` (weighted by `mask`) into `canvas` at (x, y), clipped to the canvas."""
    h, w = canvas.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(w, x + patch.shape[1]), min(h, y + patch.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    source = patch[y0 - y : y1 - y, x0 - x : x1 - x]
    weight = mask[y0 - y : y1 - y, x0 - x : x1 - x, None]
    canvas[y0:y1, x0:x1] += weight * (source - canvas[y0:y1, x0:x1])
    alpha[y0:y1, x0:x1] = np.maximum(alpha[y0:y1, x0:x1], weight[..., 0])


def _draw_interior(rig: MeshRig, region: np.ndarray, moved: np.ndarray, jaw_drop: float) -> None:
    """The mouth's inside, drawn in `region` (the warped mouth/jaw area) within the moved inner lips."""
    origin = np.array([rig.warp.left, rig.warp.top], np.float32)
    upper = moved[rig.upper_pos] - origin
    lower = moved[rig.lower_pos] - origin
    gap = float(np.max(lower[:, 1] - upper[:, 1]))
    mid = len(UPPER_INNER) // 2
    if gap < 1.5:
        # Lips together: the seam between them is a thin shadow.
        seam = np.round(((upper + lower) / 2) * 16).astype(np.int32)
        cv2.polylines(region, [seam], False, (70, 62, 110), 1, lineType=cv2.LINE_AA, shift=4)
        return
    polygon = np.concatenate([upper, lower[::-1]])
    x, y, w, h = cv2.boundingRect(np.round(polygon).astype(np.int32))
    x, y = max(0, x - 2), max(0, y - 2)
    w, h = min(region.shape[1] - x, w + 4), min(region.shape[0] - y, h + 4)
    if w <= 0 or h <= 0:
        return
    local = polygon - (x, y)
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [np.round(local * 16).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=4)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.7)
    # Darker towards the lips: the cavity's depth.
    depth = cv2.GaussianBlur(mask, (0, 0), max(1.0, gap / 4))
    inside = CAVITY_BGR * (0.35 + 0.65 * depth[..., None])
    alpha = np.zeros((h, w), np.float32)
    centre_x = float(upper[mid, 0] - x)
    lower_y = float(lower[mid, 1] - y)
    rest_upper = rig.rest[rig.upper_pos] - origin - (x, y)
    if gap > 4:
        tongue = np.zeros((h, w), np.float32)
        axes = (max(1, round(0.28 * rig.mouth_width)), max(1, round(0.35 * gap)))
        cv2.ellipse(
            tongue, (round(centre_x), round(lower_y + 0.1 * gap)), axes, 0, 180, 360, 0.6, -1, cv2.LINE_AA
        )
        tongue = cv2.GaussianBlur(tongue, (0, 0), max(1.0, gap / 8))
        inside += tongue[..., None] * (TONGUE_BGR * (0.5 + 0.5 * depth[..., None]) - inside)
    if rig.teeth is not None and rig.teeth_mask is not None:
        tx, ty, _, th = rig.teeth_box
        px, py = tx - rig.warp.left - x, ty - rig.warp.top - y
        split = round(th * 0.55)
        # The photo's upper teeth stay with the skull; its lower ones ride on the jaw.
        _paste(inside, alpha, rig.teeth[:split], rig.teeth_mask[:split], px, py)
        _paste(inside, alpha, rig.teeth[split:], rig.teeth_mask[split:], px, py + split + round(jaw_drop))
    else:
        band = np.zeros((h, w), np.float32)
        tooth_height = 0.085 * rig.mouth_width
        rows = np.arange(h, dtype=np.float32)[:, None]
        top_edge = np.interp(np.arange(w), rest_upper[:, 0], rest_upper[:, 1], left=np.inf, right=np.inf)[
            None, :
        ]
        band = np.clip((top_edge + tooth_height - rows) / 1.5, 0, 1) * np.clip(
            (rows - top_edge + 2) / 2, 0, 1
        )
        shade = 0.78 + 0.22 * np.clip((rows - top_edge) / max(tooth_height, 1), 0, 1)
        inside += (0.92 * band)[..., None] * (TEETH_BGR * shade[..., None] - inside)
        if gap > 0.35 * OPEN_GAP * rig.face_height:
            lower_band = np.clip((rows - (lower[mid, 1] - y - 0.45 * tooth_height)) / 1.5, 0, 1) * 0.55
            inside += lower_band[..., None] * (TEETH_BGR * 0.8 - inside)
    patch = region[y : y + h, x : x + w].astype(np.float32)
    patch += mask[..., None] * (inside - patch)
    region[y : y + h, x : x + w] = np.clip(patch, 0, 255).astype(np.uint8)
