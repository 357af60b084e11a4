"""Per-part transforms of a posed skeleton relative to the reference (pure functions).

Parts are rigid-ish pieces of the body. For a target pose, each part gets a 2x3 affine that maps
reference pixels to target pixels:

- ``torso``: affine fit of shoulders (+ hips when seen) - the chest leans and turns;
- ``head``: similarity fit of the stable face points (skull moves rigidly with scale);
- ``*_upper`` / ``*_fore`` / thigh / shin: :func:`pose2video.align.bone_transform` of the bone, so
  arms bend at the elbows and a foreshortened bone gets shorter, not thinner;
- ``*_hand``: similarity fit of the palm (wrist and finger roots), the wrist weighted most, its
  turn against the forearm's limited (:data:`HAND_TWIST`).

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
HAND_TWIST = 45.0  # degrees a hand may turn against its forearm (WarpConfig.hand_twist)


def fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares affine (2, 3) with ``dst ~ A [src; 1]``; src, dst: (N >= 3, 2)."""
    a = np.concatenate([src, np.ones((len(src), 1))], 1)
    sol, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return sol.T


def body_scale(ref: np.ndarray, ref_ok: np.ndarray, tgt: np.ndarray, tgt_ok: np.ndarray):
    """Target over reference torso size (1 when the shoulders are not seen in both).

    tgt: (133, 2) or (T, 133, 2) with tgt_ok (133,) or (T, 133): a float or (T,) array."""
    sh = [K.LEFT_SHOULDER, K.RIGHT_SHOULDER]
    seen = ref_ok[sh].all() & tgt_ok[..., sh].all(-1)
    s = np.where(seen, K.torso_size(tgt) / K.torso_size(ref), 1.0)
    return float(s) if np.ndim(s) == 0 else s


def part_transforms(ref: np.ndarray, ref_ok: np.ndarray, tgt: np.ndarray,
                    tgt_ok: np.ndarray, hand_twist: float | None = HAND_TWIST) -> np.ndarray:
    """(len(PARTS), 2, 3) reference->target affines for one target pose.

    ref, tgt: (133, 2) pixels; ref_ok, tgt_ok: (133,) bool visibility. Frames in a batch:
    :func:`part_transforms_batch`.
    """
    return part_transforms_batch(ref, ref_ok, tgt[None], tgt_ok[None], hand_twist)[0]


def part_transforms_batch(ref: np.ndarray, ref_ok: np.ndarray, tgt: np.ndarray,
                          tgt_ok: np.ndarray, hand_twist: float | None = HAND_TWIST) -> np.ndarray:
    """(T, len(PARTS), 2, 3) reference->target affines for T target poses at once.

    ref: (133, 2), ref_ok: (133,); tgt: (T, 133, 2), tgt_ok: (T, 133). Per frame and part: the
    torso an affine fit of shoulders and hips (a similarity of the shoulders without hips), the
    head a similarity of the stable face points, bones :func:`bone_transform`, hands a clamped palm
    similarity (turning at most ``hand_twist`` degrees against the forearm; None: free); a part
    whose points are missing takes its parent's transform, and a part whose points did not move is
    exactly the identity. All of it vectorised over the frames.
    """
    ref = np.asarray(ref, np.float64)
    tgt = np.asarray(tgt, np.float64)
    n = len(tgt)
    out = np.tile(IDENTITY, (n, len(PARTS), 1, 1))
    ok = ref_ok[None] & tgt_ok
    s = np.broadcast_to(body_scale(ref, ref_ok, tgt, tgt_ok), (n,))
    sh, hips = [K.LEFT_SHOULDER, K.RIGHT_SHOULDER], [K.LEFT_HIP, K.RIGHT_HIP]
    sh_ok = ok[:, sh].all(1)
    full = sh_ok & ok[:, hips].all(1)
    idx = sh + hips
    if full.any():  # least-squares affine of 4 points: one pseudo-inverse for every frame
        a = np.concatenate([ref[idx], np.ones((4, 1))], 1)
        sol = np.einsum("kn,tnc->tkc", np.linalg.pinv(a), tgt[:, idx])  # (T, 3, 2)
        m = np.swapaxes(sol, 1, 2)
        out[full, P["torso"]] = _snap(m, ref[idx], tgt[:, idx])[full]
    part = sh_ok & ~full
    if part.any():
        a, b = fit_similarity(ref[sh], tgt[:, sh])
        out[part, P["torso"]] = _snap(similarity_matrix(a, b), ref[sh], tgt[:, sh])[part]
    out[:, P["head"]] = _head(ref, tgt, ok, out[:, P["torso"]])
    for side, (s_i, e_i, w_i, root, h_i, k_i, a_i) in SIDES.items():
        chain = [(f"{side}_upper", s_i, e_i, "torso"), (f"{side}_fore", e_i, w_i, f"{side}_upper"),
                 (f"{side}_thigh", h_i, k_i, "torso"), (f"{side}_shin", k_i, a_i, f"{side}_thigh")]
        for name, i, j, parent in chain:
            seen = ok[:, i] & ok[:, j]
            out[:, P[name]] = out[:, P[parent]]
            if seen.any():
                m = bone_transform(ref[i], ref[j], tgt[:, i], tgt[:, j], across=s)
                out[seen, P[name]] = _snap(m, ref[[i, j]], tgt[:, [i, j]])[seen]
        out[:, P[f"{side}_hand"]] = _hand(ref, tgt, ok, root, s, out[:, P[f"{side}_fore"]],
                                          (e_i, w_i), hand_twist)
    return out


def _snap(m: np.ndarray, src: np.ndarray, dst: np.ndarray,
          used: np.ndarray | None = None) -> np.ndarray:
    """(T, 2, 3) fits snapped to the exact identity in the frames where their points (src (N, 2),
    dst (T, N, 2); ``used`` (T, N) bool: only those) did not move (keeps identity bit-exact)."""
    same = src[None] == dst
    same = same.all(-1) if used is None else same.all(-1) | ~used
    return np.where(same.all(-1)[:, None, None], IDENTITY, m)


def _head(ref: np.ndarray, tgt: np.ndarray, ok: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    out = fallback.copy()
    todo = np.ones(len(tgt), bool)
    for idx, need in ((FACE_STABLE, 4), (np.arange(K.NOSE, K.RIGHT_EAR + 1), 2)):
        w = ok[:, idx]
        sel = todo & (w.sum(1) >= need)
        if sel.any():
            a, b = fit_similarity(ref[idx], tgt[sel][:, idx], w[sel].astype(float))
            out[sel] = _snap(similarity_matrix(a, b), ref[idx], tgt[sel][:, idx], w[sel])
        todo &= ~sel
    return out


def _hand(ref: np.ndarray, tgt: np.ndarray, ok: np.ndarray, root: int, s: np.ndarray,
          fallback: np.ndarray, elbow_wrist: tuple[int, int] | None = None,
          twist: float | None = None) -> np.ndarray:
    """Palm similarity, wrist-weighted, its scale clamped to HAND_SCALE_RANGE x body scale and,
    with ``twist`` (degrees) and the forearm seen, its rotation to within ``twist`` of the
    forearm's (elbow -> wrist) rotation, turned about the hand root. The photo's hand is moved
    rigidly, so a palm that the skeleton shows turned by 90 degrees in depth (palm up -> fingers
    up) cannot be drawn; turning the photo's hand that far in the image plane detaches it from its
    own forearm (a wrist band drawn twice, fingers pointing up from a hand resting on the lap)."""
    idx = root + PALM
    w = ok[:, idx].astype(float)
    sel = w.sum(1) >= 3
    out = fallback.copy()
    if not sel.any():
        return out
    w, s, zt = w[sel], s[sel], tgt[sel][:, idx]
    w[:, 0] *= 3.0
    a, b = fit_similarity(ref[idx], zt, w)
    lo, hi = HAND_SCALE_RANGE
    mag = np.abs(a)
    clamp = ~((lo * s <= mag) & (mag <= hi * s))
    if clamp.any():
        a = np.where(clamp, a / np.maximum(mag, 1e-12) * np.clip(mag, lo * s, hi * s), a)
        # keep the weighted centroid where the fit put it
        zr = ref[idx, 0] + 1j * ref[idx, 1]
        zz = zt[..., 0] + 1j * zt[..., 1]
        b = np.where(clamp, ((w * zz).sum(1) - a * (w * zr).sum(1)) / w.sum(1), b)
    if twist is not None and elbow_wrist is not None:
        e, wr = elbow_wrist
        fore_ok = (ok[:, e] & ok[:, wr])[sel]
        z_ref = ref[[e, wr], 0] + 1j * ref[[e, wr], 1]
        z_tgt = tgt[sel][:, [e, wr], 0] + 1j * tgt[sel][:, [e, wr], 1]
        fore = np.angle((z_tgt[:, 1] - z_tgt[:, 0]) / (z_ref[1] - z_ref[0] + 1e-12))
        rel = np.angle(a * np.exp(-1j * fore))
        lim = np.radians(twist)
        over = fore_ok & (np.abs(rel) > lim)
        if over.any():  # turned about the hand root: the wrist stays where the fit put it
            a2 = np.abs(a) * np.exp(1j * (fore + np.clip(rel, -lim, lim)))
            z_root = ref[root, 0] + 1j * ref[root, 1]
            b = np.where(over, a * z_root + b - a2 * z_root, b)
            a = np.where(over, a2, a)
    out[sel] = _snap(similarity_matrix(a, b), ref[idx], zt, w > 0)
    return out


def blend_transforms(weights: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """(V, 2, 3) per-anchor affines: weights (V, len(PARTS)) rows summing to 1 over (P, 2, 3)."""
    return np.einsum("vp,pij->vij", weights, transforms)
