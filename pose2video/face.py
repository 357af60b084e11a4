"""Mouth interior for the warp: a dark cavity and a band of upper teeth when the lips part.

The mesh already moves the lips and the jaw (all 68 face points are anchors); the pixels between the
parted inner lips are then stretched lip texture. :func:`paint_mouth` covers them with a dark
cavity and a light teeth band under the upper lip, anti-aliased and blended in proportion to how
far the mouth opened beyond the reference. Eyelids need no painting: when the eyelid points meet,
the mesh squashes the eye and stretches the lid over it (a blink).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from csg import keypoints as K

_IN = K.INNER_LIPS.start
UPPER_INNER = np.array([_IN + 0, _IN + 1, _IN + 2, _IN + 3, _IN + 4])  # corner, top, corner
_AA_SHIFT = 3


@dataclass(frozen=True)
class MouthStyle:
    """Colours (RGB float, 0-255) sampled once from the reference photo."""

    cavity: tuple[float, float, float]
    teeth: tuple[float, float, float]
    ref_opening: float  # csg.keypoints.mouth_opening of the reference
    tongue: tuple[float, float, float] = (120.0, 55.0, 55.0)


def mouth_style(image: np.ndarray, ref: np.ndarray, ref_ok: np.ndarray) -> MouthStyle | None:
    """Sample lip and skin brightness around the reference mouth; None without a mouth."""
    import cv2

    lips = np.arange(K.MOUTH.start, K.MOUTH.stop)
    if not ref_ok[lips].all():
        return None
    m = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(ref[K.OUTER_LIPS]).astype(np.int32)], 1)
    lip = image[m > 0].mean(0) if m.any() else np.array([150.0, 80, 80])
    skin_lum = float(lip.mean())
    light = float(np.clip(skin_lum / 150.0, 0.55, 1.0))
    cavity = tuple(float(v) for v in 0.22 * lip + np.array([18.0, 6, 6]))
    teeth = tuple(float(v) * light for v in (234.0, 228, 216))
    tongue = tuple(float(v) for v in 0.62 * lip + np.array([14.0, 0, 0]))
    return MouthStyle(cavity, teeth, float(K.mouth_opening(ref)), tongue)


def _aa_mask(poly: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Anti-aliased filled polygon over box (y0, y1, x0, x1) as float32 in [0, 1]."""
    import cv2

    y0, y1, x0, x1 = box
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = np.round((poly - [x0, y0]) * (1 << _AA_SHIFT)).astype(np.int32)
    cv2.fillPoly(m, [pts], 255, lineType=cv2.LINE_AA, shift=_AA_SHIFT)
    return m.astype(np.float32) / 255.0


def _inside(poly: np.ndarray, p: np.ndarray) -> bool:
    import cv2

    return cv2.pointPolygonTest(poly.astype(np.float32).reshape(-1, 1, 2),
                                (float(p[0]), float(p[1])), False) > 0


def lip_arc(points: np.ndarray, per_segment: int = 6) -> np.ndarray:
    """Centripetal Catmull-Rom curve through ``points`` (N, 2), ends included (end tangents by
    reflection): a lip arc without the corners a polygon of 4-5 points draws. (M, 2)."""
    p = np.asarray(points, np.float64)
    if len(p) < 3:
        return p
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    u = np.linspace(0.0, 1.0, per_segment, endpoint=False)[:, None]
    out = []
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        d = [max(np.linalg.norm(b - a) ** 0.5, 1e-6) for a, b in ((p0, p1), (p1, p2), (p2, p3))]
        t0, t1, t2, t3 = 0.0, d[0], d[0] + d[1], d[0] + d[1] + d[2]
        t = t1 + u * (t2 - t1)
        a1 = (t1 - t) / (t1 - t0) * p0 + (t - t0) / (t1 - t0) * p1
        a2 = (t2 - t) / (t2 - t1) * p1 + (t - t1) / (t2 - t1) * p2
        a3 = (t3 - t) / (t3 - t2) * p2 + (t - t2) / (t3 - t2) * p3
        b1 = (t2 - t) / (t2 - t0) * a1 + (t - t0) / (t2 - t0) * a2
        b2 = (t3 - t) / (t3 - t1) * a2 + (t - t1) / (t3 - t1) * a3
        out.append((t2 - t) / (t2 - t1) * b1 + (t - t1) / (t2 - t1) * b2)
    out.append(p[-1:])
    return np.vstack(out)


def paint_mouth(frame: np.ndarray, tgt: np.ndarray, tgt_ok: np.ndarray, style: MouthStyle,
                ramp: float = 0.04) -> float:
    """Paint the cavity, tongue and upper teeth into ``frame`` (H, W, 3) uint8 in place.

    tgt: (133, 2) target keypoints. The blend weight is ``clip((open - ref_open) / ramp, 0, 1)``
    with ``open`` from :func:`csg.keypoints.mouth_opening` (gap over face height). The opening is
    the inner lips' upper and lower arcs as smooth curves (:func:`lip_arc`, sharp at the mouth
    corners), clipped by the outer lips and the face; in it a cavity darker towards the top, a
    tongue (the lip colour, darkened) in its lower part, and the upper teeth: from the upper lip
    down to a shallow smile curve 28 % of the gap below the lip's centre (capped at 5 % of the face
    height), so the corners stay dark. Returns the blend weight.
    """
    inner = np.arange(K.INNER_LIPS.start, K.INNER_LIPS.stop)
    if not tgt_ok[inner].all():
        return 0.0
    amount = float(np.clip((K.mouth_opening(tgt) - style.ref_opening) / ramp, 0.0, 1.0))
    if amount <= 0.0:
        return 0.0
    poly = tgt[inner]
    upper_arc = lip_arc(tgt[UPPER_INNER])
    lower_arc = lip_arc(tgt[[_IN + 4, _IN + 5, _IN + 6, _IN + 7, _IN + 0]])
    curve = np.vstack([upper_arc, lower_arc[1:-1]])
    h, w = frame.shape[:2]
    x0, y0 = np.floor(np.minimum(poly.min(0), curve.min(0))).astype(int) - 2
    x1, y1 = np.ceil(np.maximum(poly.max(0), curve.max(0))).astype(int) + 3
    box = (max(y0, 0), min(y1, h), max(x0, 0), min(x1, w))
    if box[1] <= box[0] or box[3] <= box[2]:
        return 0.0
    # only within the lip contour: the inner lips, clipped by the outer lips
    cav = _aa_mask(curve, box)
    outer = tgt[K.OUTER_LIPS]
    if tgt_ok[K.OUTER_LIPS].all() and _inside(outer, poly.mean(0)):
        cav = np.minimum(cav, _aa_mask(outer, box))
    face = np.arange(K.FACE.start, K.MOUTH.start)  # jaw, brows, nose, eyes: not the lips
    if tgt_ok[face].all():  # never outside the face
        import cv2

        hull = cv2.convexHull(np.round(tgt[face] * 8).astype(np.int32)).reshape(-1, 2) / 8.0
        cav = np.minimum(cav, _aa_mask(hull, box))
    xs = np.arange(box[2], box[3], dtype=np.float64) + 0.5
    ys = np.arange(box[0], box[1], dtype=np.float64)[:, None] + 0.5
    left, right = upper_arc[:, 0].min(), upper_arc[:, 0].max()
    o_up, o_lo = np.argsort(upper_arc[:, 0]), np.argsort(lower_arc[:, 0])
    y_up = np.interp(xs, upper_arc[o_up, 0], upper_arc[o_up, 1])[None, :]
    y_lo = np.interp(xs, lower_arc[o_lo, 0], lower_arc[o_lo, 1])[None, :]
    depth = np.clip((ys - y_up) / np.maximum(y_lo - y_up, 1.0), 0.0, 1.0)  # 0 top .. 1 bottom
    gap = np.linalg.norm(tgt[_IN + 6] - tgt[_IN + 2])
    band = min(0.28 * gap, 0.05 * float(K.face_height(tgt))) + 0.5
    half = max((right - left) / 2, 1.0)
    across = np.clip(np.abs(xs - (left + right) / 2) / half, 0.0, 1.0)  # 0 centre .. 1 corner
    # teeth hang from the upper jaw: their lower edge is a shallow smile curve below the upper
    # lip's centre (not a copy of the lip's arc); the lip hides them where it comes lower, so
    # the corners stay dark; soft edge, faded in the outer 15 % of the width
    y_mid = float(np.interp((left + right) / 2, upper_arc[o_up, 0], upper_arc[o_up, 1]))
    y_edge = y_mid + band * (1.0 - 0.35 * across[None, :] ** 2)
    edge = np.clip((y_edge - ys) / 1.5 + 0.5, 0.0, 1.0)
    width = np.clip((0.85 - across) / 0.15, 0.0, 1.0)[None, :]
    teeth = (edge * width * (ys > y_up - 0.5)).astype(np.float32) * cav
    cavity = np.asarray(style.cavity, np.float32)
    tongue = np.clip(np.asarray(style.tongue, np.float32), 0, 255)
    t_w = np.clip((depth - 0.55) / 0.35, 0.0, 1.0) * (1.0 - across[None, :] ** 2)
    shade = (0.75 + 0.25 * depth)[..., None]  # the cavity is deepest under the teeth
    inside = (cavity * shade) * (1 - t_w[..., None]) + tongue * t_w[..., None]
    crop = frame[box[0]:box[1], box[2]:box[3]].astype(np.float32)
    a_cav = (amount * cav)[..., None]
    out = crop * (1 - a_cav) + inside.astype(np.float32) * a_cav
    lit = (1.0 - 0.3 * across ** 2)[None, :, None] * np.ones_like(edge)[..., None]
    a_t = (amount * teeth)[..., None]
    out = out * (1 - a_t) + np.asarray(style.teeth, np.float32) * lit.astype(np.float32) * a_t
    frame[box[0]:box[1], box[2]:box[3]] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return amount


# --- a face that tolerates real keypoints ----------------------------------------------------------
_F0 = K.FACE.start
HEAD_POINTS = np.r_[np.arange(K.NOSE, K.RIGHT_EAR + 1), np.arange(K.FACE.start, K.FACE.stop)]
"""(73,) the body's head points and the 68 face points: they move with the skull."""
MOBILE = np.r_[np.arange(_F0 + 4, _F0 + 13), np.arange(K.MOUTH.start, K.MOUTH.stop)]
"""Face points that move on their own, relative to the skull: the lower jaw and the lips."""
JAW = np.arange(_F0 + 4, _F0 + 13)
"""The lower jaw line (iBUG 4-12)."""


def robust_similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray, iters: int = 4,
                      floor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Similarity ``dst ~ a src + b`` per frame, robust to outlying points (IRLS, Huber weights).

    src: (N, 2) or (T, N, 2); dst: (T, N, 2); weights: (T, N) >= 0. Each pass reweights a point
    by ``min(1, k / r)`` for its residual r, with ``k = max(1.5 x 1.4826 x median residual,
    floor)`` pixels (Huber's M-estimator, a scale from the median absolute residual). Returns
    a, b: (T,) complex.
    """
    from .align import fit_similarity, to_complex

    w0 = np.asarray(weights, np.float64)
    a, b = fit_similarity(src, dst, w0)
    zs, zd = to_complex(src), to_complex(dst)
    for _ in range(iters):
        r = np.abs(a[:, None] * zs + b[:, None] - zd)
        with warnings.catch_warnings():  # frames without a weighted point: median NaN -> 0
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(np.where(w0 > 0, r, np.nan), axis=1) if w0.any() else \
                np.zeros(len(r))
        k = np.maximum(1.5 * 1.4826 * np.nan_to_num(med), floor)[:, None]
        w = w0 * np.minimum(1.0, k / np.maximum(r, 1e-9))
        a, b = fit_similarity(src, dst, w)
    return a, b


def _smooth(x: np.ndarray, good: np.ndarray, sigma: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing over frames (axis 0) of the ``good`` frames; others kept."""
    if sigma <= 0 or good.sum() < 2:
        return x
    out = x.copy()
    idx = np.flatnonzero(good)
    out[idx] = gaussian_filter_frames(x[idx], sigma)
    return out


def gaussian_filter_frames(x: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Gaussian smoothing along axis 0 with edge padding (``scipy.ndimage.gaussian_filter1d``
    with ``mode="nearest"`` and the same kernel, radius ``int(truncate * sigma + 0.5)``), for real
    or complex arrays, without importing scipy.ndimage (~0.4 s)."""
    r = int(truncate * float(sigma) + 0.5)
    if r <= 0 or len(x) == 0:
        return x.copy()
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / float(sigma)) ** 2)
    k /= k.sum()
    pad = np.concatenate([np.repeat(x[:1], r, 0), x, np.repeat(x[-1:], r, 0)])
    out = np.zeros_like(x, dtype=np.result_type(x.dtype, np.float64))
    for j, wj in enumerate(k):
        out += wj * pad[j:j + len(x)]
    return out


def stabilize_face(kps: np.ndarray, ref: np.ndarray, ref_ok: np.ndarray, threshold: float = 0.3,
                   sigma: float = 1.0, max_residual: float = 0.15,
                   jaw_vertical: bool = True, rigid_residual: float = 0.0) -> np.ndarray:
    """Regularise the head points of a driving sequence for the warp (pure function).

    kps: (T, 133, 3) driving keypoints on the photo's canvas; ref: (133, 2) the photo's skeleton.
    Per frame, a robust similarity S_t (:func:`robust_similarity`) maps the photo's stable face
    points onto the frame's, and is smoothed over time (Gaussian, ``sigma`` frames, zero phase).
    The head points become ``S_t(ref + e_t)``: the skull moves rigidly with the photo's own face
    shape; only the jaw and lips (:data:`MOBILE`) keep the frame's expression ``e_t`` (in photo
    coordinates, each point's offset clipped to ``max_residual`` face heights, smoothed likewise;
    with ``jaw_vertical`` the jaw line's offsets only along the photo's face axis, brows to chin:
    a sideways jaw offset is a head turn the similarity cannot follow, and it folds the cheek).
    ``rigid_residual`` > 0: the other head points (eyes, brows, nose) keep their own offsets too,
    clipped to that many face heights: blinks and brows follow, outliers stay bounded.
    Noisy eye, brow and nose points no longer squash the face, and a frame equal to the photo's
    pose maps to itself. Frames without a face are returned unchanged. Returns a copy.
    """
    from .align import FACE_STABLE, to_complex, to_xy

    out = np.array(kps, np.float64, copy=True)
    ok = out[..., 2] >= threshold
    st = FACE_STABLE
    if ref_ok[st].sum() < 6:
        return out
    good = (ok[:, st] & ref_ok[st]).sum(1) >= 6
    if not good.any():
        return out
    a, b = robust_similarity(ref[st], out[:, st, :2], (ok[:, st] & ref_ok[st]).astype(float))
    a, b = _smooth(a, good, sigma), _smooth(b, good, sigma)
    zr = to_complex(ref[HEAD_POINTS])
    zt = to_complex(out[:, HEAD_POINTS, :2])
    a_safe = np.where(np.abs(a) > 1e-6, a, 1.0)
    e = (zt - b[:, None]) / a_safe[:, None] - zr[None]  # expression in photo coordinates
    mob = np.isin(HEAD_POINTS, MOBILE)
    valid = ok[:, HEAD_POINTS] & ref_ok[HEAD_POINTS][None]
    e = np.where(valid & good[:, None] & (mob[None] | (rigid_residual > 0)), e, 0.0)
    if jaw_vertical:  # the jaw opens along the face's up-down axis; sideways is a head turn
        jaw = np.isin(HEAD_POINTS, JAW)
        brows = ref[np.r_[K.RIGHT_BROW, K.LEFT_BROW]].mean(0)
        u = to_complex(ref[K.CHIN] - brows)
        if abs(u) > 1e-6:
            u = u / abs(u)
            e = np.where(jaw[None], u * (e * np.conj(u)).real, e)
    fh = float(K.face_height(ref[None])[0])
    lim = np.where(mob, max_residual, rigid_residual)[None] * fh
    mag = np.abs(e)
    e = np.where(mag > lim, e / np.maximum(mag, 1e-9) * lim, e)
    e = _smooth(e, good, sigma)
    z = a[:, None] * (zr[None] + e) + b[:, None]
    new = to_xy(z)
    upd = good[:, None] & ref_ok[HEAD_POINTS][None]
    sel = out[:, HEAD_POINTS]
    sel[..., :2] = np.where(upd[..., None], new, sel[..., :2])
    sel[..., 2] = np.where(upd & ~ok[:, HEAD_POINTS], np.maximum(sel[..., 2], threshold), sel[..., 2])
    out[:, HEAD_POINTS] = sel
    # an exact reference frame stays exact
    same = np.all(np.abs(kps[:, HEAD_POINTS, :2] - ref[HEAD_POINTS][None]) < 1e-6, axis=(1, 2))
    out[same] = kps[same]
    return out
