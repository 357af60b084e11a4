"""Per-part transforms of a posed skeleton relative to the reference (pure functions).

Parts are rigid-ish pieces of the body. For a target pose, each part gets a 2x3 affine that maps
reference pixels to target pixels:

- ``torso``: affine fit of shoulders (+ hips when seen) - the chest leans and turns;
- ``head``: similarity fit of the stable face points (skull moves rigidly with scale);
- ``*_upper`` / ``*_fore`` / thigh / shin: :func:`pose2video.align.bone_transform` of the bone, so
  arms bend at the elbows and a foreshortened bone gets shorter, not thinner;
- ``*_hand``: similarity fit of the palm (wrist and finger roots), the wrist weighted most.

Mesh anchors are blends of these (linear blend skinning at the joints). Missing parts fall back to
their parent, so a frame whose pose equals the reference gives identities everywhere.
"""
from __future__ import annotations

import numpy as np

from csg import keypoints as K

from .align import FACE_STABLE, PALM, bone_transform, fit_similarity, similarity_matrix

PARTS = ("fixed", "torso", "head", "l_upper", "l_fore", "l_hand", "r_upper", "r_fore", "r_hand",
         "l_thigh", "l_shin", "r_thigh", "r_shin")
P = {name: i for i, name in enumerate(PARTS)}
SIDES = {"l": (K.LEFT_SHOULDER, K.LEFT_ELBOW, K.LEFT_WRIST, K.LEFT_HAND_ROOT, K.LEFT_HIP,
               K.LEFT_KNEE, K.LEFT_ANKLE),
         "r": (K.RIGHT_SHOULDER, K.RIGHT_ELBOW, K.RIGHT_WRIST, K.RIGHT_HAND_ROOT, K.RIGHT_HIP,
               K.RIGHT_KNEE, K.RIGHT_ANKLE)}
IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
HAND_SCALE_RANGE = (0.75, 1.33)  # hand similarity scale relative to the body scale


def fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares affine (2, 3) with ``dst ~ A [src; 1]``; src, dst: (N >= 3, 2)."""
    a = np.concatenate([src, np.ones((len(src), 1))], 1)
    sol, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return sol.T


def _is_identity(m: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Snap a fit to the exact identity when its points did not move (keeps identity bit-exact)."""
    return IDENTITY.copy() if np.array_equal(src, dst) else m


def body_scale(ref: np.ndarray, ref_ok: np.ndarray, tgt: np.ndarray, tgt_ok: np.ndarray) -> float:
    """Target over reference torso size (1 when the shoulders are not seen in both)."""
    sh = [K.LEFT_SHOULDER, K.RIGHT_SHOULDER]
    if not (ref_ok[sh].all() and tgt_ok[sh].all()):
        return 1.0
    return float(K.torso_size(tgt) / K.torso_size(ref))


def part_transforms(ref: np.ndarray, ref_ok: np.ndarray, tgt: np.ndarray,
                    tgt_ok: np.ndarray) -> np.ndarray:
    """(len(PARTS), 2, 3) reference->target affines for one target pose.

    ref, tgt: (133, 2) pixels; ref_ok, tgt_ok: (133,) bool visibility.
    """
    out = np.tile(IDENTITY, (len(PARTS), 1, 1))
    ok = ref_ok & tgt_ok
    s = body_scale(ref, ref_ok, tgt, tgt_ok)
    sh, hips = [K.LEFT_SHOULDER, K.RIGHT_SHOULDER], [K.LEFT_HIP, K.RIGHT_HIP]
    if ok[sh].all() and ok[hips].all():
        idx = sh + hips
        out[P["torso"]] = _is_identity(fit_affine(ref[idx], tgt[idx]), ref[idx], tgt[idx])
    elif ok[sh].all():
        a, b = fit_similarity(ref[sh], tgt[sh])
        out[P["torso"]] = _is_identity(similarity_matrix(a, b), ref[sh], tgt[sh])
    out[P["head"]] = _head(ref, tgt, ok, out[P["torso"]])
    for side, (s_i, e_i, w_i, root, h_i, k_i, a_i) in SIDES.items():
        chain = [(f"{side}_upper", s_i, e_i, "torso"), (f"{side}_fore", e_i, w_i, f"{side}_upper"),
                 (f"{side}_thigh", h_i, k_i, "torso"), (f"{side}_shin", k_i, a_i, f"{side}_thigh")]
        for name, i, j, parent in chain:
            if ok[i] and ok[j]:
                m = bone_transform(ref[i], ref[j], tgt[i], tgt[j], across=s)
                out[P[name]] = _is_identity(m, ref[[i, j]], tgt[[i, j]])
            else:
                out[P[name]] = out[P[parent]]
        out[P[f"{side}_hand"]] = _hand(ref, tgt, ok, root, w_i, s, out[P[f"{side}_fore"]])
    return out


def _head(ref: np.ndarray, tgt: np.ndarray, ok: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    for idx, need in ((FACE_STABLE, 4), (np.arange(K.NOSE, K.RIGHT_EAR + 1), 2)):
        w = ok[idx]
        if w.sum() >= need:
            a, b = fit_similarity(ref[idx], tgt[idx], w.astype(float))
            return _is_identity(similarity_matrix(a, b), ref[idx][w], tgt[idx][w])
    return fallback


def _hand(ref: np.ndarray, tgt: np.ndarray, ok: np.ndarray, root: int, wrist: int, s: float,
          fallback: np.ndarray) -> np.ndarray:
    """Palm similarity, wrist-weighted, its scale clamped to HAND_SCALE_RANGE x body scale."""
    idx = root + PALM
    w = ok[idx].astype(float)
    if w.sum() < 3:
        return fallback
    w[0] *= 3.0
    a, b = fit_similarity(ref[idx], tgt[idx], w)
    lo, hi = HAND_SCALE_RANGE
    mag = abs(a)
    if not lo * s <= mag <= hi * s:
        a = a / mag * np.clip(mag, lo * s, hi * s)
        # keep the weighted centroid where the fit put it
        zr = ref[idx, 0] + 1j * ref[idx, 1]
        zt = tgt[idx, 0] + 1j * tgt[idx, 1]
        b = ((w * zt).sum() - a * (w * zr).sum()) / w.sum()
    return _is_identity(similarity_matrix(a, b), ref[idx][w > 0], tgt[idx][w > 0])


def blend_transforms(weights: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """(V, 2, 3) per-anchor affines: weights (V, len(PARTS)) rows summing to 1 over (P, 2, 3)."""
    return np.einsum("vp,pij->vij", weights, transforms)
