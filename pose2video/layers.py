"""The warp rig of one reference photo: a base layer and one layer per arm.

Built once per photo from its skeleton:

- **base layer**: the photo with the arms inpainted away, meshed over the torso, legs, face (all 68
  points, so lips, jaw and eyelids deform), a ring around the head, the image border and background
  points away from the person (fixed);
- **arm layers**: two per arm, the original pixels of the upper arm and of the forearm + hand,
  each with a soft alpha mask (the two overlap and cross-fade at the elbow), meshed with helper
  anchors along the bones and circles at the joints, drawn over the base, forearm last.

Every anchor has blend weights over the parts of :mod:`pose2video.rig` (linear blend skinning) and,
for anchors that *are* keypoints, the keypoint index whose target position pins it. The base is
inpainted under the arm masks (and a small margin); where an arm's alpha is 1 the composite of
unmoved layers is exactly the photo, at the feathered edges a blend of photo and fill.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from csg import keypoints as K

from . import mesh
from .masks import hand_region
from .rig import PARTS, P, SIDES

log = logging.getLogger(__name__)


@dataclass
class Layer:
    """One mesh layer. V anchors, M triangles."""

    name: str
    src: np.ndarray  # (V, 2) float64 anchor positions on the photo
    weights: np.ndarray  # (V, len(PARTS)) blend weights, rows sum to 1
    key: np.ndarray  # (V,) int keypoint pinning the anchor, -1 for none
    tris: np.ndarray  # (M, 3) int32
    order: np.ndarray  # (M,) draw order (z-order), first to last
    image: np.ndarray  # (H, W, 3) uint8 source pixels, or (H, W, 4) with alpha for overlays
    hole: np.ndarray | None = None  # (H, W) uint8 an overlay's hole (where the photo shows it)
    samples: tuple[np.ndarray, np.ndarray] | None = None  # overlay content points: vertex ids
    # (N, 3) and barycentric weights (N, 3), every SAMPLE_STEP px: where its content goes
    rest_box: tuple[int, int, int, int] | None = None  # (y0, y1, x0, x1) of an overlay's content


class _Anchors:
    """Accumulates anchors: positions, weights and pinning keypoints."""

    def __init__(self) -> None:
        self.pts: list[np.ndarray] = []
        self.w: list[np.ndarray] = []
        self.key: list[int] = []

    def add(self, pts: np.ndarray, parts: dict[str, float] | np.ndarray,
            key: int | np.ndarray = -1) -> None:
        """``parts``: one {part: weight} for all points, or a (N, len(PARTS)) weight array."""
        pts = np.atleast_2d(np.asarray(pts, np.float64))
        if isinstance(parts, dict):
            w = np.zeros(len(PARTS))
            for name, v in parts.items():
                w[P[name]] = v
            parts = np.repeat(w[None], len(pts), 0)
        self.pts.append(pts)
        self.w.append(np.asarray(parts, np.float64))
        self.key.extend(np.broadcast_to(np.asarray(key), (len(pts),)).tolist())

    def arrays(self, min_dist: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pts, w, key = np.concatenate(self.pts), np.concatenate(self.w), np.asarray(self.key)
        keep = mesh.dedupe(pts, min_dist)
        return pts[keep], w[keep], key[keep]


def circle(center: np.ndarray, radius: float, n: int, phase: float = 0.0) -> np.ndarray:
    """(n, 2) points on a circle."""
    t = phase + np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.asarray(center) + radius * np.stack([np.cos(t), np.sin(t)], -1)


def _side_points(p0: np.ndarray, p1: np.ndarray, fracs: tuple[float, ...], off: float) -> np.ndarray:
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-6)
    return np.concatenate([[p0 + f * d + sgn * off * n for f in fracs] for sgn in (-1, 1)])


def arm_ok(ref_ok: np.ndarray, side: str) -> bool:
    s_i, e_i, w_i = SIDES[side][:3]
    return bool(ref_ok[[s_i, e_i, w_i]].all())


def upper_arm_anchors(ref: np.ndarray, side: str, reach: float) -> _Anchors:
    """Anchors of an upper-arm layer: the shoulder (blended with the torso), helpers along the
    bone and a circle round the elbow, ``reach`` px from the bone. It moves with the upper arm
    alone past the shoulder, so it never folds at the elbow."""
    s_i, e_i = SIDES[side][:2]
    up = f"{side}_upper"
    a = _Anchors()
    a.add(ref[s_i], {up: 0.5, "torso": 0.5}, key=s_i)
    a.add(ref[e_i], {up: 1.0}, key=e_i)
    a.add(circle(ref[s_i], reach, 10), {up: 0.5, "torso": 0.5})
    a.add(_side_points(ref[s_i], ref[e_i], (1 / 3, 2 / 3), reach), {up: 1.0})
    a.add(circle(ref[e_i], reach, 10), {up: 1.0})
    return a


def forearm_anchors(ref: np.ndarray, ref_ok: np.ndarray, side: str, reach: float,
                    with_hand: bool = True) -> _Anchors:
    """Anchors of a forearm layer: a circle round the elbow, helpers along the forearm and the
    wrist circle; ``with_hand``: also the hand ring, the wrist circle blended towards the hand by
    direction (a hand the photo hides, carried by the forearm). Without it the hand is a layer of
    its own (:func:`hand_anchors`) and the forearm ends at the wrist."""
    _, e_i, w_i = SIDES[side][:3]
    fore, hand = f"{side}_fore", f"{side}_hand"
    a = _Anchors()
    a.add(ref[e_i], {fore: 1.0}, key=e_i)
    a.add(circle(ref[e_i], reach, 10), {fore: 1.0})
    a.add(_side_points(ref[e_i], ref[w_i], (1 / 3, 2 / 3), reach), {fore: 1.0})
    if with_hand:
        a.add(ref[w_i], {fore: 0.5, hand: 0.5}, key=w_i)
        c, rad = hand_region(ref, ref_ok, side)
        a.add(*_joint_circle(ref[w_i], ref[e_i], c, reach, fore, hand))
        a.add(circle(c, rad + reach, 12), {hand: 1.0})
    else:
        a.add(ref[w_i], {fore: 1.0}, key=w_i)
        a.add(circle(ref[w_i], reach, 10), {fore: 1.0})
    return a


def hand_anchors(ref: np.ndarray, ref_ok: np.ndarray, side: str, reach: float) -> _Anchors:
    """Anchors of a hand layer: the wrist circle and a ring round the hand, all moved by the hand's
    similarity alone - the hand is carried rigidly, so wrist and fingers land where the palm fit
    puts them, never sheared between forearm and hand."""
    _, _, w_i = SIDES[side][:3]
    hand = f"{side}_hand"
    a = _Anchors()
    a.add(ref[w_i], {hand: 1.0})
    a.add(circle(ref[w_i], reach, 10), {hand: 1.0})
    c, rad = hand_region(ref, ref_ok, side)
    a.add(circle(c, rad + reach, 14), {hand: 1.0})
    return a


def _joint_circle(joint: np.ndarray, before: np.ndarray, after: np.ndarray, reach: float,
                  part_in: str, part_out: str, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Points around a joint, weighted by direction: towards ``after`` they follow ``part_out``,
    towards ``before`` ``part_in``, sideways half each - so a bent elbow keeps its outer round."""
    pts = circle(joint, reach, n)
    d = (pts - joint) / reach

    def unit(v: np.ndarray) -> np.ndarray:
        return v / max(np.linalg.norm(v), 1e-6)
    t = np.clip(0.5 + 0.5 * (d @ unit(after - joint) - d @ unit(before - joint)) / 2, 0, 1)
    w = np.zeros((n, len(PARTS)))
    w[:, P[part_out]], w[:, P[part_in]] = t, 1 - t
    return pts, w


def base_anchors(ref: np.ndarray, ref_ok: np.ndarray, size_hw: tuple[int, int],
                 person_zone: np.ndarray) -> _Anchors:
    """Torso, legs, face, head ring, border and background anchors of the base layer."""
    h, w = size_hw
    a = _Anchors()
    inside = ref_ok & (ref[:, 0] > -0.1 * w) & (ref[:, 0] < 1.1 * w) & (ref[:, 1] > -0.1 * h) \
        & (ref[:, 1] < 1.1 * h)
    sh, hips = [K.LEFT_SHOULDER, K.RIGHT_SHOULDER], [K.LEFT_HIP, K.RIGHT_HIP]
    for j in sh + hips:
        if inside[j]:
            a.add(ref[j], {"torso": 1.0}, key=j)
    if inside[sh].all():
        sw = np.linalg.norm(ref[sh[0]] - ref[sh[1]])
        if inside[hips].all():  # a grid inside the torso quad, bilinear in (u, v)
            u, v = np.meshgrid([0.25, 0.5, 0.75], [0.25, 0.5, 0.75])
            top = ref[sh[1]] + u.ravel()[:, None] * (ref[sh[0]] - ref[sh[1]])
            bot = ref[hips[1]] + u.ravel()[:, None] * (ref[hips[0]] - ref[hips[1]])
            a.add(top + v.ravel()[:, None] * (bot - top), {"torso": 1.0})
        neck = ref[sh].mean(0)
        a.add(neck, {"torso": 1.0})
        down = np.array([0.0, 0.6 * sw])
        a.add(np.stack([neck + down, ref[sh[0]] + down, ref[sh[1]] + down]), {"torso": 1.0})
    for side, (_, _, _, _, h_i, k_i, an_i) in SIDES.items():
        for i, j, part in ((h_i, k_i, f"{side}_thigh"), (k_i, an_i, f"{side}_shin")):
            if inside[i] and inside[j]:
                a.add(ref[j], {part: 1.0}, key=j)
                off = 0.25 * np.linalg.norm(ref[j] - ref[i])
                a.add(_side_points(ref[i], ref[j], (0.5,), off), {part: 1.0})
    _head_anchors(a, ref, ref_ok)
    step = max(h, w) / 12.0
    ys, xs = np.arange(0, h + 1e-6, step), np.arange(0, w + 1e-6, step)
    ys, xs = np.append(ys[ys < h - step / 2], h - 1), np.append(xs[xs < w - step / 2], w - 1)
    border = np.concatenate([np.stack([xs, np.zeros_like(xs)], 1),
                             np.stack([xs, np.full_like(xs, h - 1)], 1),
                             np.stack([np.zeros_like(ys), ys], 1),
                             np.stack([np.full_like(ys, w - 1), ys], 1)])
    a.add(border, {"fixed": 1.0})
    gx, gy = np.meshgrid(xs[1:-1], ys[1:-1])
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    free = ~person_zone[grid[:, 1].astype(int), grid[:, 0].astype(int)]
    a.add(grid[free], {"fixed": 1.0})
    return a


def _head_anchors(a: _Anchors, ref: np.ndarray, ref_ok: np.ndarray) -> None:
    face = np.arange(K.FACE.start, K.FACE.stop)
    if ref_ok[face].sum() >= 40:
        pts = ref[face][ref_ok[face]]
        a.add(pts, {"head": 1.0}, key=face[ref_ok[face]])
    else:
        head = np.arange(K.NOSE, K.RIGHT_EAR + 1)
        if ref_ok[head].sum() < 2:
            return
        pts = ref[head][ref_ok[head]]
        a.add(pts, {"head": 1.0}, key=head[ref_ok[head]])
    c = pts.mean(0)
    half = np.maximum(pts.max(0) - pts.min(0), 4.0) / 2
    t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    ring = c + np.stack([np.cos(t), np.sin(t)], -1) * half * 1.45
    a.add(ring, {"head": 1.0})
    ring2 = c + np.stack([np.cos(t), np.sin(t)], -1) * half * 2.1
    lower = ring2[:, 1] > c[1]
    a.add(ring2[~lower], {"head": 1.0})
    sh = [K.LEFT_SHOULDER, K.RIGHT_SHOULDER]
    # the neck bends between head and torso; with no torso seen (a face crop) the head leads
    a.add(ring2[lower], {"head": 0.5, "torso": 0.5} if ref_ok[sh].all() else {"head": 1.0})


def person_zone(ref: np.ndarray, ref_ok: np.ndarray, size_hw: tuple[int, int],
                person: np.ndarray | None) -> np.ndarray:
    """(H, W) bool: the person and a margin around it; background anchors stay outside."""
    import cv2

    z = np.zeros(size_hw, np.uint8)
    ts = float(K.torso_size(ref)) if ref_ok[[K.LEFT_SHOULDER, K.RIGHT_SHOULDER]].all() else \
        0.1 * max(size_hw)
    thick = max(int(0.5 * ts), 3)
    for i, j in K.BODY_EDGES:
        if ref_ok[i] and ref_ok[j]:
            cv2.line(z, tuple(np.round(ref[i]).astype(int)), tuple(np.round(ref[j]).astype(int)),
                     1, thick)
    for j in np.flatnonzero(ref_ok):
        cv2.circle(z, tuple(np.round(ref[j]).astype(int)), thick // 2, 1, -1)
    if person is not None:
        z |= only_this_person(person > 0.3, z.astype(bool)).astype(np.uint8)
    k = max(int(0.25 * ts), 3)
    return cv2.dilate(z, np.ones((k, k), np.uint8)).astype(bool)


def only_this_person(mask: np.ndarray, skeleton: np.ndarray) -> np.ndarray:
    """The connected parts of a segmentation ``mask`` (H, W) bool that touch the skeleton's zone.

    A second person in the photo (or a poster of one) is not the skeleton's: it stays part of the
    still background rather than being stretched along with the speaker.
    """
    import cv2

    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    keep = np.unique(labels[skeleton & mask])
    return np.isin(labels, keep[keep > 0])


def other_people(mask: np.ndarray, skeleton: np.ndarray, min_share: float = 0.15) -> int:
    """How many segmented blobs at least ``min_share`` of the skeleton's size do not touch it."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    mine = set(np.unique(labels[skeleton & mask]).tolist()) - {0}
    size = sum(stats[i, cv2.CC_STAT_AREA] for i in mine) or 1
    return sum(1 for i in range(1, n) if i not in mine
               and stats[i, cv2.CC_STAT_AREA] >= min_share * size)


def person_alpha(person: np.ndarray, ref: np.ndarray, ref_ok: np.ndarray) -> np.ndarray:
    """(H, W) uint8 alpha of the skeleton's own person: the segmentation's probability on the
    connected parts of it that touch the skeleton (another person stays out), grown by 2 px."""
    import cv2

    z = np.zeros(person.shape, np.uint8)
    for i, j in K.BODY_EDGES:
        if ref_ok[i] and ref_ok[j]:
            cv2.line(z, tuple(np.round(ref[i]).astype(int)), tuple(np.round(ref[j]).astype(int)),
                     1, 3)
    mine = only_this_person(person > 0.3, z.astype(bool))
    near = cv2.dilate(mine.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return np.clip(np.round(person * near * 255), 0, 255).astype(np.uint8)


def background_plate(image: np.ndarray, alpha: np.ndarray, long_side: int = 256,
                     also: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8: the photo with the person (``alpha`` > 0, grown by 3 px, and the ``also``
    (H, W) bool pixels) inpainted from the background around it (Telea at ``long_side`` px,
    upsampled), the photo elsewhere: what a moving head or torso, or a moving arm beside the
    body, uncovers."""
    import cv2

    h, w = alpha.shape
    mask = cv2.dilate((alpha > 0).astype(np.uint8), np.ones((7, 7), np.uint8))
    if also is not None:
        mask |= also.astype(np.uint8)
    if not mask.any():
        return image.copy()
    f = min(1.0, long_side / max(h, w))
    size = (max(int(w * f), 1), max(int(h * f), 1))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ms = cv2.dilate(cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST), np.ones((3, 3), np.uint8))
    filled = cv2.inpaint(small, ms, 5, cv2.INPAINT_TELEA)
    up = cv2.resize(cv2.GaussianBlur(filled, (0, 0), 1.0), (w, h), interpolation=cv2.INTER_LINEAR)
    out = image.copy()
    out[mask > 0] = up[mask > 0]
    return out
