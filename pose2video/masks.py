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
             person: np.ndarray | None = None, iterations: int = 3,
             cloth: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool pixels of one arm (upper arm, forearm, hand) on the photo.

    image: (H, W, 3) uint8 RGB or None (capsules only); person: (H, W) probability or None.
    cloth: an optional (H, W) bool array, set to the clothes found lying over the arm (see
    :func:`_drop_clothes`; in front of the arm, so not part of it).
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
    # the clothes on the torso next to the arm teach GrabCut what is not arm
    near = capsules(ref, ref_ok, side, size_hw, 1.2 * r, 0.5 * r, cut=False)
    gc[_body_zone(ref, ref_ok, size_hw, 1.0) & ~near] = cv2.GC_BGD
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
    # an arm is no wider than its bones' tight capsules: drop cloth, hair and legs GrabCut took
    out &= capsules(ref, ref_ok, side, size_hw, 1.45 * r, 0.5 * r, cut=False).astype(np.uint8)
    if person is not None:
        out &= (person > 0.3).astype(np.uint8)
    # cloth over the bone was forced in by the core; the components still joined to it stay
    whole = smooth_mask(out.astype(bool), 0.15 * r)
    kept = _drop_clothes(image, whole, ref, ref_ok, side, r, size_hw)
    if cloth is not None:
        cloth[:] = whole & ~kept
    return _connected_to(kept, core)


def _colour_centres(lab: np.ndarray, k: int) -> np.ndarray | None:
    """(k, 3) k-means centres of the (N, 3) float32 Lab samples (deterministic), or None."""
    import cv2

    if len(lab) < 4 * k:
        return None
    cv2.setRNGSeed(0)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, _, centres = cv2.kmeans(np.ascontiguousarray(lab[:: max(len(lab) // 4000, 1)]), k, None,
                               crit, 2, cv2.KMEANS_PP_CENTERS)
    return centres


def _drop_clothes(image: np.ndarray, arm: np.ndarray, ref: np.ndarray, ref_ok: np.ndarray,
                  side: str, r: float, size_hw: tuple[int, int], ratio: float = 0.5,
                  far: float = 20.0) -> np.ndarray:
    """``arm`` (H, W) bool without the patches at its edge that look like the torso's clothes and
    not like the forearm: a ruffle or a strap lying over the upper arm's bone is forced into the
    arm by its core and would travel with it (the demo's grey ruffle tips rode on her elbow, a
    strip of the shorts on her forearm). Colour models: k-means (4 centres, CIELAB) of the
    forearm's core (its bone, 0.3 r) and of the torso's core; clothes centres within ``far`` of a
    forearm centre are dropped from the clothes model (a sleeve of the jacket's own cloth, bare
    skin at the waist: nothing tells arm and body apart there). A pixel goes when it is ``far``
    (CIELAB units) from every forearm centre and nearer than ``ratio`` x that to a clothes centre;
    only patches (a 3x3 opening) that touch the arm's edge, so no hole opens inside a moving arm.
    """
    import cv2

    s_i, e_i, w_i = SIDES[side][:3]
    if not (ref_ok[e_i] and ref_ok[w_i]):
        return arm
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    fore = np.zeros(size_hw, np.uint8)
    cv2.line(fore, tuple(int(v) for v in np.round(ref[e_i])),
             tuple(int(v) for v in np.round(ref[w_i])), 1, max(int(round(0.6 * r)), 1))
    fore_px = lab[(fore > 0) & arm]
    torso = _torso_core(ref, ref_ok, size_hw) & ~head_zone(ref, ref_ok, size_hw)
    a_c = _colour_centres(fore_px, 4)
    c_c = _colour_centres(lab[torso], 4)
    if a_c is None or c_c is None:
        return arm
    # clothes colours the forearm also shows (a sleeve of the same cloth, bare skin at the waist)
    # are not evidence of clothes
    c_c = c_c[np.linalg.norm(c_c[:, None] - a_c[None], axis=-1).min(1) > far]
    if len(c_c) == 0:
        return arm
    ys, xs = np.nonzero(arm)
    px = lab[ys, xs]
    d_a = np.linalg.norm(px[:, None] - a_c[None], axis=-1).min(1)
    d_c = np.linalg.norm(px[:, None] - c_c[None], axis=-1).min(1)
    drop = np.zeros(size_hw, np.uint8)
    drop[ys, xs] = (d_c < ratio * d_a) & (d_a > far)
    # a patch of cloth, not single pixels (a dark fleck on a finger, a bracelet's glint), at the
    # arm's edge: a hole inside the arm would let the fill show through the moving arm
    drop = cv2.morphologyEx(drop, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
    edge = drop & (cv2.dilate((~arm).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    return arm & ~_connected_to(drop, edge)


FINGER_BONES = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
                (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18),
                (18, 19), (19, 20)]
"""Hand-relative (parent, child) indices of the 21-point hand."""


def hand_zone(ref: np.ndarray, ref_ok: np.ndarray, side: str, size_hw: tuple[int, int], r: float,
              person: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool: the whole hand on the photo - thick finger bones (past the tips), the palm,
    and the segmented person inside the keypoint hull grown by ``0.35 r``, within ``0.35 r`` of
    the bones.

    Segmentation and GrabCut often lose fingers against busy or skin-coloured backgrounds; a hand
    pixel left out of the hand layer stays behind as a ghost when the hand moves, so the fingers
    are taken from the skeleton, without the background between spread fingers.
    """
    import cv2

    _, e_i, w_i, root = SIDES[side][:4]
    hand = np.arange(root, root + K.HAND_SIZE)
    m = np.zeros(size_hw, np.uint8)
    ok = ref_ok[hand]
    if ok.sum() >= 5:
        pts = ref[hand]
        th = max(int(round(0.5 * r)), 2)
        for i, j in FINGER_BONES:
            if ok[i] and ok[j]:
                tip = pts[j] + (0.35 if j % 4 == 0 else 0.0) * (pts[j] - pts[i])  # past the tip
                cv2.line(m, tuple(np.round(pts[i]).astype(int)), tuple(np.round(tip).astype(int)),
                         1, th)
        palm = [i for i in (0, 1, 5, 9, 13, 17) if ok[i]]
        if len(palm) >= 3:
            cv2.fillConvexPoly(m, cv2.convexHull(np.round(pts[palm]).astype(np.int32)), 1)
        cv2.line(m, tuple(np.round(ref[w_i]).astype(int)), tuple(np.round(pts[0]).astype(int)), 1,
                 max(int(round(1.2 * r)), 2))
        if person is not None:
            hull = np.zeros(size_hw, np.uint8)
            cv2.fillConvexPoly(hull, cv2.convexHull(np.round(pts[ok]).astype(np.int32)), 1)
            k = max(int(round(0.35 * r)), 1)
            disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
            # the person inside the hull, near the bones only: the clothes between the fingers
            # of a hand held in front of the body would otherwise travel with the hand
            m |= cv2.dilate(hull, disk) & (person > 0.5).astype(np.uint8) & cv2.dilate(m, disk)
    else:
        c, rad = hand_region(ref, ref_ok, side)
        cv2.circle(m, tuple(int(v) for v in np.round(c)), max(int(round(rad + 0.25 * r)), 1), 1,
                   -1)
        if person is not None:
            m &= cv2.dilate((person > 0.4).astype(np.uint8), np.ones((5, 5), np.uint8))
    return m.astype(bool)


def smooth_mask(mask: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W) bool ``mask`` with its contour smoothed (blurred, re-thresholded): no stair steps."""
    import cv2

    if sigma < 0.5:
        return mask
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma) > 0.5


def soft_alpha(mask: np.ndarray, feather: float) -> np.ndarray:
    """(H, W) float32 alpha in [0, 1]: 0 outside ``mask``, rising to 1 ``feather`` px inside.

    The ramp follows the Euclidean distance to the contour (smoothstep), so edges are
    anti-aliased and no background outside the mask travels with a layer.
    """
    import cv2

    d = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    t = np.clip((d - 0.5) / max(feather, 1.0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def _segment_distance(xx: np.ndarray, yy: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = b - a
    t = np.clip(((xx - a[0]) * d[0] + (yy - a[1]) * d[1]) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.hypot(xx - a[0] - t * d[0], yy - a[1] - t * d[1])


def elbow_split(ref: np.ndarray, side: str, size_hw: tuple[int, int], r: float,
                ) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) float32 weights (upper, fore) splitting one arm at its elbow, with an overlap.

    The coordinate is distance to the upper-arm bone minus distance to the forearm bone (< 0 on
    the upper-arm side). The forearm weight rises over [-0.7 r, 0.1 r]; the upper-arm weight falls
    over [0.3 r, 1.3 r], after the forearm's is full, so a straight arm composites (forearm over
    upper arm) to exactly its own pixels, and a bent one cross-fades the two bones' warps.
    """
    s_i, e_i, w_i = SIDES[side][:3]
    h, w = size_hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = _segment_distance(xx, yy, ref[s_i], ref[e_i]) - _segment_distance(xx, yy, ref[e_i],
                                                                        ref[w_i])

    def step(x: np.ndarray, a: float, b: float) -> np.ndarray:
        t = np.clip((x - a) / (b - a), 0.0, 1.0)
        return t * t * (3.0 - 2.0 * t)
    return (1.0 - step(d, 0.3 * r, 1.3 * r)).astype(np.float32), step(d, -0.7 * r, 0.1 * r)


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
                  person: np.ndarray | None, long_side: int = 256,
                  plate: np.ndarray | None = None) -> np.ndarray:
    """The photo with the ``arms`` pixels (H, W) bool filled by what is probably behind them.

    Behind an arm is the body or the background. With a person mask, the silhouette without the
    arms is continued across them (the person probability itself is inpainted), and each arm
    pixel is filled from its own side: body pixels from body pixels only (the photo's own
    clothes, tile by tile, :func:`texture_fill`, over Telea with everything else unknown),
    background pixels from a clean plate (the photo with the whole person
    inpainted), cross-faded at the continued silhouette. So a hand lifting off the shorts uncovers
    denim, not wall, and an arm beside the waist uncovers wall, not smeared clothes. Without a
    mask, the skeleton's torso and leg polygons decide. Filling runs at ``long_side`` pixels and is
    upsampled; pixels outside ``arms`` are exact. ``plate``: the clean plate (H, W, 3) when
    already made (:func:`pose2video.layers.background_plate`), else it is inpainted here.
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

    hole = shrink(arms)
    if person is None:
        filled = cv2.inpaint(small, hole, 5, cv2.INPAINT_TELEA)
        up = cv2.resize(cv2.GaussianBlur(filled, (0, 0), 1.0), (w, h),
                        interpolation=cv2.INTER_LINEAR)
    else:
        # each side from its own pixels only: the body from the body (the background beside the
        # hole unknown too), the background from the background (the arms unknown too: their
        # soft edges reach past the person mask and would streak the wall with skin)
        near = cv2.dilate(hole, np.ones((13, 13), np.uint8))
        body_fill = cv2.inpaint(small, hole | (shrink(person <= 0.5) & near), 5,
                                cv2.INPAINT_TELEA)
        plate_small = cv2.inpaint(small, shrink((person > 0.3) | arms), 5, cv2.INPAINT_TELEA) \
            if plate is None else None

        def upsample(x: np.ndarray) -> np.ndarray:
            x = cv2.GaussianBlur(x, (0, 0), 1.0)
            return cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        t = behind_body(arms, person, ref, ref_ok)
        body = upsample(body_fill)
        # the body side: the photo's own texture where a patch of clothes can be found
        inside = (person > 0.5) & ~cv2.dilate(arms.astype(np.uint8), np.ones((5, 5), np.uint8))\
            .astype(bool) & ~head_zone(ref, ref_ok, arms.shape)  # clothes, never face or neck
        # matched against the visible body only: the wall beside an arm would tint the copies
        body = texture_fill(image, arms & (t > 0.5), inside, body, unknown=arms | (person <= 0.5))
        t = t[..., None]
        back = upsample(plate_small) if plate is None else plate.astype(np.float32)
        up = np.round(back * (1 - t) + body * t).astype(np.uint8)
    out = image.copy()
    out[arms] = up[arms]
    return out


def texture_fill(image: np.ndarray, hole: np.ndarray, source_ok: np.ndarray,
                 fallback: np.ndarray, ring: int = 4, tile: int | None = None,
                 unknown: np.ndarray | None = None) -> np.ndarray:
    """Fill ``hole`` (H, W) bool with the photo's own texture, tile by tile; float32 (H, W, 3) out.

    A coarse exemplar-based inpainting (Criminisi et al. 2004, with square tiles instead of
    per-pixel patches): the hole is cut into ``tile``-pixel squares (default: the long side / 32,
    at least 8), filled from the known pixels inwards (nearest first); each square copies the
    photo at one offset. Candidates: rings 1 to 8 tiles away in 16 directions, then a 2-pixel grid
    within half a tile of the 3 best, then the best's 8 neighbours (a pattern's phase). Cost, over
    the square's surrounding ``ring``-pixel band of known (or already filled) pixels:

        mean |band - shifted band - dc|^2 + mean_c (std_source - std_band)_c^2 + 0.5 mean dc^2

    ``dc``: the mean colour difference of the two bands, added to the copy; ``std_source``: the
    std of the tile-sized square at the source. The middle term compares textures: without it a
    flat patch of the pattern's mean colour (a plain blouse) beats every out-of-phase copy of a
    patterned jacket, which pays the pattern's variance twice. A copy's source must lie (85 %)
    within ``source_ok`` (e.g. the visible body, away from the arms), and the best cost must stay
    below twice the band's variance + 25, else the square keeps ``fallback`` (H, W, 3) (a
    diffusion fill), as do pixels whose own source is not ``source_ok``. Where copies from two
    offsets (or a copy and the fallback) meet, a 1-pixel seam is softened (Gaussian, sigma 1).
    ``unknown`` (H, W) bool, a superset of ``hole``: pixels that do not show what is behind (an
    arm's other half, or the wall beside a body fill); they never count as known. Deterministic.
    """
    import cv2

    out = np.asarray(fallback, np.float32).copy()
    h, w = hole.shape
    ys, xs = np.nonzero(hole)
    if len(ys) == 0:
        return out
    tile = max(int(tile or round(max(h, w) / 32)), 8)
    unknown = hole if unknown is None else unknown | hole
    img = image.astype(np.float32)
    work = np.where(unknown[..., None], out, img)  # the known pixels, then the filled ones
    known = ~unknown
    # squares of the hole, nearest to the known pixels first (onion-peel order)
    dist = cv2.distanceTransform(unknown.astype(np.uint8), cv2.DIST_L2, 3)
    cell = (ys // tile) * ((w + tile - 1) // tile) + xs // tile
    order = np.argsort(cell, kind="stable")
    cuts = np.nonzero(np.diff(cell[order]))[0] + 1
    squares = sorted(np.split(order, cuts), key=lambda g: (float(dist[ys[g], xs[g]].min()),
                                                           int(cell[g[0]])))
    coarse = np.array([(int(round(rad * tile * np.cos(a))), int(round(rad * tile * np.sin(a))))
                       for rad in (1.0, 1.5, 2.0, 3.0, 4.5, 6.0, 8.0)
                       for a in np.linspace(0, 2 * np.pi, 16, endpoint=False)])
    half = tile // 2
    fine = np.stack(np.meshgrid(np.arange(-half, half + 1, 2), np.arange(-half, half + 1, 2)),
                    -1).reshape(-1, 2)
    unit = np.stack(np.meshgrid(np.arange(-1, 2), np.arange(-1, 2)), -1).reshape(-1, 2)
    kernel = np.ones((2 * ring + 1,) * 2, np.uint8)
    # per pixel: std of the tile x tile square whose top-left corner it is (box filters)
    m1 = cv2.blur(img, (tile, tile), anchor=(0, 0), borderType=cv2.BORDER_REFLECT)
    m2 = cv2.blur(img * img, (tile, tile), anchor=(0, 0), borderType=cv2.BORDER_REFLECT)
    local_std = np.sqrt(np.maximum(m2 - m1 * m1, 0.0))
    source = np.full((h, w), -1.0, np.float64)  # which offset each pixel was copied from (-1: none)
    for g in squares:
        gy, gx = ys[g], xs[g]
        y0, y1 = max(gy.min() - ring, 0), min(gy.max() + ring + 1, h)
        x0, x1 = max(gx.min() - ring, 0), min(gx.max() + ring + 1, w)
        sq = np.zeros((y1 - y0, x1 - x0), np.uint8)
        sq[gy - y0, gx - x0] = 1
        by, bx = np.nonzero((cv2.dilate(sq, kernel) > 0) & known[y0:y1, x0:x1])
        if len(by) < 8:
            continue
        by, bx = by + y0, bx + x0
        band = work[by, bx]
        mean, std = band.mean(0), band.std(0)
        sq_y, sq_x = gy.min() // tile * tile, gx.min() // tile * tile  # the square's corner

        def costs(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            """(cost, offset, dc) of every candidate whose copy fits the photo and source_ok."""
            sy, sx = gy[None] + offsets[:, 1:], gx[None] + offsets[:, :1]
            ry, rx = by[None] + offsets[:, 1:], bx[None] + offsets[:, :1]
            fits = ((sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)).all(1) & \
                ((ry >= 0) & (ry < h) & (rx >= 0) & (rx < w)).all(1)
            fits[fits] = source_ok[sy[fits], sx[fits]].mean(1) >= 0.85
            o = offsets[fits]
            ring_src = img[ry[fits], rx[fits]]
            dc = mean[None] - ring_src.mean(1)
            # the source square's texture (std per channel over the tile at that offset)
            qy, qx = np.clip(sq_y + o[:, 1], 0, h - 1), np.clip(sq_x + o[:, 0], 0, w - 1)
            cost = ((band[None] - ring_src - dc[:, None]) ** 2).mean((1, 2)) \
                + ((local_std[qy, qx] - std[None]) ** 2).mean(1) + 0.5 * (dc ** 2).mean(1)
            return cost, o, dc

        cost, offs, dc = costs(coarse)
        if len(cost) == 0:
            continue
        # a pattern's phase: refine around the few best coarse offsets, then to the pixel
        for grid, keep in ((fine, 3), (unit, 1)):
            top = np.argsort(cost, kind="stable")[:keep]
            c2, o2, d2 = costs(np.unique((offs[top][:, None] + grid[None]).reshape(-1, 2), axis=0))
            cost, offs, dc = np.r_[cost[top], c2], np.r_[offs[top], o2], np.r_[dc[top], d2]
        j = int(np.argmin(cost))
        best = float(cost[j]), offs[j], dc[j]
        cost, (dx, dy), dc = best
        if cost > 2.0 * float(band.var(0).mean()) + 25.0:
            continue  # the fallback stays; the next squares match against known pixels only
        ok = source_ok[gy + dy, gx + dx]
        val = np.clip(img[gy + dy, gx + dx] + dc, 0.0, 255.0)
        out[gy[ok], gx[ok]] = work[gy[ok], gx[ok]] = val[ok]
        source[gy[ok], gx[ok]] = (dy + h) * 2 * w + dx + w
        known[gy, gx] = True
    # where copies from two offsets (or a copy and the fallback) meet: a 1-pixel soft seam
    box = np.ones((3, 3), np.uint8)
    seam = hole & (cv2.dilate(np.where(hole, source, -np.inf), box)
                   != cv2.erode(np.where(hole, source, np.inf), box))
    out[seam] = cv2.GaussianBlur(work, (0, 0), 1.0)[seam]
    return out


def behind_body(arms: np.ndarray, person: np.ndarray, ref: np.ndarray, ref_ok: np.ndarray,
                margin: float | None = None) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how surely the body (not the background) lies behind ``arms``.

    An arm is a strip; what it hides is decided across the strip, from what borders its two
    long sides on the photo. Each arm pixel walks both ways perpendicular to its nearest bone
    (upper arm, forearm, wrist to hand) to the first pixel outside ``arms``: visible body
    (``person`` > 0.5) or background. Body on both sides (a hand held in front of the chest): body
    behind. Background on both sides (an arm held out): background. Body on one side and background
    on the other, for a hanging arm (an arm hanging beside the hip; the bone within
    :data:`HANG_DEGREES` of straight down): the body's visible edge stays where it is -
    the body continues ``margin`` px under the arm (default 0.6 arm radii + 1: the hole's grown
    rim and the arm's soft edge), the rest of the strip is background. This is the silhouette
    completion of amodal segmentation with the smallest hidden body consistent with the visible
    contour, instead of the medial axis of the strip, which widened the shorts by half an arm.
    The result is never more body than the nearest visible label (body or background) says: a
    hand, a blob with no clear strip direction, hanging beside the thigh hides the wall on its
    outer half. A raised forearm or a hand held at the body's edge (body on one side) keeps the
    nearest label: on real seated speakers the clothes continue under it (the interview clip's
    hands on the jacket's edge were filled with the wall and the chair). Pixels whose walk
    leaves the photo or finds nothing within the arm's reach, and
    all pixels when the skeleton has no visible arm, take the nearest visible label alone. The
    torso core is always body. The decision is feathered over a couple of pixels.
    """
    import cv2

    body = (person > 0.5) & ~arms
    wall = (person <= 0.5) & ~arms
    to_body = cv2.distanceTransform((~body).astype(np.uint8), cv2.DIST_L2, 3)
    to_wall = cv2.distanceTransform((~wall).astype(np.uint8), cv2.DIST_L2, 3)
    t = np.clip(0.5 + (to_wall - to_body) / 4.0, 0.0, 1.0)  # nearest visible label
    bones = _arm_bones(ref, ref_ok)
    ys, xs = np.nonzero(arms)
    if bones and len(ys):
        r = arm_radius(ref)
        m = 0.6 * r + 1.0 if margin is None else float(margin)
        pts = np.stack([xs, ys], 1).astype(np.float32)
        reach = int(np.ceil(8 * r)) + 4
        step = max((1 << 21) // reach, 1)  # pixels per batch: a few MB of walk indices
        for i in range(0, len(pts), step):
            sl = slice(i, i + step)
            near = t[ys[sl], xs[sl]]
            t[ys[sl], xs[sl]] = np.minimum(_across_strip(arms, body, pts[sl], bones, m, reach,
                                                         near), near)
        t = cv2.GaussianBlur(t, (0, 0), 0.8)  # the walks' pixel steps: no stair-stepped edge
    t[_body_zone(ref, ref_ok, arms.shape, 0.9)] = 1.0
    return t.astype(np.float32)


def _arm_bones(ref: np.ndarray, ref_ok: np.ndarray
               ) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """(start, end, hangs) of the visible bones of both arms: upper arm, forearm, wrist to hand
    centre. ``hangs``: the bone points down, within :data:`HANG_DEGREES` of the vertical (the
    hand: when its forearm hangs) - an arm beside the body, where the across-strip decision of
    :func:`behind_body` holds."""
    bones = []
    for side in ("r", "l"):
        s_i, e_i, w_i = SIDES[side][:3]
        if ref_ok[s_i] and ref_ok[e_i]:
            bones.append((ref[s_i], ref[e_i], _hangs(ref[s_i], ref[e_i])))
        if ref_ok[e_i] and ref_ok[w_i]:
            fore = _hangs(ref[e_i], ref[w_i])
            bones.append((ref[e_i], ref[w_i], fore))
            c, _ = hand_region(ref, ref_ok, side)
            if np.linalg.norm(c - ref[w_i]) > 1.0:
                bones.append((ref[w_i], c, fore))
    return [(np.asarray(a, np.float32), np.asarray(b, np.float32), bool(h)) for a, b, h in bones]


HANG_DEGREES = 40.0
"""How far from straight down a bone may point and still count as hanging (:func:`_arm_bones`)."""


def _hangs(a: np.ndarray, b: np.ndarray) -> bool:
    dx, dy = float(b[0] - a[0]), float(b[1] - a[1])
    return dy > 0 and abs(dx) <= np.tan(np.radians(HANG_DEGREES)) * dy


def _across_strip(arms: np.ndarray, body: np.ndarray, pts: np.ndarray,
                  bones: list[tuple[np.ndarray, np.ndarray]], margin: float, reach: int,
                  fallback: np.ndarray) -> np.ndarray:
    """(N,) float32 body-behind weights of the arm pixels ``pts`` (N, 2) x, y (see
    :func:`behind_body`): walk perpendicular to the nearest bone, both ways, up to ``reach`` px."""
    h, w = arms.shape
    dist = np.stack([_segment_distance(pts[:, 0], pts[:, 1], a, b) for a, b, _ in bones], 1)
    near = np.argmin(dist, 1)
    hangs = np.array([hg for _, _, hg in bones])[near]
    d = np.stack([b - a for a, b, _ in bones])[near]
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
    normal = np.stack([-d[:, 1], d[:, 0]], 1)
    steps = np.arange(1, reach + 1, dtype=np.float32)
    # per side: distance to the first pixel outside the arms, and whether it is body; -1: none
    ends = []
    for sign in (1.0, -1.0):
        q = np.rint(pts[:, None, :] + sign * steps[None, :, None] * normal[:, None, :]).astype(int)
        inside = (q[..., 0] >= 0) & (q[..., 0] < w) & (q[..., 1] >= 0) & (q[..., 1] < h)
        qx, qy = np.clip(q[..., 0], 0, w - 1), np.clip(q[..., 1], 0, h - 1)
        leave = ~arms[qy, qx] | ~inside  # the walk leaves the strip (or the photo)
        k = np.argmax(leave, 1)
        found = leave[np.arange(len(k)), k]
        ok = found & inside[np.arange(len(k)), k]
        is_body = body[qy[np.arange(len(k)), k], qx[np.arange(len(k)), k]]
        ends.append((np.where(ok, k + 1, -1), is_body))
    (k1, b1), (k2, b2) = ends
    known = (k1 > 0) & (k2 > 0)
    out = np.asarray(fallback, np.float32).copy()
    both = known & b1 & b2
    none = known & ~b1 & ~b2
    out[both], out[none] = 1.0, 0.0
    # body on one side, background on the other: the visible body edge continues along a
    # hanging arm; a raised forearm or hand lying on the body's edge (a seated speaker's hand on
    # the jacket's hem) more likely hides body, so there the nearest label stands
    one = known & (b1 ^ b2) & hangs
    kb = np.where(b1, k1, k2).astype(np.float32)
    out[one] = np.clip((margin + 1.0 - kb[one]) / 2.0, 0.0, 1.0)
    return out


def head_zone(ref: np.ndarray, ref_ok: np.ndarray, size_hw: tuple[int, int],
              grow: float = 0.1) -> np.ndarray:
    """(H, W) bool: the head and neck - the hull of the reliable face and head keypoints and of
    the neck (30 % of the way from the chin to between the shoulders), grown by ``grow`` x the face's
    height. The texture fill must
    not copy from here (a patch of cheek pasted where a hand was reads as a second hand)."""
    import cv2

    m = np.zeros(size_hw, np.uint8)
    head = np.r_[np.arange(K.NOSE, K.RIGHT_EAR + 1), K.indices(K.FACE)]
    pts = ref[head][ref_ok[head]]
    if len(pts) < 3:
        return m.astype(bool)
    extent = float(np.ptp(pts[:, 1])) or float(np.ptp(pts[:, 0]))
    sh = [K.LEFT_SHOULDER, K.RIGHT_SHOULDER]
    if ref_ok[sh].all():  # the neck: 30 % of the way from the chin to between the shoulders
        chin = pts[np.argmax(pts[:, 1])]
        pts = np.vstack([pts, chin + 0.3 * (ref[sh].mean(0) - chin)])
    cv2.fillConvexPoly(m, np.round(cv2.convexHull(pts.astype(np.float32))[:, 0]).astype(np.int32), 1)
    r = max(int(round(grow * extent)), 1)
    return cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0


def _body_zone(ref: np.ndarray, ref_ok: np.ndarray, size_hw: tuple[int, int],
               grow: float = 0.9) -> np.ndarray:
    """(H, W) bool: the torso quad (scaled by ``grow`` about its centre) - what an arm surely
    hides."""
    import cv2

    m = np.zeros(size_hw, np.uint8)
    quad = [K.LEFT_SHOULDER, K.RIGHT_SHOULDER, K.RIGHT_HIP, K.LEFT_HIP]
    if ref_ok[quad].all():
        c = ref[quad].mean(0)
        cv2.fillConvexPoly(m, np.round(c + grow * (ref[quad] - c)).astype(np.int32), 1)
    return m.astype(bool)


def _usable(frame: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(133, 2) float64 points and (133,) bool: confident, finite, not absurdly far."""
    xy = np.asarray(frame, np.float64)[:, :2]
    ok = np.asarray(frame)[:, 2] >= threshold
    return xy, ok & np.isfinite(xy).all(1) & (np.abs(xy) < 1e6).all(1)


def zone_unit(frame: np.ndarray, size_hw: tuple[int, int], *, threshold: float = 0.3) -> float:
    """The person's size unit of :func:`skeleton_zone`, px: the shoulder width, else 2.5 face
    heights, else a tenth of the canvas' long side; kept within [0.02, 2] long sides."""
    xy, ok = _usable(frame, threshold)
    side = max(size_hw)
    ls, rs = K.LEFT_SHOULDER, K.RIGHT_SHOULDER
    face = np.r_[np.arange(0, 5), np.arange(K.FACE.start, K.FACE.stop)]
    if ok[ls] and ok[rs]:
        u = float(np.linalg.norm(xy[ls] - xy[rs]))
    elif ok[face].sum() >= 10:
        u = 2.5 * float(np.ptp(xy[face][ok[face], 1]))
    else:
        return 0.1 * side
    return min(max(u, 0.02 * side), 2.0 * side)


def skeleton_zone(frame: np.ndarray, size_hw: tuple[int, int], *, threshold: float = 0.3,
                  pad: float = 0.25) -> np.ndarray:
    """(H, W) bool: where a person with this skeleton (133, 3) can be, grown by ``pad`` shoulder
    widths: limb capsules (0.2 shoulder widths thick), the torso (down to the bottom edge when the
    hips are not seen: a person cut at the waist), the head (a disc over the head and face points,
    at least 0.4 shoulder widths, hair included) and the hands (their points' hull). With no
    shoulder pair the unit is 2.5 face heights, else a tenth of the canvas' long side; nothing
    seen: all False."""
    import cv2

    H, W = size_hw
    xy, ok = _usable(frame, threshold)
    m = np.zeros((H, W), np.uint8)
    if not ok.any():
        return m.astype(bool)
    ls, rs = K.LEFT_SHOULDER, K.RIGHT_SHOULDER
    face = np.r_[np.arange(0, 5), np.arange(K.FACE.start, K.FACE.stop)]
    u = zone_unit(frame, size_hw, threshold=threshold)
    g = pad * u

    def pt(p: np.ndarray) -> tuple[int, int]:
        return int(round(p[0])), int(round(p[1]))

    for i, j in K.BODY_EDGES[:12] + K.FEET_EDGES:  # limbs and feet, not the head's
        if ok[i] and ok[j]:
            cv2.line(m, pt(xy[i]), pt(xy[j]), 1, max(int(round(2 * (0.2 * u + g))), 1))
    for i in range(K.LEFT_SHOULDER, K.FEET.stop):
        if ok[i]:
            cv2.circle(m, pt(xy[i]), max(int(round(0.2 * u + g)), 1), 1, -1)
    torso = [i for i in (ls, rs, K.RIGHT_HIP, K.LEFT_HIP) if ok[i]]
    if ok[ls] and ok[rs] and not (ok[K.LEFT_HIP] or ok[K.RIGHT_HIP]):  # cut at the waist
        x0, x1 = sorted((xy[ls, 0], xy[rs, 0]))
        top = min(xy[ls, 1], xy[rs, 1])
        cv2.rectangle(m, pt((x0 - g, top)), pt((x1 + g, H)), 1, -1)
    elif len(torso) >= 3:
        cv2.fillConvexPoly(m, np.round(xy[torso]).astype(np.int32), 1)
    if ok[face].any():
        c = xy[face][ok[face]].mean(0)
        rad = float(np.linalg.norm(xy[face][ok[face]] - c, axis=1).max())
        cv2.circle(m, pt(c), max(int(round(max(1.3 * rad, 0.4 * u) + g)), 1), 1, -1)
    for hand in (K.LEFT_HAND, K.RIGHT_HAND):
        idx = np.arange(hand.start, hand.stop)[ok[hand]]
        for p in xy[idx]:
            cv2.circle(m, pt(p), max(int(round(0.05 * u + g)), 1), 1, -1)
        if len(idx) >= 3:
            cv2.fillConvexPoly(m, cv2.convexHull(np.round(xy[idx]).astype(np.int32)), 1)
    return m.astype(bool)
