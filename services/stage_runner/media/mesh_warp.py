"""Piecewise-affine warp of the mouth and jaw region over the face mesh's triangulation.

Computed once per face: a Delaunay triangulation of the landmarks in the region (plus a ring of
fixed points on its border) and, for every pixel of the region, its triangle's three vertices
and barycentric weights. Per frame the vertices' displacements are interpolated with those
weights (three multiply-adds per pixel) and the region is resampled with one `cv2.remap`.

The map is backward (each output pixel reads the photo at `p - d(p)`), with `d` interpolated on
the rest mesh: exact where the displacement is locally uniform, and within a fraction of a
pixel for the smooth, small (a few per cent of the face) motions of speech.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

_BORDER_POINTS_PER_SIDE = 6
# The displacement field is smooth (piecewise linear over triangles several pixels wide), so it
# is interpolated on a grid of every 2nd pixel and resized up: a quarter of the work per frame.
_STEP = 2


@dataclass(frozen=True)
class MeshWarp:
    top: int
    left: int
    height: int
    width: int
    vertices: np.ndarray = field(repr=False)  # (V, 2) rest positions, border ring last
    corner_ids: np.ndarray = field(repr=False)  # (3, P) vertex ids per coarse-grid pixel
    weights: np.ndarray = field(repr=False)  # (3, P) barycentric weights
    grid_x: np.ndarray = field(repr=False)  # (H, W) float32 pixel x (full resolution)
    grid_y: np.ndarray = field(repr=False)

    @classmethod
    def build(cls, points: np.ndarray, box: tuple[int, int, int, int]) -> MeshWarp:
        """`points`: (N, 2) landmarks to move (inside `box` = left, top, right, bottom)."""
        left, top, right, bottom = box
        ring = _border_ring(left, top, right - 1, bottom - 1)
        vertices = np.concatenate([points.astype(np.float32), ring]).astype(np.float32)
        triangles = _delaunay(vertices, box)
        height, width = bottom - top, right - left
        coarse_h, coarse_w = -(-height // _STEP), -(-width // _STEP)
        owner = np.full((coarse_h, coarse_w), -1, np.int32)
        for index, triangle in enumerate(triangles):
            corners = np.round((vertices[triangle] - (left, top)) / _STEP * 16).astype(np.int32)
            cv2.fillConvexPoly(owner, corners, index, lineType=cv2.LINE_8, shift=4)
        ys, xs = (np.mgrid[0:coarse_h, 0:coarse_w].astype(np.float32) * _STEP) + np.array(
            [top, left], np.float32
        ).reshape(2, 1, 1)
        grid_y, grid_x = np.mgrid[top:bottom, left:right].astype(np.float32)
        flat_owner = owner.reshape(-1)
        # Pixels no triangle claimed (rounding at the hull's edge) take the nearest claimed one's.
        if (flat_owner < 0).any():
            missing = flat_owner < 0
            filled = cv2.dilate((owner + 1).astype(np.float32), np.ones((3, 3), np.uint8), iterations=2)
            flat_owner = np.where(missing, filled.reshape(-1).astype(np.int32) - 1, flat_owner)
            flat_owner = np.maximum(flat_owner, 0)
        corner_ids = triangles[flat_owner]
        weights = _barycentric(vertices[corner_ids], xs.reshape(-1), ys.reshape(-1))
        return cls(
            top,
            left,
            height,
            width,
            vertices,
            np.ascontiguousarray(corner_ids.T.astype(np.int32)),
            np.ascontiguousarray(weights.T),
            grid_x,
            grid_y,
        )

    @property
    def moving_count(self) -> int:
        return self.vertices.shape[0] - 4 * _BORDER_POINTS_PER_SIDE

    def maps(self, displacement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """remap maps for (moving_count, 2) vertex displacements (border vertices stay)."""
        count = self.vertices.shape[0]
        full_x = np.zeros(count, np.float32)
        full_y = np.zeros(count, np.float32)
        full_x[: displacement.shape[0]] = displacement[:, 0]
        full_y[: displacement.shape[0]] = displacement[:, 1]
        ids, w = self.corner_ids, self.weights
        dx = w[0] * full_x[ids[0]] + w[1] * full_x[ids[1]] + w[2] * full_x[ids[2]]
        dy = w[0] * full_y[ids[0]] + w[1] * full_y[ids[1]] + w[2] * full_y[ids[2]]
        coarse = (-(-self.height // _STEP), -(-self.width // _STEP))
        # The coarse grid's samples sit on every _STEP-th pixel; resize maps them back onto pixels.
        dx_full = cv2.resize(
            dx.reshape(coarse), (coarse[1] * _STEP, coarse[0] * _STEP), interpolation=cv2.INTER_LINEAR
        )
        dy_full = cv2.resize(
            dy.reshape(coarse), (coarse[1] * _STEP, coarse[0] * _STEP), interpolation=cv2.INTER_LINEAR
        )
        return self.grid_x - dx_full[: self.height, : self.width], self.grid_y - dy_full[
            : self.height, : self.width
        ]

    def warp(self, source: np.ndarray, displacement: np.ndarray) -> np.ndarray:
        """The region of `source` with the vertices moved by `displacement`."""
        map_x, map_y = self.maps(displacement)
        return cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _border_ring(left: int, top: int, right: int, bottom: int) -> np.ndarray:
    n = _BORDER_POINTS_PER_SIDE
    t = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
    sides = [
        np.stack([left + (right - left) * t, np.full(n, top)], axis=1),
        np.stack([np.full(n, right), top + (bottom - top) * t], axis=1),
        np.stack([right - (right - left) * t, np.full(n, bottom)], axis=1),
        np.stack([np.full(n, left), bottom - (bottom - top) * t], axis=1),
    ]
    return np.concatenate(sides).astype(np.float32)


def _delaunay(vertices: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(T, 3) vertex ids of the Delaunay triangles (OpenCV's Subdiv2D)."""
    left, top, right, bottom = box
    subdiv = cv2.Subdiv2D((left - 1, top - 1, right - left + 2, bottom - top + 2))
    lookup: dict[tuple[float, float], int] = {}
    for index, (x, y) in enumerate(vertices):
        key = (round(float(x), 3), round(float(y), 3))
        if key not in lookup:
            lookup[key] = index
            subdiv.insert((float(x), float(y)))
    triangles = []
    for x1, y1, x2, y2, x3, y3 in subdiv.getTriangleList():
        ids = [
            lookup.get((round(float(x), 3), round(float(y), 3))) for x, y in ((x1, y1), (x2, y2), (x3, y3))
        ]
        if None not in ids:
            triangles.append(ids)
    return np.asarray(triangles, dtype=np.int32)


def _barycentric(corners: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    v0, v1 = b - a, c - a
    v2 = np.stack([xs, ys], axis=1) - a
    d00 = np.sum(v0 * v0, axis=1)
    d01 = np.sum(v0 * v1, axis=1)
    d11 = np.sum(v1 * v1, axis=1)
    d20 = np.sum(v2 * v0, axis=1)
    d21 = np.sum(v2 * v1, axis=1)
    denominator = d00 * d11 - d01 * d01
    denominator = np.where(np.abs(denominator) < 1e-9, 1.0, denominator)
    v = (d11 * d20 - d01 * d21) / denominator
    w = (d00 * d21 - d01 * d20) / denominator
    weights = np.stack([1.0 - v - w, v, w], axis=1)
    return np.clip(weights, -0.05, 1.05).astype(np.float32)
