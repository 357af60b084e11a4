"""Skeleton metrics: normalisation, jitter, confidences, L1 / PCK against a reference, diversity.

Pure numpy. Lengths are torso-normalised with :func:`csg.keypoints.torso_size` (the larger of
shoulder width and shoulder-to-hip height), so numbers do not depend on the canvas size.
"""
from __future__ import annotations

import numpy as np

from csg import keypoints as K
from csg import regions as R

REGIONS: dict[str, np.ndarray] = {name: R.keypoint_indices(name) for name in R.PARTS}
"""Per-region keypoint indices (csg.regions' body / face / hands partition)."""
# CSG's 123 points: DWPose-133 without knees, ankles and feet (legs are rarely in frame).
UPPER_123 = np.setdiff1d(np.arange(K.NUM_KEYPOINTS), np.concatenate([
    np.array([K.LEFT_KNEE, K.RIGHT_KNEE, K.LEFT_ANKLE, K.RIGHT_ANKLE]),
    np.arange(K.NUM_KEYPOINTS)[K.FEET]]))


def clip_torso(xy: np.ndarray) -> float:
    """Median torso size (pixels) over the frames of a clip; xy: (T, 133, 2)."""
    return float(np.median(K.torso_size(np.asarray(xy, np.float64))))


def normalise_clip(keypoints: np.ndarray, *, ref: np.ndarray | None = None,
                   score_threshold: float = 0.3, joints: np.ndarray = UPPER_123) -> np.ndarray:
    """Reference-relative, torso-scaled coordinates for a clip.

    keypoints: (T, 133, 3). ref: (133, 3) reference frame (default: frame 0). Every frame has the
    reference's mid-shoulder point subtracted and is divided by the reference torso size, so a
    person standing still at any place or scale maps to the same numbers. Points scoring below
    ``score_threshold`` are set to 0 (the mid-shoulder). Returns (T, len(joints), 2) float32.
    """
    kp = np.asarray(keypoints, np.float64)
    r = kp[0] if ref is None else np.asarray(ref, np.float64)
    centre = r[[K.LEFT_SHOULDER, K.RIGHT_SHOULDER], :2].mean(axis=0)
    scale = float(K.torso_size(r[:, :2]))
    out = (kp[..., :2] - centre) / scale
    out[kp[..., 2] < score_threshold] = 0.0
    return out[:, joints].astype(np.float32)


def jitter(keypoints: np.ndarray, *, score_threshold: float = 0.3) -> float:
    """Mean acceleration magnitude, in torso sizes per frame², over confident points.

    keypoints: (T, 133, 3), T >= 3. a_t = x_{t+1} − 2 x_t + x_{t−1}; averaged over the points that
    are confident in all three frames. NaN for T < 3.
    """
    kp = np.asarray(keypoints, np.float64)
    if kp.shape[0] < 3:
        return float("nan")
    xy = kp[..., :2] / clip_torso(kp[..., :2])
    acc = np.linalg.norm(xy[2:] - 2 * xy[1:-1] + xy[:-2], axis=-1)
    ok = (kp[2:, :, 2] >= score_threshold) & (kp[1:-1, :, 2] >= score_threshold) \
        & (kp[:-2, :, 2] >= score_threshold)
    return float(acc[ok].mean()) if ok.any() else float("nan")


def mean_confidence(keypoints: np.ndarray, group: slice) -> float:
    """Mean score of a keypoint group over all frames, e.g. HKC = ``mean_confidence(k, K.HANDS)``."""
    return float(np.asarray(keypoints, np.float64)[:, group, 2].mean())


def pck(pred_xy: np.ndarray, ref_kp: np.ndarray, alpha: float, *,
        score_threshold: float = 0.3, joints: np.ndarray | None = None) -> float:
    """Percentage of Correct Keypoints: share of points within alpha × torso size of the reference.

    pred_xy: (T, 133, 2); ref_kp: (T, 133, 3) reference (ground truth or driving skeleton). The
    threshold is alpha × the reference's per-frame torso size (:func:`csg.keypoints.torso_size`).
    Only reference points scoring above ``score_threshold`` count, optionally restricted to
    ``joints``. Returns a value in [0, 1], NaN when nothing counts.
    """
    p = np.asarray(pred_xy, np.float64)
    r = np.asarray(ref_kp, np.float64)
    d = np.linalg.norm(p - r[..., :2], axis=-1)
    thr = alpha * K.torso_size(r[..., :2])[:, None]
    ok = r[..., 2] > score_threshold
    if joints is not None:
        sel = np.zeros(K.NUM_KEYPOINTS, bool)
        sel[joints] = True
        ok = ok & sel
    return float((d[ok] <= thr.repeat(d.shape[1], 1)[ok]).mean()) if ok.any() else float("nan")


def pck_by_region(pred_xy: np.ndarray, ref_kp: np.ndarray, alphas=(0.05, 0.1), *,
                  score_threshold: float = 0.3) -> dict[str, float]:
    """``{"pck@0.05/body": ..., "pck@0.05/face": ..., "pck@0.05/hands": ..., "pck@0.05": all}``."""
    out = {}
    for a in alphas:
        out[f"pck@{a:g}"] = pck(pred_xy, ref_kp, a, score_threshold=score_threshold)
        for name, idx in REGIONS.items():
            out[f"pck@{a:g}/{name}"] = pck(pred_xy, ref_kp, a, score_threshold=score_threshold,
                                           joints=idx)
    return out


def l1_error(pred_kp: np.ndarray, ref_kp: np.ndarray, *, score_threshold: float = 0.3) -> float:
    """Mean absolute coordinate error in reference torso sizes over confident reference points.

    pred_kp, ref_kp: (T, 133, >=2). Mean of |dx| and |dy| (the L1 of the field, per coordinate).
    """
    p = np.asarray(pred_kp, np.float64)
    r = np.asarray(ref_kp, np.float64)
    err = np.abs(p[..., :2] - r[..., :2]) / K.torso_size(r[..., :2])[:, None, None]
    ok = r[..., 2] > score_threshold if r.shape[-1] > 2 else np.ones(r.shape[:2], bool)
    return float(err[ok].mean()) if ok.any() else float("nan")


def diversity(features: np.ndarray) -> float:
    """Mean pairwise L1 distance between the rows of ``features`` (N, D) over all N(N−1)/2 pairs.

    As in DiffGesture / TalkSHOW: L1 between features of generated samples. 0 for identical rows;
    NaN for N < 2.
    """
    f = np.asarray(features, np.float64)
    n = f.shape[0]
    if n < 2:
        return float("nan")
    total = 0.0
    for i in range(n - 1):  # row loop keeps memory at O(N D)
        total += np.abs(f[i + 1:] - f[i]).sum()
    return float(total / (n * (n - 1) / 2))


def align_lengths(*arrays: np.ndarray) -> list[np.ndarray]:
    """Crop arrays along axis 0 to their shortest length (pred and ground truth of one clip)."""
    T = min(a.shape[0] for a in arrays)
    return [a[:T] for a in arrays]
