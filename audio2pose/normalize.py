"""Pose coordinates relative to the reference skeleton, and back (pure, invertible, numpy).

The scheme follows Democratizing-CSG ("coordinates are made local"), with anchors taken from the
reference skeleton so that generated motion keeps the reference person's proportions and place:

- body and feet (0-22): ``(xy - c_ref) / s_ref``, with ``c_ref`` the reference torso centre and
  ``s_ref`` the reference torso scale;
- face (23-90): ``(xy - nose_t) / f_ref``, relative to the nose of the SAME frame ``t``, scaled by the
  reference face height ``f_ref``;
- each hand (91-111, 112-132): ``(xy - wrist_t) / h_ref``, relative to the body wrist of the same
  frame, scaled by the reference hand scale ``h_ref`` (half the torso scale: reference hands are often
  occluded or missed, the torso rarely is).

The inverse first rebuilds the body, then hangs face and hands on the rebuilt nose and wrists, so
``denormalize(normalize(x)) == x`` up to float rounding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from csg import keypoints as K

RELIABLE = 0.3
"""Score above which a reference keypoint is trusted for choosing anchors."""
HAND_SCALE = 0.5
"""Hand scale as a fraction of the torso scale."""


@dataclass(frozen=True)
class Anchors:
    """Reference-derived constants. centre: (2,) px; torso, face, hand: scales in px."""

    centre: np.ndarray
    torso: float
    face: float
    hand: float


def reference_anchors(ref: np.ndarray) -> Anchors:
    """Anchors of a reference skeleton ``ref`` (133, 3) (pixels + score).

    Torso centre: mean of shoulders and hips when the hips are reliable, else the shoulder midpoint
    (upper-body photos). Torso scale: :func:`csg.keypoints.torso_size` with reliable hips, else the
    shoulder width. Face scale: :func:`csg.keypoints.face_height` when the face is reliable, else
    0.4 x torso. Raises ``ValueError`` when the shoulders are missing (no anchor at all).
    """
    ref = np.asarray(ref, np.float64)
    xy, s = ref[:, :2], ref[:, 2]
    sh = [K.LEFT_SHOULDER, K.RIGHT_SHOULDER]
    hips = [K.LEFT_HIP, K.RIGHT_HIP]
    if (s[sh] <= RELIABLE).any():
        raise ValueError("reference skeleton has no reliable shoulders; cannot anchor coordinates")
    if (s[hips] > RELIABLE).all():
        centre = xy[sh + hips].mean(axis=0)
        torso = float(K.torso_size(xy))
    else:
        centre = xy[sh].mean(axis=0)
        torso = float(max(np.linalg.norm(xy[K.LEFT_SHOULDER] - xy[K.RIGHT_SHOULDER]), 1e-3))
    face_ok = (s[K.FACE] > RELIABLE).mean() > 0.5
    face = float(K.face_height(xy)) if face_ok else 0.4 * torso
    face = face if face > 1e-3 else 0.4 * torso
    return Anchors(centre=centre, torso=torso, face=face, hand=HAND_SCALE * torso)


_HAND_ROOTS = ((K.LEFT_HAND, K.LEFT_WRIST), (K.RIGHT_HAND, K.RIGHT_WRIST))


def normalize(xy: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Pixel coordinates -> reference-relative coordinates.

    xy: (..., 133, 2) pixels on the reference canvas; ref: (133, 3). Returns float32 (..., 133, 2),
    body in torso units around the reference torso centre, face in face heights around the nose of
    the same frame, hands in hand scales around the wrist of the same frame.
    """
    a = reference_anchors(ref)
    xy = np.asarray(xy, np.float64)
    out = np.empty_like(xy)
    out[..., K.BODY, :] = (xy[..., K.BODY, :] - a.centre) / a.torso
    out[..., K.FEET, :] = (xy[..., K.FEET, :] - a.centre) / a.torso
    out[..., K.FACE, :] = (xy[..., K.FACE, :] - xy[..., K.NOSE, None, :]) / a.face
    for hand, wrist in _HAND_ROOTS:
        out[..., hand, :] = (xy[..., hand, :] - xy[..., wrist, None, :]) / a.hand
    return out.astype(np.float32)


def denormalize(z: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize`: (..., 133, 2) reference-relative -> float32 pixels."""
    a = reference_anchors(ref)
    z = np.asarray(z, np.float64)
    out = np.empty_like(z)
    out[..., K.BODY, :] = z[..., K.BODY, :] * a.torso + a.centre
    out[..., K.FEET, :] = z[..., K.FEET, :] * a.torso + a.centre
    out[..., K.FACE, :] = z[..., K.FACE, :] * a.face + out[..., K.NOSE, None, :]
    for hand, wrist in _HAND_ROOTS:
        out[..., hand, :] = z[..., hand, :] * a.hand + out[..., wrist, None, :]
    return out.astype(np.float32)


# --- the reference hands' in-plane direction ------------------------------------------------------
#
# The network reads each reference hand's finger layout. The corpus's reference hands all hang
# from a rest pose (fingers pointing down and out); a real speaker's photo often shows a hand held
# in front of the body with the fingers up, which the network only ever saw mid-gesture, so it
# raised the arms of every such photo (docs/audio2pose.md, "Hand direction"). The functions below
# turn a reference hand whose direction lies outside the range seen in training to the nearest edge
# of that range for the network, and turn the generated hand motion back by the same angle, so the
# output keeps the photo's own hand: out = ref_hand + R(-a) delta (the generated change, turned).

HAND_KNUCKLE = 9
"""Index of the middle finger's knuckle (MCP) within a 21-point hand; with the hand root it gives
the hand's direction."""
_HANDS = (K.LEFT_HAND, K.RIGHT_HAND)


def _hand_seen(scores: np.ndarray, hand: slice, reliable: float) -> bool:
    """Whether a hand's root and middle knuckle (what gives its direction) are reliable."""
    return bool((np.asarray(scores)[[hand.start, hand.start + HAND_KNUCKLE]] > reliable).all())


def hand_directions(rel: np.ndarray) -> np.ndarray:
    """(..., 2) direction in degrees of each hand (left, right) of reference-relative poses.

    rel: (..., 133, 2) as :func:`normalize` returns (hands relative to their own wrist). The
    direction is ``atan2(dy, dx)`` of the middle knuckle from the hand root, in image axes (y down:
    90 = fingers pointing straight down, -90 = straight up)."""
    rel = np.asarray(rel, np.float64)
    out = []
    for h in _HANDS:
        d = rel[..., h, :][..., HAND_KNUCKLE, :] - rel[..., h, :][..., 0, :]
        out.append(np.degrees(np.arctan2(d[..., 1], d[..., 0])))
    return np.stack(out, axis=-1)


def _wrap(deg: np.ndarray) -> np.ndarray:
    """Angles in degrees to (-180, 180]."""
    return -((-np.asarray(deg, np.float64) + 180.0) % 360.0 - 180.0)


def direction_range(directions: np.ndarray, q: float = 10.0) -> np.ndarray:
    """(lo, hi) degrees of the q-th and (100-q)-th percentiles of directions (N,), on the circle.

    Percentiles are taken of the offsets from the circular mean, so a range across +-180 works.
    ``lo`` may exceed ``hi`` after wrapping; :func:`hand_turns` reads the range from lo counter-
    clockwise (increasing angle) to hi."""
    d = np.asarray(directions, np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        raise ValueError("no hand directions to take a range of")
    mean = np.degrees(np.arctan2(np.sin(np.radians(d)).mean(), np.cos(np.radians(d)).mean()))
    off = _wrap(d - mean)
    return _wrap(mean + np.percentile(off, [q, 100.0 - q]))


def hand_turns(rel: np.ndarray, scores: np.ndarray, ranges,
               reliable: float = RELIABLE) -> np.ndarray:
    """(2,) degrees to turn each reference hand by so that its direction falls in ``ranges``.

    rel: (133, 2) reference-relative reference pose; scores: (133,); ranges: 4 numbers
    (left lo, left hi, right lo, right hi) in degrees, each range read from lo counter-clockwise to
    hi. A hand inside its range, or whose root or knuckle is not reliable, gets 0; one outside is
    turned to the nearer edge (shortest way round)."""
    ranges = np.asarray(ranges, np.float64).reshape(2, 2)
    dirs = hand_directions(rel)
    out = np.zeros(2)
    for i, h in enumerate(_HANDS):
        collapsed = not np.linalg.norm(rel[h.start + HAND_KNUCKLE] - rel[h.start]) > 1e-6
        if not _hand_seen(scores, h, reliable) or collapsed or not np.isfinite(dirs[i]):
            continue
        lo, hi = ranges[i]
        width = (hi - lo) % 360.0
        if (dirs[i] - lo) % 360.0 <= width:
            continue
        to_lo, to_hi = _wrap(lo - dirs[i]), _wrap(hi - dirs[i])
        out[i] = to_lo if abs(to_lo) <= abs(to_hi) else to_hi
    return out


def _move_hands(rel: np.ndarray, degrees, before, after) -> np.ndarray:
    """Each hand of ``rel`` (..., 133, 2): minus ``before`` (2, 2), turned by ``degrees`` (2,)
    about the wrist, plus ``after`` (2, 2); body and face unchanged, dtype kept."""
    out = np.array(rel, np.float64, copy=True)
    for h, a, b, c in zip(_HANDS, np.asarray(degrees, np.float64).reshape(2), before, after):
        cos, sin = np.cos(np.radians(a)), np.sin(np.radians(a))
        out[..., h, :] = (out[..., h, :] - b) @ np.array([[cos, -sin], [sin, cos]]).T + c
    return out.astype(np.asarray(rel).dtype)


def turn_hands(rel: np.ndarray, degrees, shift=None) -> np.ndarray:
    """Move each hand of reference-relative poses (..., 133, 2) into its canonical frame: minus
    ``shift`` (2, 2) (the reference hand root's offset from the body wrist; None: 0), then turned
    about the wrist by ``degrees`` (left, right), counter-clockwise in image axes (the direction
    grows by that angle). Body and face are returned unchanged. :func:`unturn_hands` inverts it."""
    shift = np.zeros((2, 2)) if shift is None else np.asarray(shift, np.float64).reshape(2, 2)
    return _move_hands(rel, degrees, shift, np.zeros((2, 2)))


def unturn_hands(rel: np.ndarray, degrees, shift=None) -> np.ndarray:
    """Inverse of :func:`turn_hands`: turned back by ``-degrees``, then plus ``shift``."""
    shift = np.zeros((2, 2)) if shift is None else np.asarray(shift, np.float64).reshape(2, 2)
    return _move_hands(rel, -np.asarray(degrees, np.float64), np.zeros((2, 2)), shift)


def hand_shifts(rel: np.ndarray, scores: np.ndarray, reliable: float = RELIABLE) -> np.ndarray:
    """(2, 2) offset of each reliable reference hand's root from its body wrist (hand units; 0
    for an unreliable hand). rel: (133, 2) reference-relative, scores (133,)."""
    out = np.zeros((2, 2))
    for i, h in enumerate(_HANDS):
        if np.asarray(scores)[h.start] > reliable and np.isfinite(rel[h.start]).all():
            out[i] = rel[h.start]
    return out


def complete_hips(ref: np.ndarray, hips, reliable: float = RELIABLE) -> np.ndarray:
    """A copy of reference ``ref`` (133, 3) with hips placed where the training references have
    them when the photo shows none (an upper-body framing), so that :func:`reference_anchors` takes
    the same torso centre and scale the network was trained with instead of the shoulder-only
    fallback. hips: (shoulder-to-hip height, hip width) in shoulder widths; the hips go that far
    below the shoulder midpoint, perpendicular to the shoulder line, with score 1; a hip the photo
    does show is kept. A reference with both hips, or without reliable shoulders, is returned
    unchanged."""
    out = np.array(ref, np.float32, copy=True)
    sh, hp = [K.LEFT_SHOULDER, K.RIGHT_SHOULDER], [K.LEFT_HIP, K.RIGHT_HIP]
    if (out[sh, 2] <= reliable).any() or (out[hp, 2] > reliable).all():
        return out
    height, width = (float(v) for v in hips)
    across = out[K.LEFT_SHOULDER, :2].astype(np.float64) - out[K.RIGHT_SHOULDER, :2]
    sw = float(np.linalg.norm(across))
    if sw < 1e-6:
        return out
    down = np.array([-across[1], across[0]]) / sw
    down = -down if down[1] < 0 else down  # image y grows downwards
    mid = out[sh, :2].astype(np.float64).mean(0) + down * height * sw
    for j, side in ((K.LEFT_HIP, 0.5), (K.RIGHT_HIP, -0.5)):
        if out[j, 2] <= reliable:
            out[j] = [*(mid + across * width * side), 1.0]
    return out


def reference_frame(refs, q: float = 10.0, reliable: float = RELIABLE) -> dict:
    """What the network saw of its references, for ``SamplingConfig``: ``hand_range`` (see
    :func:`reference_hand_range`; left out when a side has no reliable hand) and ``hips`` (left
    out when no reference shows both) (median shoulder-to-hip height and hip width of the
    references with reliable shoulders and hips, in shoulder widths; see :func:`complete_hips`)."""
    refs = [np.asarray(r, np.float64) for r in refs]
    ratios = []
    for r in refs:
        if (r[[K.LEFT_SHOULDER, K.RIGHT_SHOULDER, K.LEFT_HIP, K.RIGHT_HIP], 2] > reliable).all():
            sw = np.linalg.norm(r[K.LEFT_SHOULDER, :2] - r[K.RIGHT_SHOULDER, :2])
            if sw > 1e-6:
                d = (r[[K.LEFT_HIP, K.RIGHT_HIP], :2].mean(0)
                     - r[[K.LEFT_SHOULDER, K.RIGHT_SHOULDER], :2].mean(0))
                ratios.append([np.linalg.norm(d) / sw,
                               np.linalg.norm(r[K.LEFT_HIP, :2] - r[K.RIGHT_HIP, :2]) / sw])
    out: dict = {}
    if ratios:
        out["hips"] = tuple(round(float(v), 3) for v in np.median(np.array(ratios), axis=0))
    try:
        out["hand_range"] = reference_hand_range(refs, q, reliable)
    except ValueError:
        pass
    if not out:
        raise ValueError("no reference with reliable hands, nor one with reliable hips")
    return out


def reference_hand_range(refs, q: float = 10.0, reliable: float = RELIABLE) -> tuple[float, ...]:
    """(left lo, left hi, right lo, right hi) degrees: :func:`direction_range` of the reliable
    hands of reference skeletons ``refs`` (iterable of (133, 3) pixel + score), for
    ``SamplingConfig.hand_range``. Raises ``ValueError`` when a side has no reliable hand."""
    dirs: list[list[float]] = [[], []]
    for ref in refs:
        ref = np.asarray(ref, np.float64)
        try:
            rel = normalize(ref[:, :2], ref)
        except ValueError:  # no reliable shoulders: no anchors
            continue
        d = hand_directions(rel)
        for i, h in enumerate(_HANDS):
            if _hand_seen(ref[:, 2], h, reliable) and np.isfinite(d[i]):
                dirs[i].append(float(d[i]))
    out: list[float] = []
    for side, d in zip(("left", "right"), dirs):
        if not d:
            raise ValueError(f"no reliable {side} hand in the references")
        out += [round(float(a), 1) for a in direction_range(np.array(d), q)]
    return tuple(out)
