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
