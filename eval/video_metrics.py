"""Frame metrics for stage 2: PSNR, SSIM, masked variants, person/face boxes, flicker.

Pure numpy/scipy. Frames are (H, W, 3) uint8 RGB (or float in [0, 255]); masks are (H, W) bool.
"""
from __future__ import annotations

import math

import numpy as np

from csg import keypoints as K

_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2  # Wang et al. 2004, L = 255


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB for 8-bit images: 10 log10(255² / MSE); inf if identical.

    a, b: (..., H, W, C); mask: optional (H, W) bool restricting the pixels compared.
    """
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    if mask is not None:
        d = d[..., mask, :]
        if d.size == 0:
            return float("nan")
    mse = float(d.mean())
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def ssim_map(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Per-pixel SSIM (Wang et al. 2004, Eq. 13) with an 11-tap Gaussian window (σ = 1.5).

    a, b: (H, W, C) or (H, W). Returns (H, W): the mean over channels. Identical inputs give 1.
    """
    from scipy.ndimage import gaussian_filter

    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    f = lambda z: gaussian_filter(z, sigma=(sigma, sigma, 0), truncate=3.5)  # noqa: E731
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    s = ((2 * mx * my + _C1) * (2 * cxy + _C2)) / ((mx * mx + my * my + _C1) * (vx + vy + _C2))
    return s.mean(axis=-1)


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM of two frames, optionally over a (H, W) bool mask. 1.0 for identical frames."""
    if np.array_equal(a, b):
        return 1.0  # exactly, not 1 - 1e-16
    m = ssim_map(a, b)
    if mask is not None:
        return float(m[mask].mean()) if mask.any() else float("nan")
    return float(m.mean())


def keypoint_bbox(kp: np.ndarray, size_hw: tuple[int, int], *, region: str | None = None,
                  group: slice | None = None, margin: float = 0.1,
                  score_threshold: float = 0.3) -> tuple[int, int, int, int] | None:
    """(y0, x0, y1, x1) box around confident keypoints, grown by ``margin`` × its size each side.

    kp: (133, 3) or (T, 133, 3) (the union over frames). region: a :mod:`csg.regions` name
    ("face", "hands", ...; default all points); group: a raw index slice (older callers).
    Clipped to the (H, W) canvas; None when no point is confident.
    """
    k = np.asarray(kp, np.float64).reshape(-1, K.NUM_KEYPOINTS, 3)
    if region is not None:
        from csg.regions import keypoint_mask

        k = k[:, keypoint_mask(region)]
    if group is not None:
        k = k[:, group]
    pts = k[..., :2][k[..., 2] > score_threshold]
    if pts.size == 0:
        return None
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    mx, my = margin * (x1 - x0 + 1), margin * (y1 - y0 + 1)
    H, W = size_hw
    box = (int(max(0, math.floor(y0 - my))), int(max(0, math.floor(x0 - mx))),
           int(min(H, math.ceil(y1 + my) + 1)), int(min(W, math.ceil(x1 + mx) + 1)))
    return box if box[2] > box[0] and box[3] > box[1] else None


def box_mask(box: tuple[int, int, int, int] | None, size_hw: tuple[int, int]) -> np.ndarray:
    """(H, W) bool mask, True inside the (y0, x0, y1, x1) box (all False for None)."""
    m = np.zeros(size_hw, bool)
    if box is not None:
        m[box[0]:box[2], box[1]:box[3]] = True
    return m


def crop_resize(frame: np.ndarray, box: tuple[int, int, int, int], size_hw=(64, 64)) -> np.ndarray:
    """Crop (y0, x0, y1, x1) and resize to ``size_hw`` (H, W) with area interpolation."""
    import cv2

    y0, x0, y1, x1 = box
    return cv2.resize(np.ascontiguousarray(frame[y0:y1, x0:x1]), (size_hw[1], size_hw[0]),
                      interpolation=cv2.INTER_AREA)


def histogram_similarity(a: np.ndarray, b: np.ndarray, bins: int = 8) -> float:
    """Colour-histogram intersection of two RGB crops (bins³ joint histogram), in [0, 1]."""
    def hist(x):
        q = (np.asarray(x, np.int64).reshape(-1, 3) * bins) // 256
        h = np.bincount((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2], minlength=bins ** 3)
        return h / max(1, h.sum())
    return float(np.minimum(hist(a), hist(b)).sum())


def flicker(frames: np.ndarray, mask: np.ndarray) -> float:
    """Mean |frame_t − frame_{t−1}| (0-255) over the masked static pixels, all channels, all t.

    frames: (T, H, W, 3); mask: (H, W) bool, e.g. the background outside every frame's person box.
    A simple, warping-free temporal-consistency proxy: the background should not change. NaN for
    T < 2 or an empty mask.
    """
    f = np.asarray(frames)
    if f.shape[0] < 2 or not mask.any():
        return float("nan")
    tot, n = 0.0, 0
    for t in range(1, f.shape[0]):
        d = np.abs(f[t][mask].astype(np.int16) - f[t - 1][mask].astype(np.int16))
        tot += float(d.sum())
        n += d.size
    return tot / n
