"""Arm masks on the reference photo: which pixels travel with each arm.

A capsule around the bones gives the region where the arm can be; GrabCut (colour models seeded by
the skeleton) then separates the arm from the chest, hips and background it touches. A thin core
along the bones is always arm; the torso core, the face and (with segmentation) the background are
never arm. Without an image the capsules alone are used.
"""
from __future__ import annotations

import logging

import numpy as np

from csg import keypoints as K

from .rig import SIDES

log = logging.getLogger(__name__)


def arm_radius(ref: np.ndarray) -> float:
    """Half a bare upper arm's width in pixels: about 0.1 of the shoulder width."""
    return max(0.1 * float(np.linalg.norm(ref[K.LEFT_SHOULDER] - ref[K.RIGHT_SHOULDER])), 2.0)


def hand_region(ref: np.ndarray, ref_ok: np.ndarray, side: str) -> tuple[np.ndarray, float]:
    """Centre (2,) and radius of the hand: from its keypoints, else extrapolated along the forearm."""
    _, e_i, w_i, root = SIDES[side][:4]
    hand = np.arange(root, root + K.HAND_SIZE)
    seen = hand[ref_ok[hand]]
    fore = ref[w_i] - ref[e_i]
    if len(seen) >= 5:
        c = ref[seen].mean(0)
        return c, float(np.linalg.norm(ref[seen] - c, axis=1).max())
    # hidden hand (in a pocket, behind the back): carry only a little past the wrist
    return ref[w_i] + 0.1 * fore, 0.15 * float(np.linalg.norm(fore))


def capsules(ref: np.ndarray, ref_ok: np.ndarray, side: str, size_hw: tuple[int, int],
             r: float, hand_pad: float, cut: bool = True) -> np.ndarray:
    """(H, W) bool: capsules of radius ``r`` around upper arm and forearm, plus the hand.

    With ``cut`` the upper arm is cut flat just before the shoulder so the chest stays behind.
    """
    import cv2

    s_i, e_i, w_i, root = SIDES[side][:4]
    m = np.zeros(size_hw, np.uint8)
    pts = [tuple(int(v) for v in np.round(ref[j])) for j in (s_i, e_i, w_i)]
    th = max(int(round(2 * r)), 1)
    cv2.line(m, pts[0], pts[1], 1, th)
    cv2.line(m, pts[1], pts[2], 1, max(int(round(0.85 * th)), 1))
    for p in pts:
        cv2.circle(m, p, max(int(round(r)), 1), 1, -1)
    hand = np.arange(root, root + K.HAND_SIZE)
    if ref_ok[hand].sum() >= 5:
        for p in ref[hand][ref_ok[hand]]:
            cv2.circle(m, tuple(int(v) for v in np.round(p)), max(int(round(hand_pad)), 1), 1, -1)
        hull = cv2.convexHull(np.round(ref[hand][ref_ok[hand]]).astype(np.int32))
        cv2.fillConvexPoly(m, hull, 1)
    else:
        c, rad = hand_region(ref, ref_ok, side)
        cv2.circle(m, tuple(int(v) for v in np.round(c)), max(int(round(rad + hand_pad)), 1), 1,
                   -1)
    if cut:
        h, w = size_hw
        yy, xx = np.mgrid[0:h, 0:w]
        d = ref[e_i] - ref[s_i]
        m &= ((xx - ref[s_i, 0]) * d[0] + (yy - ref[s_i, 1]) * d[1]
              > -0.3 * r * np.linalg.norm(d)).astype(np.uint8)
    return m.astype(bool)


def _torso_core(ref: np.ndarray, ref_ok: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the torso quad shrunk halfway to its centre, and the face hull."""
    import cv2

    m = np.zeros(size_hw, np.uint8)
    quad = [K.LEFT_SHOULDER, K.RIGHT_SHOULDER, K.RIGHT_HIP, K.LEFT_HIP]
    if ref_ok[quad].all():
        c = ref[quad].mean(0)
        cv2.fillConvexPoly(m, np.round(c + 0.5 * (ref[quad] - c)).astype(np.int32), 1)
    face = np.arange(K.FACE.start, K.FACE.stop)
    if ref_ok[face].sum() >= 40:
        cv2.fillConvexPoly(m, cv2.convexHull(np.round(ref[face][ref_ok[face]]).astype(np.int32)), 1)
    return m.astype(bool)


def arm_mask(image: np.ndarray | None, ref: np.ndarray, ref_ok: np.ndarray, side: str,
             person: np.ndarray | None = None, iterations: int = 3) -> np.ndarray:
    """(H, W) bool pixels of one arm (upper arm, forearm, hand) on the photo.

    image: (H, W, 3) uint8 RGB or None (capsules only); person: (H, W) probability or None.
    """
    import cv2

    size_hw = image.shape[:2] if image is not None else person.shape  # type: ignore[union-attr]
    r = arm_radius(ref)
    plain = capsules(ref, ref_ok, side, size_hw, 1.15 * r, 0.25 * r)
    if image is None:
        return plain if person is None else plain & (person > 0.5)
    wide = capsules(ref, ref_ok, side, size_hw, 2.2 * r, 0.8 * r)
    core = capsules(ref, ref_ok, side, size_hw, 0.3 * r, 0.0) & ~_shoulder_zone(ref, side, r,
                                                                               size_hw)
    gc = np.full(size_hw, cv2.GC_BGD, np.uint8)
    gc[cv2.dilate(wide.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0] = cv2.GC_PR_BGD
    gc[wide] = cv2.GC_PR_FGD
    gc[_torso_core(ref, ref_ok, size_hw) & wide] = cv2.GC_BGD
    if person is not None:
        gc[person < 0.2] = cv2.GC_BGD
    gc[core] = cv2.GC_FGD
    ys, xs = np.nonzero(gc != cv2.GC_BGD)
    if len(ys) == 0:
        return plain
    pad = 12
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, size_hw[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, size_hw[1])
    crop = np.ascontiguousarray(cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2BGR))
    m = np.ascontiguousarray(gc[y0:y1, x0:x1])
    try:
        # GrabCut seeds its k-means from OpenCV's global RNG; fix it so the same photo always gives
        # the same mask (OpenCV offers no per-call generator).
        cv2.setRNGSeed(0)
        cv2.grabCut(crop, m, None, np.zeros((1, 65)), np.zeros((1, 65)), iterations,
                    cv2.GC_INIT_WITH_MASK)
    except cv2.error as e:  # degenerate colour models: fall back to the plain capsules
        log.warning("arm mask: GrabCut failed (%s); using capsules", str(e).splitlines()[0])
        return plain
    out = np.zeros(size_hw, np.uint8)
    out[y0:y1, x0:x1] = ((m == cv2.GC_FGD) | (m == cv2.GC_PR_FGD)).astype(np.uint8)
    out = cv2.morphologyEx(out, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    return _connected_to(out.astype(bool), core)


def _shoulder_zone(ref: np.ndarray, side: str, r: float, size_hw: tuple[int, int]) -> np.ndarray:
    """Near the shoulder joint the arm and chest mix: not certain arm."""
    import cv2

    m = np.zeros(size_hw, np.uint8)
    cv2.circle(m, tuple(int(v) for v in np.round(ref[SIDES[side][0]])), int(round(1.5 * r)), 1, -1)
    return m.astype(bool)


def _connected_to(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Components of ``mask`` that touch ``seeds``."""
    import cv2

    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    keep = np.unique(labels[seeds & mask])
    keep = keep[keep > 0]
    return np.isin(labels, keep)


def arm_free_base(image: np.ndarray, arms: np.ndarray, ref: np.ndarray, ref_ok: np.ndarray,
                  person: np.ndarray | None, long_side: int = 256) -> np.ndarray:
    """The photo with the ``arms`` pixels (H, W) bool filled by what is probably behind them.

    Behind an arm is the torso or a leg (inside their skeleton polygons) or the background. With a
    person mask the background is first rebuilt without the person (a clean plate), so a hand that
    lifts off the hip uncovers wall, not smeared clothes; the rest is Telea inpainting. Filling
    runs at ``long_side`` pixels and is upsampled; pixels outside ``arms`` are exact.
    """
    import cv2

    if not arms.any():
        return image.copy()
    h, w = arms.shape
    f = min(1.0, long_side / max(h, w))
    size = (max(int(w * f), 1), max(int(h * f), 1))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def shrink(m: np.ndarray) -> np.ndarray:
        ms = cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        return cv2.dilate(ms, np.ones((3, 3), np.uint8))

    body = _body_zone(ref, ref_ok, (h, w))
    if person is not None:  # arm pixels with body around them (a hand on the hip) hide body
        k = max(int(4 * arm_radius(ref)) | 1, 3)
        rest = ((person > 0.5) & ~arms).astype(np.uint8)
        body |= cv2.morphologyEx(rest, cv2.MORPH_CLOSE,
                                 cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0
    body &= arms
    filled = small
    if person is not None:
        plate = cv2.inpaint(small, shrink(person > 0.3), 5, cv2.INPAINT_TELEA)
        filled = np.where(shrink(arms & ~body)[..., None] > 0, plate, small)
    filled = cv2.inpaint(filled, shrink(body if person is not None else arms), 5,
                         cv2.INPAINT_TELEA)
    filled = cv2.GaussianBlur(filled, (0, 0), 1.0)
    up = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    out = image.copy()
    out[arms] = up[arms]
    return out


def _body_zone(ref: np.ndarray, ref_ok: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the torso quad (slightly grown) and leg capsules - what an arm may hide."""
    import cv2

    m = np.zeros(size_hw, np.uint8)
    quad = [K.LEFT_SHOULDER, K.RIGHT_SHOULDER, K.RIGHT_HIP, K.LEFT_HIP]
    if ref_ok[quad].all():
        c = ref[quad].mean(0)
        cv2.fillConvexPoly(m, np.round(c + 1.08 * (ref[quad] - c)).astype(np.int32), 1)
        for j in quad[:2]:  # the shoulder caps: skin, straps and hair, not background
            cv2.circle(m, tuple(int(v) for v in np.round(ref[j])), int(2 * arm_radius(ref)), 1, -1)
        r = int(0.2 * np.linalg.norm(ref[K.LEFT_HIP] - ref[K.RIGHT_HIP])) + 1
        for a, b in ((K.LEFT_HIP, K.LEFT_KNEE), (K.RIGHT_HIP, K.RIGHT_KNEE)):
            if ref_ok[[a, b]].all():
                cv2.line(m, tuple(int(v) for v in np.round(ref[a])),
                         tuple(int(v) for v in np.round(ref[b])), 1, 2 * r)
    return m.astype(bool)
