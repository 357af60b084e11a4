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
    Written out per component (L = S D^-1 with 2x2 edge matrices), float64.
    """
    d = dst[tris].astype(np.float64, copy=False)  # (M, 3, 2)
    s = src[tris].astype(np.float64, copy=False)
    d0x, d0y = d[:, 0, 0], d[:, 0, 1]
    a, c = d[:, 1, 0] - d0x, d[:, 1, 1] - d0y  # target edge 1 (column)
    b, e = d[:, 2, 0] - d0x, d[:, 2, 1] - d0y  # target edge 2 (column)
    s0x, s0y = s[:, 0, 0], s[:, 0, 1]
    p, r = s[:, 1, 0] - s0x, s[:, 1, 1] - s0y
    q, t = s[:, 2, 0] - s0x, s[:, 2, 1] - s0y
    det = a * e - b * c
    ok = np.abs(det) > 1e-6
    inv = 1.0 / np.where(ok, det, 1.0)
    # D^-1 = [[e, -b], [-c, a]] / det ; L = [[p, q], [r, t]] D^-1
    l00 = (p * e - q * c) * inv
    l01 = (q * a - p * b) * inv
    l10 = (r * e - t * c) * inv
    l11 = (t * a - r * b) * inv
    out = np.empty((len(tris), 2, 3))
    out[:, 0, 0], out[:, 0, 1], out[:, 0, 2] = l00, l01, s0x - l00 * d0x - l01 * d0y
    out[:, 1, 0], out[:, 1, 1], out[:, 1, 2] = l10, l11, s0y - l10 * d0x - l11 * d0y
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


def _raster_positions(dst: np.ndarray, tris: np.ndarray, order: np.ndarray,
                      box: tuple[int, int, int, int]) -> np.ndarray:
    """Like :func:`rasterize`, but a pixel holds 1 + the *position* in ``order`` of the triangle
    drawn there (0: none): uint8 when fewer than 255 triangles are drawn, else int32."""
    import cv2

    y0, y1, x0, x1 = box
    idx = np.zeros((y1 - y0, x1 - x0), np.uint8 if len(order) < 255 else np.int32)
    if len(order) == 0:
        return idx
    pts = dst[tris[order]] - np.array([x0, y0], np.float64)  # (K, 3, 2)
    e1, e2 = pts[:, 1] - pts[:, 0], pts[:, 2] - pts[:, 0]
    big = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) > 0.25  # zero-area: skipped
    fixed = np.round(pts * (1 << _SHIFT)).astype(np.int32)
    for k in np.flatnonzero(big).tolist():
        cv2.fillConvexPoly(idx, fixed[k], k + 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return idx


def _gather(idx: np.ndarray, table: np.ndarray) -> list[np.ndarray]:
    """Per-pixel rows of ``table`` (K + 1, 6) float32 at ``idx`` (from :func:`_raster_positions`):
    six (h, w) float32 planes. 8-bit indices use ``cv2.LUT`` (a gather in C)."""
    import cv2

    if idx.dtype == np.uint8:
        lut = np.zeros((256, 6), np.float32)
        lut[:len(table)] = table
        return [cv2.LUT(idx, np.ascontiguousarray(lut[:, k])) for k in range(6)]
    return [np.ascontiguousarray(table[:, k]).take(idx) for k in range(6)]


def _plane_maps(c: list[np.ndarray], xs: np.ndarray, ys: np.ndarray,
                ) -> tuple[np.ndarray, np.ndarray]:
    """``c0 x + c1 y + c2`` and ``c3 x + c4 y + c5`` at pixel centres xs (1, w), ys (h, 1)."""
    mx = c[0] * xs
    mx += c[1] * ys
    mx += c[2]
    my = c[3] * xs
    my += c[4] * ys
    my += c[5]
    return mx, my


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
    ident = np.array([1.0, 0, 0, 0, 1.0, 0])
    disp = backward_affines(src, dst, tris[order]).reshape(-1, 6) - ident  # affine minus identity
    table = np.concatenate([np.zeros((1, 6)), disp]).astype(np.float32)
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    if stride <= 1:
        idx = _raster_positions(dst, tris, order, box)
        dx, dy = _plane_maps(_gather(idx, table), xs, ys)
        dx += xs
        dy += ys
        return dx, dy, (idx > 0).astype(np.float32)
    s, half = stride, (stride - 1) / 2.0
    hc, wc = -(-h // s), -(-w // s)
    # coarse pixel (i, j) sits at fine coordinates (x0 + s j + half, y0 + s i + half)
    dst_c = (dst - np.array([x0 + half, y0 + half])) / s
    idx = _raster_positions(dst_c, tris, order, (0, hc, 0, wc))
    xc = (x0 + s * np.arange(wc, dtype=np.float32) + half)[None, :]
    yc = (y0 + s * np.arange(hc, dtype=np.float32) + half)[:, None]
    dx, dy = _plane_maps(_gather(idx, table), xc, yc)
    size = (wc * s, hc * s)
    mx = cv2.resize(dx, size, interpolation=cv2.INTER_LINEAR)[:h, :w]
    my = cv2.resize(dy, size, interpolation=cv2.INTER_LINEAR)[:h, :w]
    cover = cv2.resize((idx > 0).astype(np.float32), size, interpolation=cv2.INTER_LINEAR)[:h, :w]
    mx += xs
    my += ys
    return mx, my, cover


UNCOVERED = -1.0e4
"""Map value of pixels no triangle covers in :func:`affine_map`: far outside any image, so
``cv2.remap`` with ``BORDER_CONSTANT`` gives 0 there (no separate coverage mask is needed)."""


def affine_map(src: np.ndarray, dst: np.ndarray, tris: np.ndarray, order: np.ndarray,
               box: tuple[int, int, int, int], affines: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray]:
    """Exact (stride 1) backward map over ``box`` for the mesh ``src -> dst`` drawing ``order``.

    The same map as ``warp_map(..., stride=1)`` where a triangle is drawn; pixels no drawn
    triangle covers map to :data:`UNCOVERED`. The triangle-index raster is 8 bit for fewer than
    255 drawn triangles and the six affine coefficients are gathered with ``cv2.LUT``.
    affines: ``backward_affines(src, dst, tris[order])`` when already computed.
    Returns map_x, map_y (h, w) float32.
    """
    y0, y1, x0, x1 = box
    aff = (backward_affines(src, dst, tris[order]) if affines is None else affines).reshape(-1, 6)
    table = np.concatenate([[[0.0, 0, UNCOVERED, 0, 0, UNCOVERED]], aff]).astype(np.float32)
    idx = _raster_positions(dst, tris, order, box)
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    return _plane_maps(_gather(idx, table), xs, ys)


def forward_stretch(affines: np.ndarray) -> np.ndarray:
    """(M,) the largest stretch (singular value) of the forward maps whose backward affines
    (M, 2, 3) are given: 1 / the smallest singular value of each backward linear part."""
    a, b, c, d = (affines[:, i, j] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
    sq = a * a + b * b + c * c + d * d
    det = np.abs(a * d - b * c)
    smin2 = 0.5 * (sq - np.sqrt(np.maximum(sq * sq - 4 * det * det, 0.0)))
    return 1.0 / np.sqrt(np.maximum(smin2, 1e-12))


def barycentric(points: np.ndarray, src: np.ndarray, tris: np.ndarray, tri: np.ndarray,
                ) -> np.ndarray:
    """(N, 3) barycentric coordinates of ``points`` (N, 2) in their triangles ``tris[tri]``."""
    p0, p1, p2 = (src[tris[tri, k]] for k in range(3))
    e1, e2, q = p1 - p0, p2 - p0, points - p0
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    det = np.where(np.abs(det) > 1e-12, det, 1.0)
    l1 = (q[:, 0] * e2[:, 1] - q[:, 1] * e2[:, 0]) / det
    l2 = (e1[:, 0] * q[:, 1] - e1[:, 1] * q[:, 0]) / det
    return np.stack([1.0 - l1 - l2, l1, l2], 1)


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
