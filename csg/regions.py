"""One region taxonomy for both stages and for eval: keypoint masks and rasterised masks.

Regions (names in :data:`REGIONS`):

| region | keypoints (COCO-WholeBody 133, :mod:`csg.keypoints`) | raster (PAHA §3.2, Eq. 2-3) |
| --- | --- | --- |
| ``body`` | body (0-16) + feet (17-22) | rectangle spanned by the reliable body points, grown by r |
| ``face`` | face (23-90) | union of circles of radius r around reliable face points |
| ``mouth_jaw`` | mouth (lips) + jaw line | union of circles around reliable mouth / jaw points |
| ``hands`` | both hands (91-132) | union of circles around reliable hand points |
| ``nonface`` | body + feet + hands | (body ∪ hands) minus face |
| ``background`` | none | everything outside body ∪ face ∪ hands |

``body``, ``face`` and ``hands`` partition the 133 keypoints (:data:`PARTS`, :data:`PART_IDS`):
stage-1 PAR weights and the per-region eval numbers use that partition. The PCE sync classifiers
(PAHA §4.1.3) use ``mouth_jaw`` (face classifier) and ``nonface`` (non-face classifier).

Confidence gating: a keypoint counts only where its score is >= ``threshold``. Rasters are drawn at
any grid: pass the canvas size the keypoints live on and the grid size (pixels or a latent grid);
coordinates scale by grid / canvas. The circle radius ``r`` defaults to PAHA's 10 px at 512²,
i.e. ``radius=10/512`` of the canvas' long side. Pure numpy.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from . import keypoints as K

BODY, FACE, MOUTH_JAW, HANDS, NONFACE, BACKGROUND = (
    "body", "face", "mouth_jaw", "hands", "nonface", "background")
REGIONS = (BODY, FACE, MOUTH_JAW, HANDS, NONFACE, BACKGROUND)
PARTS = (BODY, FACE, HANDS)
"""The disjoint partition of the 133 keypoints (PAR's hand / face / body areas; eval per region)."""

_GROUPS: dict[str, tuple[slice, ...]] = {
    BODY: (K.BODY, K.FEET),
    FACE: (K.FACE,),
    MOUTH_JAW: (K.MOUTH, K.JAW),
    HANDS: (K.HANDS,),
    NONFACE: (K.BODY, K.FEET, K.HANDS),
    BACKGROUND: (),
}
DEFAULT_RADIUS = 10.0 / 512.0  # PAHA: r = 10 px at 512 x 512, as a fraction of the long side


def _check(region: str) -> None:
    if region not in _GROUPS:
        raise ValueError(f"region {region!r} is not one of {', '.join(REGIONS)}")


def _part_ids() -> np.ndarray:
    ids = np.full(K.NUM_KEYPOINTS, PARTS.index(BODY), dtype=np.int64)
    ids[K.FACE] = PARTS.index(FACE)
    ids[K.HANDS] = PARTS.index(HANDS)
    ids.setflags(write=False)
    return ids


PART_IDS: np.ndarray = _part_ids()
"""(133,) int, read-only: index into :data:`PARTS` (0 body and feet, 1 face, 2 hands)."""


def keypoint_mask(region: str, scores: np.ndarray | None = None,
                  threshold: float = 0.3) -> np.ndarray:
    """(133,) bool: True on the keypoints of ``region``.

    With ``scores`` (..., 133) confidences: (..., 133) bool, also requiring score >= ``threshold``.
    """
    _check(region)
    m = K.group_mask(*_GROUPS[region])
    if scores is None:
        return m
    return m & (np.asarray(scores) >= threshold)


def keypoint_indices(region: str) -> np.ndarray:
    """Sorted keypoint indices of ``region`` (empty for background)."""
    return np.flatnonzero(keypoint_mask(region))


def keypoint_mask_tensor(region: str, *, device: Any = None, dtype: Any = None) -> Any:
    """``keypoint_mask(region)`` as a torch (133, 1) 0/1 tensor broadcasting over (B, T, 133, 2)."""
    import torch

    m = torch.as_tensor(keypoint_mask(region), dtype=dtype or torch.float32, device=device)
    return m[:, None]


# --- rasterised masks -----------------------------------------------------------------------------
def _to_grid(frame: np.ndarray, canvas_hw: tuple[int, int],
             grid_hw: tuple[int, int]) -> np.ndarray:
    """(133, 2) pixel-centre coordinates on the grid (x, y)."""
    H, W = canvas_hw
    h, w = grid_hw
    xy = np.asarray(frame, np.float64)[:, :2]
    return np.stack([(xy[:, 0] + 0.5) * w / W - 0.5, (xy[:, 1] + 0.5) * h / H - 0.5], -1)


def _disc_union(pts: np.ndarray, values: np.ndarray, r: float, grid_hw: tuple[int, int],
                reduce: str) -> np.ndarray:
    """(h, w) float: per pixel, the max (or sum) of ``values`` of the discs of radius r covering it."""
    h, w = grid_hw
    if 0 < len(pts) * h * w <= 1 << 21:  # small grids (latent grids): all discs at once
        x, y = pts[:, 0, None, None], pts[:, 1, None, None]
        inside = (np.arange(w)[None, None, :] - x) ** 2 + (np.arange(h)[None, :, None] - y) ** 2 \
            <= r * r
        layers = inside * np.asarray(values, np.float64)[:, None, None]
        if reduce == "sum":  # cumsum adds in point order, as the loop below: the same bits
            return np.cumsum(layers, axis=0)[-1] + 0.0
        return np.maximum(layers.max(0), 0.0)
    out = np.zeros((h, w), np.float64)
    for (x, y), v in zip(pts, values):
        x0, x1 = max(0, int(np.floor(x - r))), min(w, int(np.ceil(x + r)) + 1)
        y0, y1 = max(0, int(np.floor(y - r))), min(h, int(np.ceil(y + r)) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.arange(y0, y1)[:, None], np.arange(x0, x1)[None, :]  # (mgrid is slow)
        inside = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
        patch = out[y0:y1, x0:x1]
        if reduce == "sum":
            patch += inside * v
        else:
            np.maximum(patch, inside * v, out=patch)
    return out


def _rect(pts: np.ndarray, r: float, grid_hw: tuple[int, int]) -> np.ndarray:
    h, w = grid_hw
    out = np.zeros((h, w), np.float64)
    if len(pts) == 0:
        return out
    (x0, y0), (x1, y1) = pts.min(0) - r, pts.max(0) + r
    xs = slice(max(0, int(np.ceil(x0))), min(w, int(np.floor(x1)) + 1))
    ys = slice(max(0, int(np.ceil(y0))), min(h, int(np.floor(y1)) + 1))
    out[ys, xs] = 1.0
    return out


def raster_masks(frame: np.ndarray, canvas_hw: tuple[int, int],
                 grid_hw: tuple[int, int] | None = None, *,
                 regions: Iterable[str] = REGIONS, threshold: float = 0.3,
                 radius: float = DEFAULT_RADIUS) -> dict[str, np.ndarray]:
    """0/1 float32 ``(h, w)`` masks of ``regions`` from one skeleton frame (table in module doc).

    frame: (133, 3) x, y (pixels on ``canvas_hw`` = (H, W)), score. grid_hw: the output (h, w)
    (default: the canvas; a latent grid such as (H/8, W/8) works the same). Keypoints scoring below
    ``threshold`` are ignored. radius: circle radius as a fraction of the canvas long side,
    drawn at the grid's scale (a region with no reliable keypoint is empty).
    """
    frame = np.asarray(frame, np.float64)
    if frame.shape != (K.NUM_KEYPOINTS, 3):
        raise ValueError(f"frame must be (133, 3), got {frame.shape}")
    grid_hw = tuple(canvas_hw) if grid_hw is None else tuple(grid_hw)
    want = list(regions)
    for r in want:
        _check(r)
    pts = _to_grid(frame, canvas_hw, grid_hw)
    r_px = radius * max(canvas_hw) * max(grid_hw[0] / canvas_hw[0], grid_hw[1] / canvas_hw[1])
    ok = frame[:, 2] >= threshold
    cache: dict[str, np.ndarray] = {}

    def base(name: str) -> np.ndarray:
        if name not in cache:
            sel = keypoint_mask(name) & ok
            if name == BODY:
                cache[name] = _rect(pts[sel], r_px, grid_hw)
            else:
                cache[name] = _disc_union(pts[sel], np.ones(int(sel.sum())), r_px, grid_hw, "max")
        return cache[name]

    out = {}
    for name in want:
        if name in (BODY, FACE, MOUTH_JAW, HANDS):
            m = base(name)
        elif name == NONFACE:
            m = np.maximum(base(BODY), base(HANDS)) * (1 - base(FACE))
        else:  # background
            m = 1 - np.maximum(np.maximum(base(BODY), base(FACE)), base(HANDS))
        out[name] = m.astype(np.float32)
    return out


def confidence_map(frame: np.ndarray, region: str, canvas_hw: tuple[int, int],
                   grid_hw: tuple[int, int] | None = None, *, threshold: float = 0.3,
                   radius: float = DEFAULT_RADIUS, sigma: float = 0.0) -> np.ndarray:
    """PAHA Eq. 3's Gauss_smooth(Σ c_i): per pixel, the sum of the confidences of the reliable
    keypoints of ``region`` whose radius-r circle covers it, Gaussian-smoothed with ``sigma`` grid
    pixels (0: none). float32 (h, w). Arguments as :func:`raster_masks`."""
    frame = np.asarray(frame, np.float64)
    _check(region)
    grid_hw = tuple(canvas_hw) if grid_hw is None else tuple(grid_hw)
    pts = _to_grid(frame, canvas_hw, grid_hw)
    r_px = radius * max(canvas_hw) * max(grid_hw[0] / canvas_hw[0], grid_hw[1] / canvas_hw[1])
    sel = keypoint_mask(region) & (frame[:, 2] >= threshold)
    m = _disc_union(pts[sel], frame[sel, 2], r_px, grid_hw, "sum")
    if sigma > 0:
        from scipy.ndimage import gaussian_filter

        m = gaussian_filter(m, sigma, mode="nearest")
    return m.astype(np.float32)


# --- PAR (PAHA Eq. 2-3), shared by stage 1 (per keypoint) and stage 2 (per latent pixel) ---------
def par_weights(confidence: Any, small: Any, body: Any, *, omega1: float = 10.0,
                omega2: float = 2.0, outside: float = 1.0) -> Any:
    """PAHA Eq. 2-3 loss-weight mask M(x) = ω1 · conf inside the small (hands + face) areas,
    ω2 inside the body area, ``outside`` elsewhere (PAHA: 1).

    Arrays (numpy or torch, broadcasting): ``confidence`` the (smoothed) confidence
    Gauss_smooth(Σ c_i); ``small`` / ``body`` 0/1 area masks (the small areas win where both are
    set). Stage 1: one value per keypoint (``body = 1 - small``); stage 2: per latent pixel, from
    :func:`confidence_map` and :func:`raster_masks`. Unreliable points are the caller's to zero.
    """
    return small * (omega1 * confidence) + (1 - small) * (body * omega2 + (1 - body) * outside)
