"""Piecewise-affine image warping through a dense backward map (pure functions).

A mesh is ``src`` vertices (V, 2) on the reference image, triangles (M, 3) from a Delaunay
triangulation of ``src``, and per-frame ``dst`` vertices. For every output pixel we need the source
pixel it shows (a *backward* map, what ``cv2.remap`` wants). We rasterise the target triangles into
a triangle-index image (later triangles win, so the draw order is a z-order: arms over the torso),
then every pixel applies its triangle's target->source affine. Triangles whose three vertices did
not move are not drawn: their pixels keep the exact identity map, so a frame whose pose equals the
reference reproduces the photo bit for bit.

Cost is one ``fillConvexPoly`` per *moved* triangle plus six gathers over the moved box.
"""
from __future__ import annotations

import numpy as np

_SHIFT = 4  # fractional bits for sub-pixel rasterisation
_MOVED_EPS = 1e-3  # pixels


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (M, 3) int32 of ``points`` (V, 2), counter-clockwise."""
    from scipy.spatial import Delaunay

    tri = Delaunay(np.asarray(points, np.float64))  # no joggle (QJ): deterministic
    return tri.simplices.astype(np.int32)


def dedupe(points: np.ndarray, min_dist: float) -> np.ndarray:
    """Indices of ``points`` (V, 2) keeping the first of any group closer than ``min_dist``."""
    from scipy.spatial import cKDTree

    keep = np.ones(len(points), bool)
    tree = cKDTree(points)
    for i, j in sorted(tree.query_pairs(min_dist)):
        if keep[i] and keep[j]:
            keep[j] = False
    return np.flatnonzero(keep)


def backward_affines(src: np.ndarray, dst: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(M, 2, 3) affines mapping each target triangle onto its source triangle.

    src, dst: (V, 2) vertices; tris: (M, 3). Degenerate target triangles get the identity.
    """
    d = dst[tris].astype(np.float64)  # (M, 3, 2)
    s = src[tris].astype(np.float64)
    dd = np.stack([d[:, 1] - d[:, 0], d[:, 2] - d[:, 0]], -1)  # (M, 2, 2) edge columns
    ds = np.stack([s[:, 1] - s[:, 0], s[:, 2] - s[:, 0]], -1)
    det = dd[:, 0, 0] * dd[:, 1, 1] - dd[:, 0, 1] * dd[:, 1, 0]
    ok = np.abs(det) > 1e-6
    safe = np.where(ok, det, 1.0)
    inv = np.stack([np.stack([dd[:, 1, 1], -dd[:, 0, 1]], -1),
                    np.stack([-dd[:, 1, 0], dd[:, 0, 0]], -1)], -2) / safe[:, None, None]
    lin = ds @ inv  # L = S D^-1
    t = s[:, 0] - (lin @ d[:, 0, :, None])[..., 0]
    out = np.concatenate([lin, t[..., None]], -1)
    out[~ok] = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    return out


def moved_triangles(src: np.ndarray, dst: np.ndarray, tris: np.ndarray,
                    eps: float = _MOVED_EPS) -> np.ndarray:
    """(M,) bool: triangles with any vertex moved by more than ``eps`` pixels."""
    moved_v = np.abs(dst - src).max(-1) > eps
    return moved_v[tris].any(-1)


def rasterize(dst: np.ndarray, tris: np.ndarray, order: np.ndarray, box: tuple[int, int, int, int],
              ) -> np.ndarray:
    """Triangle-index image over ``box`` = (y0, y1, x0, x1); -1 where no triangle is drawn.

    dst: (V, 2) target vertices; ``order``: triangle indices to draw, first to last (later wins).
    Zero-area triangles are skipped.
    """
    import cv2

    y0, y1, x0, x1 = box
    idx = np.full((y1 - y0, x1 - x0), -1, np.int32)
    if len(order) == 0:
        return idx
    pts = dst[tris[order]] - np.array([x0, y0], np.float64)  # (K, 3, 2)
    e1, e2 = pts[:, 1] - pts[:, 0], pts[:, 2] - pts[:, 0]
    area = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    fixed = np.round(pts * (1 << _SHIFT)).astype(np.int32)
    for k, poly, a in zip(order.tolist(), fixed, area.tolist()):
        if a > 0.25:
            cv2.fillConvexPoly(idx, poly, int(k), lineType=cv2.LINE_8, shift=_SHIFT)
    return idx


def _displacement(idx: np.ndarray, affines: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel ``affine(p) - p`` at pixel centres ``xs`` (1, w), ``ys`` (h, 1); 0 where idx < 0."""
    ident = np.array([[[1.0, 0, 0], [0, 1.0, 0]]])
    aff = np.concatenate([affines - ident, np.zeros((1, 2, 3))], 0).astype(np.float32)
    aff = aff.reshape(-1, 6)
    coef = aff[np.where(idx < 0, len(affines), idx)]  # (h, w, 6)
    dx = coef[..., 0] * xs + coef[..., 1] * ys + coef[..., 2]
    dy = coef[..., 3] * xs + coef[..., 4] * ys + coef[..., 5]
    return dx, dy


def warp_map(src: np.ndarray, dst: np.ndarray, tris: np.ndarray, order: np.ndarray,
             box: tuple[int, int, int, int], stride: int = 1,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward map over ``box`` for the mesh ``src -> dst`` drawing triangles ``order``.

    Returns map_x, map_y (h, w) float32 and coverage (h, w) float32 in [0, 1] (1 where a drawn
    triangle covers the pixel). With ``stride > 1`` the displacement (map minus identity) and the
    coverage are computed on a grid ``stride`` times coarser and upsampled bilinearly: the map is
    piecewise linear, so this only softens it across triangle edges, and pixels whose displacement
    is zero stay exactly the identity.
    """
    import cv2

    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    aff = backward_affines(src, dst, tris)
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    if stride <= 1:
        idx = rasterize(dst, tris, order, box)
        dx, dy = _displacement(idx, aff, xs, ys)
        return dx + xs, dy + ys, (idx >= 0).astype(np.float32)
    s, half = stride, (stride - 1) / 2.0
    hc, wc = -(-h // s), -(-w // s)
    # coarse pixel (i, j) sits at fine coordinates (x0 + s j + half, y0 + s i + half)
    dst_c = (dst - np.array([x0 + half, y0 + half])) / s
    idx = rasterize(dst_c, tris, order, (0, hc, 0, wc))
    xc = (x0 + s * np.arange(wc, dtype=np.float32) + half)[None, :]
    yc = (y0 + s * np.arange(hc, dtype=np.float32) + half)[:, None]
    dx, dy = _displacement(idx, aff, xc, yc)
    stack = np.dstack([dx, dy, (idx >= 0).astype(np.float32)])
    up = cv2.resize(stack, (wc * s, hc * s), interpolation=cv2.INTER_LINEAR)[:h, :w]
    return up[..., 0] + xs, up[..., 1] + ys, up[..., 2]


def bounding_box(points: np.ndarray, size_hw: tuple[int, int], pad: int = 2,
                 ) -> tuple[int, int, int, int] | None:
    """Integer (y0, y1, x0, x1) around ``points`` (N, 2), clipped to the canvas; None if empty."""
    if len(points) == 0:
        return None
    h, w = size_hw
    x0 = int(max(np.floor(points[:, 0].min()) - pad, 0))
    x1 = int(min(np.ceil(points[:, 0].max()) + pad + 1, w))
    y0 = int(max(np.floor(points[:, 1].min()) - pad, 0))
    y1 = int(min(np.ceil(points[:, 1].max()) + pad + 1, h))
    if x1 <= x0 or y1 <= y0:
        return None
    return y0, y1, x0, x1


def apply_affines(mats: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply (N, 2, 3) affines to (N, 2) points, one each. Returns (N, 2)."""
    return (mats[:, :, :2] @ points[:, :, None])[..., 0] + mats[:, :, 2]
