"""Fréchet distance between two Gaussians fitted to feature sets (FGD, FID, FVD share this).

d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½)   (Heusel et al. 2017, FID; Dowson & Landau 1982)

Only comparable between runs that use the same feature extractor and the same normalisation.
"""
from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of ``features`` (N, D), N >= 2, in float64.

    The covariance is the unbiased sample covariance (``np.cov``, ddof=1), as in pytorch-fid.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape (N>=2, D), got {f.shape}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    mu: (D,); sigma: (D, D). Numerically careful in the pytorch-fid way: if the matrix square root
    of sigma1 @ sigma2 is singular or not finite, ``eps`` is added to both diagonals and it is
    recomputed; a tiny imaginary part from round-off is dropped (a large one raises). The result is
    set to 0 when it is below 1e-12 of the total variance (round-off: identical sets give ±1e-13).
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs "
                         f"{s2.shape}")
    diff = mu1 - mu2
    import warnings

    with warnings.catch_warnings():  # singular products are handled below, not just warned about
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        logger.warning("sqrtm of the covariance product is singular; adding %g to the diagonals",
                       eps)
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(covmean.imag).max()
        scale = max(1.0, float(np.abs(covmean.real).max()))
        if imag > 1e-3 * scale:
            raise ValueError(f"sqrtm gave a large imaginary component ({imag:g}); the covariances "
                             "are badly conditioned (too few samples for the feature size?)")
        covmean = covmean.real
    scale = float(diff @ diff + np.trace(s1) + np.trace(s2))
    d2 = scale - 2.0 * float(np.trace(covmean))
    return 0.0 if d2 < 1e-12 * max(scale, 1.0) else d2  # round-off of identical sets reads as 0


def frechet_distance_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between two feature sets a (N, D) and b (M, D)."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
