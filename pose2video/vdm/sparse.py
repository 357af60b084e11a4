"""Pose-guided sparse cross-frame attention for the ``vdm`` denoiser (IASA, Lu et al. 2025, §3).

IASA makes a pose-guided video model real-time with two input-aware masks on cross-frame attention:

- **global** (IASA §3.2): every frame attends only to the top-K most similar *past* frames, the
  similarity being the distance of the rigidly aligned upper-body keypoints of the two frames;
- **local** (IASA §3.3): across frames, a token attends only to tokens of its own body region
  (face, hands, arms, torso; here also "background"), the regions coming from the keypoints.

``vdm``'s attention is factorised (spatial within a frame, then temporal across frames at each patch
position, :mod:`pose2video.vdm.model`), so both masks act on the temporal (cross-frame) attention:

- global: query frame ``f`` attends to itself, to the *anchor* frames (frame 0, the reference photo:
  in this model the temporal attention is the only path from the reference to the generated frames)
  and to the ``k`` past frames ``g < f`` (anchors excluded) with the smallest aligned-pose distance.
  The result is a rectangular index table ``(F, S)``, ``S = 1 + len(anchors) + k``, plus a validity
  mask for early frames that have fewer than ``k`` past frames: the model *gathers* those ``S``
  frames' keys and values per query frame, so the work is ``F x S`` instead of ``F x F`` (no dense
  matmul with -inf);
- local: token ``(f, p)`` attends to ``(g, p)`` only when the region label of patch ``p`` is the
  same in frames ``f`` and ``g`` (itself always). Labels come from :func:`csg.regions.raster_masks`
  on the patch grid (face, hands, body rectangle) and from the arm segments; priority face > hands
  > arms > torso > background. Mode ``global+local+ref`` keeps the reference frame visible to every
  token whatever the labels (the local mask then acts on the other frames only): in this model the
  reference is the only appearance source, and IASA keeps it in a separate reference network.

Everything here is pure numpy: the model turns the tables into tensors (:func:`plan_tensors`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("dense", "global", "global+local", "global+local+ref")
"""Attention modes of :class:`pose2video.vdm.model.VdmDenoiser` (``attention`` config key)."""

UPPER_BODY = np.arange(0, 13)
"""COCO body 0-12: nose, eyes, ears, shoulders, elbows, wrists, hips (the aligned points)."""
ARMS = ((5, 7), (7, 9), (6, 8), (8, 10))
"""Arm segments (shoulder-elbow, elbow-wrist; left then right), COCO body indices."""

BACKGROUND, TORSO, ARM, FACE, HAND = 0, 1, 2, 3, 4
REGION_NAMES = ("background", "torso", "arms", "face", "hands")
"""Region label values of :func:`token_regions`."""


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"attention mode {mode!r} is not one of {', '.join(MODES)}")
    return mode


# --- global mask: aligned upper-body distance, top-K past frames ---------------------------------
def rigid_align(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``src`` (J, 2) moved onto ``dst`` (J, 2) by the least-squares rotation + translation
    (Kabsch / orthogonal Procrustes without scaling). Returns the moved ``src``."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag([1.0, d]) @ vt
    return a @ rot + md


def pose_distances(kp: np.ndarray, threshold: float = 0.3, joints: np.ndarray = UPPER_BODY
                   ) -> np.ndarray:
    """(F, 133, 3) skeletons -> (F, F) distances: frame g rigidly aligned onto frame f
    (:func:`rigid_align`) over the upper-body points reliable in both, mean point distance divided
    by frame f's shoulder width (or its point spread when the shoulders are missing). Pairs with
    fewer than 3 common points get ``inf``; the diagonal is 0."""
    kp = np.asarray(kp, np.float64)
    F = len(kp)
    out = np.zeros((F, F))
    xy, ok = kp[:, joints, :2], kp[:, joints, 2] >= threshold
    for f in range(F):
        sh = kp[f, [5, 6]]
        scale = np.linalg.norm(sh[0, :2] - sh[1, :2]) if (sh[:, 2] >= threshold).all() else 0.0
        if scale <= 1e-6:
            pts = xy[f][ok[f]]
            scale = float(np.ptp(pts, 0).max()) if len(pts) > 1 else 1.0
        scale = max(scale, 1e-6)
        for g in range(F):
            if g == f:
                continue
            both = ok[f] & ok[g]
            if both.sum() < 3:
                out[f, g] = np.inf
                continue
            moved = rigid_align(xy[g][both], xy[f][both])
            out[f, g] = np.linalg.norm(moved - xy[f][both], axis=1).mean() / scale
    return out


def topk_past_frames(dist: np.ndarray, k: int, anchors: tuple[int, ...] = (0,)
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The global mask as a gather table: ``(index, valid)``, both (F, S), S = 1 + len(anchors) + k.

    Row f lists f itself, then the anchors that are not f, then the ``k`` past frames g < f
    (anchors excluded) with the smallest ``dist[f, g]`` (ties: the more recent frame first).
    Slots with nothing to hold (early frames with fewer past frames; an anchor row) repeat f and are
    marked invalid, so every valid row has exactly ``min(k, #past non-anchor frames)`` past frames.
    """
    dist = np.asarray(dist, np.float64)
    F = len(dist)
    k = int(k)
    if k < 0:
        raise ValueError(f"top-k must be >= 0, got {k}")
    S = 1 + len(anchors) + k
    index = np.repeat(np.arange(F)[:, None], S, 1)
    valid = np.zeros((F, S), bool)
    valid[:, 0] = True
    for f in range(F):
        col = 1
        for a in anchors:
            if a != f and 0 <= a < F:
                index[f, col], valid[f, col] = a, True
            col += 1
        past = [g for g in range(f) if g not in anchors]
        if past and k:
            d = dist[f, past]
            order = sorted(range(len(past)), key=lambda i: (d[i], -past[i]))[:k]
            for j, i in enumerate(order):
                index[f, col + j], valid[f, col + j] = past[i], True
    return index, valid


# --- local mask: region label per patch ----------------------------------------------------------
def _segment_mask(p0: np.ndarray, p1: np.ndarray, r: float, grid_hw: tuple[int, int]) -> np.ndarray:
    """(h, w) bool: grid cells within ``r`` of the segment p0-p1 (grid coordinates, x, y)."""
    h, w = grid_hw
    yy, xx = np.mgrid[0:h, 0:w]
    pts = np.stack([xx, yy], -1).astype(np.float64)
    d = p1 - p0
    L = float(d @ d)
    t = np.clip(((pts - p0) @ d) / L, 0, 1) if L > 0 else np.zeros((h, w))
    near = p0 + t[..., None] * d
    return np.linalg.norm(pts - near, axis=-1) <= r


def token_regions(kp: np.ndarray, canvas_hw: tuple[int, int], grid_hw: tuple[int, int], *,
                  threshold: float = 0.3, radius: float = 0.06) -> np.ndarray:
    """(F, 133, 3) skeletons on ``canvas_hw`` -> (F, h * w) int64 region label per patch
    (:data:`REGION_NAMES`), row-major like the model's patch tokens.

    Face, hands and torso are :func:`csg.regions.raster_masks` (face / hands circles, body
    rectangle) drawn on the patch grid with ``radius`` (fraction of the canvas long side); arms are
    the cells within ``radius`` of the shoulder-elbow-wrist segments (points with score >=
    ``threshold``). Priority where they overlap: face > hands > arms > torso > background."""
    from csg import regions as R

    kp = np.asarray(kp, np.float64)
    h, w = grid_hw
    H, W = canvas_hw
    r_cells = radius * max(H, W) * max(h / H, w / W)
    out = np.zeros((len(kp), h * w), np.int64)
    for f, frame in enumerate(kp):
        m = R.raster_masks(frame, canvas_hw, grid_hw, regions=(R.BODY, R.FACE, R.HANDS),
                           threshold=threshold, radius=radius)
        lab = np.zeros((h, w), np.int64)
        lab[m[R.BODY] > 0] = TORSO
        gxy = np.stack([(frame[:, 0] + 0.5) * w / W - 0.5, (frame[:, 1] + 0.5) * h / H - 0.5], -1)
        for a, b in ARMS:
            if frame[a, 2] >= threshold and frame[b, 2] >= threshold:
                lab[_segment_mask(gxy[a], gxy[b], max(r_cells, 0.75), grid_hw)] = ARM
        lab[m[R.HANDS] > 0] = HAND
        lab[m[R.FACE] > 0] = FACE
        out[f] = lab.reshape(-1)
    return out


def allowed(index: np.ndarray, valid: np.ndarray, labels: np.ndarray | None,
            keep: int = 1) -> np.ndarray:
    """(F, N, S) bool: may token (f, p) attend to token (index[f, s], p)? ``valid`` and, with
    ``labels`` (F, N), the same region label in both frames, except in the first ``keep`` slots
    (1: the query's own slot; 2: also the reference, :func:`topk_past_frames`' order)."""
    F, S = index.shape
    if labels is None:
        return np.broadcast_to(valid[:, None, :], (F, 1, S)).copy()
    same = labels[index].transpose(0, 2, 1) == labels[:, :, None]  # (F, N, S)
    same[:, :, :keep] = True
    return same & valid[:, None, :]


@dataclass(frozen=True)
class SparsePlan:
    """What :func:`build_plan` gives the model for one sample: gather table and optional labels."""

    index: np.ndarray  # (F, S) int64 frames gathered per query frame
    valid: np.ndarray  # (F, S) bool
    labels: np.ndarray | None  # (F, N) int64 region labels (local mask) or None (global only)
    keep: int = 1  # leading slots exempt from the local mask (2: the reference too)


def build_plan(kp: np.ndarray, mode: str, topk: int, canvas_hw: tuple[int, int],
               grid_hw: tuple[int, int], *, threshold: float = 0.3) -> SparsePlan | None:
    """The sparse plan of one window: ``kp`` (F, 133, 3) skeletons of all its frames (reference
    first) on ``canvas_hw``; ``grid_hw`` the patch grid. ``mode`` "dense" gives None."""
    check_mode(mode)
    if mode == "dense":
        return None
    index, valid = topk_past_frames(pose_distances(kp, threshold), topk)
    labels = token_regions(kp, canvas_hw, grid_hw, threshold=threshold) \
        if mode.startswith("global+local") else None
    return SparsePlan(index, valid, labels, 2 if mode == "global+local+ref" else 1)


def plan_tensors(plans: list[SparsePlan], device=None):
    """Stack per-sample plans into the model's ``sparse`` argument: dict of tensors ``index``
    (B, F, S) long, ``mask`` (B, F, N or 1, S) bool (:func:`allowed`)."""
    import torch

    index = torch.from_numpy(np.stack([p.index for p in plans])).to(device)
    mask = torch.from_numpy(np.stack([allowed(p.index, p.valid, p.labels, p.keep) for p in plans]))
    return {"index": index, "mask": mask.to(device)}
