"""Retargeting: fit a driving skeleton onto the reference person's proportions (pure functions).

A driving sequence from another person or canvas (a DWPose video, a stage-1 output) is mapped onto
the reference photo's skeleton part by part, so that the warp moves the photo's own limbs:

- **body**: a kinematic chain from the neck (shoulder midpoint). The neck follows the driver's
  neck offset from its rest position, scaled by the torso ratio; every bone keeps the driver's
  direction and the reference's length (per-bone scale ``|ref bone| / |driver rest bone|``);
- **head** (body nose/eyes/ears + 68 face points): the driver's head motion (a similarity per frame,
  fitted on stable face points) applied to the *reference* face plus the driver's expression
  residual scaled by the face-size ratio, so the photo keeps its own face shape and gets the
  driver's mouth and eyelid motion;
- **hands**: the driver's hand shape scaled by the hand-size ratio, placed at the retargeted wrist.

This is the "linear scale and offset fit" of CSG (METHODS.md, stage 2) made per part. 2D
similarities are written as complex numbers: ``z -> a * z + b``.

A driving sequence equal to the reference (every frame) maps to itself exactly.
"""
from __future__ import annotations

import numpy as np

from csg import keypoints as K
from csg.pose import PoseSequence

NECK = -1  # virtual joint: the shoulder midpoint
# (parent, child) in chain order; NECK is the root.
BODY_CHAIN: list[tuple[int, int]] = [
    (NECK, K.LEFT_SHOULDER), (NECK, K.RIGHT_SHOULDER),
    (K.LEFT_SHOULDER, K.LEFT_ELBOW), (K.LEFT_ELBOW, K.LEFT_WRIST),
    (K.RIGHT_SHOULDER, K.RIGHT_ELBOW), (K.RIGHT_ELBOW, K.RIGHT_WRIST),
    (K.LEFT_SHOULDER, K.LEFT_HIP), (K.RIGHT_SHOULDER, K.RIGHT_HIP),
    (K.LEFT_HIP, K.LEFT_KNEE), (K.LEFT_KNEE, K.LEFT_ANKLE),
    (K.RIGHT_HIP, K.RIGHT_KNEE), (K.RIGHT_KNEE, K.RIGHT_ANKLE),
    (K.LEFT_ANKLE, K.LEFT_BIG_TOE), (K.LEFT_ANKLE, K.LEFT_SMALL_TOE), (K.LEFT_ANKLE, K.LEFT_HEEL),
    (K.RIGHT_ANKLE, K.RIGHT_BIG_TOE), (K.RIGHT_ANKLE, K.RIGHT_SMALL_TOE),
    (K.RIGHT_ANKLE, K.RIGHT_HEEL),
]
HEAD = np.r_[np.arange(K.NOSE, K.RIGHT_EAR + 1), np.arange(K.FACE.start, K.FACE.stop)]
"""(73,) body head points and the 68 face points: they move as one head."""
_F = K.FACE.start
FACE_STABLE = np.array([_F + i for i in (0, 16, 27, 28, 29, 30, 31, 35, 36, 39, 42, 45)])
"""Face points that move with the skull (jaw ends, nose, eye corners): fit the head motion."""
PALM = np.array([0, 5, 9, 13, 17])
"""Hand-relative indices of the wrist and the four finger roots."""


# --- 2D similarities as complex numbers -----------------------------------------------------------
def to_complex(xy: np.ndarray) -> np.ndarray:
    """(..., 2) -> (...,) complex128."""
    xy = np.asarray(xy, np.float64)
    return xy[..., 0] + 1j * xy[..., 1]


def to_xy(z: np.ndarray) -> np.ndarray:
    """(...,) complex -> (..., 2) float64."""
    return np.stack([z.real, z.imag], -1)


def fit_similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None,
                   eps: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~ a * src + b`` (Umeyama, closed form in complex numbers).

    src, dst: (..., N, 2); weights: (..., N) >= 0 or None. Returns ``a, b``: (...,) complex, where
    ``|a|`` is the scale and ``angle(a)`` the rotation. With fewer than two weighted points
    ``a = 1`` and ``b`` is the weighted translation.
    """
    zs, zd = to_complex(src), to_complex(dst)
    zs, zd = np.broadcast_arrays(zs, zd)
    w = np.ones(zs.shape) if weights is None else np.broadcast_to(np.asarray(weights, float),
                                                                   zs.shape)
    wsum = np.maximum(w.sum(-1), eps)
    ms = (w * zs).sum(-1) / wsum
    md = (w * zd).sum(-1) / wsum
    cs, cd = zs - ms[..., None], zd - md[..., None]
    den = (w * np.abs(cs) ** 2).sum(-1)
    a = np.where(den > eps, (w * np.conj(cs) * cd).sum(-1) / np.maximum(den, eps), 1.0 + 0j)
    a = np.where((w > 0).sum(-1) >= 2, a, 1.0 + 0j)
    return a, md - a * ms


def bone_transform(p0: np.ndarray, p1: np.ndarray, q0: np.ndarray, q1: np.ndarray,
                   across: float | np.ndarray = 1.0) -> np.ndarray:
    """(..., 2, 3) affine mapping the segment p0->p1 onto q0->q1.

    Along the bone it stretches by ``|q1-q0| / |p1-p0|``; across it scales by ``across`` (so a
    foreshortened forearm gets shorter but not thinner). Rotation is the bone's turn.
    """
    u = np.asarray(p1, np.float64) - p0
    v = np.asarray(q1, np.float64) - q0
    lu = np.maximum(np.linalg.norm(u, axis=-1), 1e-9)
    lv = np.linalg.norm(v, axis=-1)
    cu, su = u[..., 0] / lu, u[..., 1] / lu
    lvs = np.maximum(lv, 1e-9)
    cv, sv = np.where(lv > 1e-9, v[..., 0] / lvs, cu), np.where(lv > 1e-9, v[..., 1] / lvs, su)
    k = lv / lu
    across = np.broadcast_to(np.asarray(across, np.float64), k.shape)
    # A = R_v diag(k, across) R_u^T
    r_v = np.stack([np.stack([cv, -sv], -1), np.stack([sv, cv], -1)], -2)
    r_ut = np.stack([np.stack([cu, su], -1), np.stack([-su, cu], -1)], -2)
    d = np.zeros(k.shape + (2, 2))
    d[..., 0, 0], d[..., 1, 1] = k, across
    lin = r_v @ d @ r_ut
    t = np.asarray(q0, np.float64) - (lin @ np.asarray(p0, np.float64)[..., None])[..., 0]
    return np.concatenate([lin, t[..., None]], -1)


def similarity_matrix(a: complex | np.ndarray, b: complex | np.ndarray) -> np.ndarray:
    """Complex similarity ``z -> a z + b`` as a (..., 2, 3) affine matrix."""
    a, b = np.asarray(a, complex), np.asarray(b, complex)
    row0 = np.stack([a.real, -a.imag, b.real], -1)
    row1 = np.stack([a.imag, a.real, b.imag], -1)
    return np.stack([row0, row1], -2)


# --- rest pose of a driving sequence ---------------------------------------------------------------
def _neck(xy: np.ndarray) -> np.ndarray:
    return xy[..., [K.LEFT_SHOULDER, K.RIGHT_SHOULDER], :].mean(-2)


def _with_neck(xy: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Append the virtual neck as the last point: (..., 134, 2), (..., 134)."""
    neck_ok = ok[..., K.LEFT_SHOULDER] & ok[..., K.RIGHT_SHOULDER]
    return (np.concatenate([xy, _neck(xy)[..., None, :]], -2),
            np.concatenate([ok, neck_ok[..., None]], -1))


def rest_pose(xy: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-keypoint median over the frames where it is visible.

    xy: (T, P, 2); ok: (T, P) bool. Returns rest (P, 2) and rest_ok (P,) (seen in any frame).
    """
    masked = np.where(ok[..., None], xy, np.nan)
    rest_ok = ok.any(0)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rest = np.nanmedian(masked, axis=0)
    return np.nan_to_num(rest), rest_ok


def _bone_ratio(ref: np.ndarray, ref_ok: np.ndarray, rest: np.ndarray, rest_ok: np.ndarray,
                i: int, j: int, fallback: float) -> float:
    """|ref bone| / |rest bone|, clamped to [0.5, 2] x fallback; fallback when not measurable."""
    if not (ref_ok[i] and ref_ok[j] and rest_ok[i] and rest_ok[j]):
        return fallback
    lr, ld = np.linalg.norm(ref[j] - ref[i]), np.linalg.norm(rest[j] - rest[i])
    if ld < 1e-6 or lr < 1e-6:
        return fallback
    return float(np.clip(lr / ld, 0.5 * fallback, 2.0 * fallback))


def torso_ratio(ref: np.ndarray, ref_ok: np.ndarray, rest: np.ndarray, rest_ok: np.ndarray) -> float:
    """Reference over driver torso size (:func:`csg.keypoints.torso_size`); 1 when unknown."""
    need = [K.LEFT_SHOULDER, K.RIGHT_SHOULDER]
    if not (ref_ok[need].all() and rest_ok[need].all()):
        return 1.0
    r_hip = ref_ok[[K.LEFT_HIP, K.RIGHT_HIP]].all() and rest_ok[[K.LEFT_HIP, K.RIGHT_HIP]].all()
    if r_hip:
        return float(K.torso_size(ref) / K.torso_size(rest))
    return float(np.linalg.norm(ref[5] - ref[6]) / max(np.linalg.norm(rest[5] - rest[6]), 1e-6))


# --- retargeting -----------------------------------------------------------------------------------
def fits_reference(poses: PoseSequence, ref_pose: PoseSequence, *, threshold: float = 0.3,
                   tolerance: float = 0.2) -> bool:
    """Whether ``poses`` already lie on the photo's person, so retargeting would only disturb them.

    True when both are on the same canvas and the driver's rest skeleton (per-point median) has
    the reference's shoulder width within ``1 +- tolerance`` and its neck within ``tolerance``
    shoulder widths of the reference neck, or failing that (face crops, noisy shoulders) the same
    holds for the stable face points' centre and spread (centre within ``5 x tolerance`` spreads): a
    skeleton extracted from the photo's own video, or generated in reference coordinates
    (stage 1). Retargeting such a driver would move the photo's frame-0
    pose away from the photo (the driver's rest is not the photo's pose).
    """
    if tolerance <= 0 or (poses.width, poses.height) != (ref_pose.width, ref_pose.height):
        return False
    ref = ref_pose.xy[0].astype(np.float64)
    ref_ok = ref_pose.scores[0] >= threshold
    rest, rest_ok = rest_pose(poses.xy.astype(np.float64), poses.scores >= threshold)
    sh = [K.LEFT_SHOULDER, K.RIGHT_SHOULDER]
    if ref_ok[sh].all() and rest_ok[sh].all():
        size_ref = float(np.linalg.norm(ref[sh[0]] - ref[sh[1]]))
        size_rest = float(np.linalg.norm(rest[sh[0]] - rest[sh[1]]))
        if size_ref > 1e-6 and abs(size_rest / size_ref - 1.0) <= tolerance and \
                np.linalg.norm(_neck(rest) - _neck(ref)) <= tolerance * size_ref:
            return True
    both = FACE_STABLE[ref_ok[FACE_STABLE] & rest_ok[FACE_STABLE]]
    if len(both) < 6:  # the face decides when the shoulders do not (face crops, noisy shoulders)
        return False
    c_ref, c_rest = ref[both].mean(0), rest[both].mean(0)
    size_ref = float(np.linalg.norm(ref[both] - c_ref, axis=1).mean())
    size_rest = float(np.linalg.norm(rest[both] - c_rest, axis=1).mean())
    if size_ref < 1e-6 or abs(size_rest / size_ref - 1.0) > tolerance:
        return False
    return bool(np.linalg.norm(c_rest - c_ref) <= 5 * tolerance * size_ref)


def retarget(poses: PoseSequence, ref_pose: PoseSequence, *, threshold: float = 0.3) -> PoseSequence:
    """Map a driving sequence onto the reference skeleton, part by part (see the module doc).

    poses: (T, 133, 3) on any canvas; ref_pose: the photo's skeleton (T=1). Returns a sequence on
    the reference canvas with the driver's fps and scores. Keypoints with score < ``threshold`` are
    treated as missing and follow their parent.
    """
    xy = poses.xy.astype(np.float64)
    ok = poses.scores >= threshold
    ref = ref_pose.xy[0].astype(np.float64)
    ref_ok = ref_pose.scores[0] >= threshold
    xyn, okn = _with_neck(xy, ok)
    refn, refn_ok = _with_neck(ref, ref_ok)
    rest, rest_ok = rest_pose(xyn, okn)
    s = torso_ratio(ref, ref_ok, rest[:-1], rest_ok[:-1])

    out = np.repeat(refn[None], len(poses), axis=0)
    out[:, -1] = np.where(okn[:, -1, None], refn[-1] + s * (xyn[:, -1] - rest[-1]), refn[-1])
    for parent, child in BODY_CHAIN:
        p = parent if parent != NECK else -1
        r = _bone_ratio(refn, refn_ok, rest, rest_ok, p, child, s)
        if rest_ok[p] and rest_ok[child]:
            fallback = rest[child] - rest[p]
        else:
            fallback = (refn[child] - refn[p]) / r
        vec = np.where((okn[:, child] & okn[:, p])[:, None], xyn[:, child] - xyn[:, p], fallback)
        out[:, child] = out[:, p] + r * vec
    out[:, HEAD] = _retarget_head(xyn, okn, refn, refn_ok, rest, rest_ok, out[:, -1], s)
    for root, wrist in ((K.LEFT_HAND_ROOT, K.LEFT_WRIST), (K.RIGHT_HAND_ROOT, K.RIGHT_WRIST)):
        idx = np.arange(root, root + K.HAND_SIZE)
        sh = _hand_ratio(ref[idx], ref_ok[idx], rest[idx], rest_ok[idx], s)
        anchor = np.where(ok[:, wrist, None], xy[:, wrist], xy[:, root])
        out[:, idx] = out[:, wrist, None] + sh * (xy[:, idx] - anchor[:, None])
    kps = np.concatenate([out[:, :-1], poses.scores[..., None]], -1).astype(np.float32)
    meta = dict(poses.meta, retargeted=True)
    return PoseSequence(kps, fps=poses.fps, width=ref_pose.width, height=ref_pose.height, meta=meta)


def _hand_ratio(ref: np.ndarray, ref_ok: np.ndarray, rest: np.ndarray, rest_ok: np.ndarray,
                fallback: float) -> float:
    """Reference over driver palm size (wrist to finger roots), clamped to [0.5, 2] x fallback."""
    if not (ref_ok[PALM].all() and rest_ok[PALM].all()):
        return fallback
    size_ref = np.linalg.norm(ref[PALM[1:]] - ref[0], axis=-1).mean()
    size_rest = np.linalg.norm(rest[PALM[1:]] - rest[0], axis=-1).mean()
    if size_rest < 1e-6:
        return fallback
    return float(np.clip(size_ref / size_rest, 0.5 * fallback, 2.0 * fallback))


def _head_rest(head: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rest head of a driver: frames normalised by a similarity onto the first good frame, then a
    per-point median; the lips come from the most-closed tenth of the frames. (T, 73, 2) -> (73, 2).
    """
    st = np.isin(HEAD, FACE_STABLE)
    good = ok[:, st].sum(1) >= 6
    if not good.any():
        return rest_pose(head, ok)
    tmpl = head[np.argmax(good)][st]
    a, b = fit_similarity(head[:, st], tmpl[None], ok[:, st])
    norm = to_xy((to_complex(head) - b[:, None]) / a[:, None])
    rest, rest_ok = rest_pose(norm, ok & good[:, None])
    lips = np.isin(HEAD, np.arange(K.MOUTH.start, K.MOUTH.stop))
    full = np.zeros((len(head), K.NUM_KEYPOINTS, 2))
    full[:, HEAD] = norm
    opening = np.where(good, K.mouth_opening(full), np.inf)
    closed = good & (opening <= np.percentile(opening[good], 10))
    rest[lips] = rest_pose(norm[closed][:, lips], ok[closed][:, lips])[0]
    return rest, rest_ok


def _retarget_head(xyn: np.ndarray, okn: np.ndarray, refn: np.ndarray, refn_ok: np.ndarray,
                   rest: np.ndarray, rest_ok: np.ndarray, neck_out: np.ndarray,
                   s: float) -> np.ndarray:
    """(T, 73, 2) retargeted head: reference face + driver expression, moved by the driver's head."""
    st = np.isin(HEAD, FACE_STABLE)
    head, hok = xyn[:, HEAD], okn[:, HEAD]
    hrest, hrest_ok = _head_rest(head, hok)
    ref_h, ref_hok = refn[HEAD], refn_ok[HEAD]
    good_ref = ref_hok[st].sum() >= 6 and hrest_ok[st].sum() >= 6
    if good_ref:   # G: driver rest head -> reference head
        w = (ref_hok & hrest_ok)[st]
        a_g, b_g = fit_similarity(hrest[st], ref_h[st], w)
    else:
        a_g = complex(s)
        b_g = to_complex(refn[-1]) - a_g * to_complex(rest[-1])
    ref_sub = np.where(ref_hok[:, None], ref_h, to_xy(a_g * to_complex(hrest) + b_g))
    # per-frame head motion S_t: rest -> frame t, and the expression residual e(t) in rest coords
    good = hok[:, st].sum(1) >= 6
    a_t, b_t = fit_similarity(hrest[st][None], head[:, st], hok[:, st] & hrest_ok[st])
    a_t, b_t = np.where(good, a_t, 1.0), np.where(good, b_t, 0.0)
    e = (to_complex(head) - b_t[:, None]) / a_t[:, None] - to_complex(hrest)
    e = np.where(hok & good[:, None], e, 0.0)
    # the head centre follows the neck: c'(t) = neck'(t) + r_h (c(t) - neck(t))
    c_rest = to_complex(hrest[st]).mean()
    ref_c = to_complex(ref_sub[st]).mean()
    l_ref = abs(ref_c - to_complex(refn[-1]))
    l_rest = abs(c_rest - to_complex(rest[-1]))
    r_h = float(np.clip(l_ref / l_rest, 0.5 * s, 2 * s)) if l_rest > 1e-6 and good_ref else s
    c_t = (a_t * c_rest + b_t)
    d = np.where(good & okn[:, -1], c_t - to_complex(xyn[:, -1]), c_rest - to_complex(rest[-1]))
    c_out = to_complex(neck_out) + r_h * d
    z = c_out[:, None] + a_t[:, None] * (to_complex(ref_sub) + a_g * e - ref_c)
    return to_xy(z)
