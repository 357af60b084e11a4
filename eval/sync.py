"""Audio-motion synchrony: Beat Alignment Score and keypoint lip sync, with chance controls.

Pure numpy: poses and audio envelopes in, numbers out. The audio side (onset frames, log-RMS
envelope) comes from :mod:`csg.features`; the callers pass arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from csg import keypoints as K

# Upper body (shoulders, elbows, wrists) + both hands: the joints whose speed minima are gesture beats.
BEAT_JOINTS = np.concatenate([
    np.array([K.LEFT_SHOULDER, K.RIGHT_SHOULDER, K.LEFT_ELBOW, K.RIGHT_ELBOW, K.LEFT_WRIST,
              K.RIGHT_WRIST]),
    np.arange(K.NUM_KEYPOINTS)[K.HANDS],
])


def joint_speed(xy: np.ndarray, *, joints: np.ndarray = BEAT_JOINTS,
                scale: float | np.ndarray = 1.0, smooth_sigma: float = 1.0) -> np.ndarray:
    """Mean speed of ``joints`` per frame, Gaussian-smoothed.

    xy: (T, 133, 2) pixels; scale: a length (e.g. the torso size) that speeds are divided by.
    Returns (T,) in scale units per frame; frame t holds the speed between t-1 and t (frame 0 copies
    frame 1, so indices line up with frames). ``smooth_sigma`` is in frames (0: no smoothing).
    """
    from scipy.ndimage import gaussian_filter1d

    p = np.asarray(xy, np.float64)[:, joints] / np.asarray(scale, np.float64)
    if p.shape[0] < 2:
        return np.zeros(p.shape[0])
    v = np.linalg.norm(np.diff(p, axis=0), axis=-1).mean(axis=-1)
    v = np.concatenate([v[:1], v])
    return gaussian_filter1d(v, smooth_sigma, mode="nearest") if smooth_sigma > 0 else v


def kinematic_beats(speed: np.ndarray, *, min_prominence: float = 0.0) -> np.ndarray:
    """Frames that are strict local minima of ``speed`` (T,) (AIST++ kinematic beats).

    A minimum is kept when it is lower than both neighbours (plateaus count once, at their first
    frame) and, if ``min_prominence`` > 0, at least that much below the lower of the two maxima
    around it, so that sensor-noise wiggles of a still pose are not counted as beats.
    Returns an int64 array of frame indices, ascending.
    """
    s = np.asarray(speed, np.float64)
    if s.size < 3:
        return np.zeros(0, np.int64)
    from scipy.signal import find_peaks

    peaks, _ = find_peaks(-s, prominence=min_prominence if min_prominence > 0 else None)
    return peaks.astype(np.int64)


def beat_alignment_score(kin_beats: np.ndarray, audio_beats: np.ndarray, sigma: float) -> float:
    """Beat Alignment Score (AIST++, Li et al. 2021), averaged over kinematic beats t_k:

    BAS = mean_k exp(−min_a (t_k − t_a)² / (2σ²)).

    kin_beats, audio_beats: frame indices (or seconds, with sigma in the same unit). Returns a value
    in [0, 1]; 1 when every kinematic beat sits on an audio onset. NaN when either set is empty.
    """
    k = np.asarray(kin_beats, np.float64).ravel()
    a = np.asarray(audio_beats, np.float64).ravel()
    if k.size == 0 or a.size == 0:
        return float("nan")
    d = np.abs(k[:, None] - a[None, :]).min(axis=1)
    return float(np.exp(-(d ** 2) / (2.0 * sigma ** 2)).mean())


@dataclass(frozen=True)
class LagCorrelation:
    """Result of :func:`lagged_correlation`.

    r: Pearson r at the best lag; offset: that lag in frames; positive means the mouth LEADS the audio
    (mouth[t] matches audio[t + offset]). lags / rs: every lag tried and its r.
    """

    r: float
    offset: int
    lags: np.ndarray
    rs: np.ndarray


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-12 else float("nan")


def lagged_correlation(mouth: np.ndarray, audio: np.ndarray, max_lag: int = 4) -> LagCorrelation:
    """Pearson r between ``mouth`` (T,) and ``audio`` (T,) at every lag in [-max_lag, max_lag].

    r(k) = corr(mouth[t], audio[t + k]) over the frames where both exist; the best lag maximises r
    (mouth opening should rise with loudness, so a negative r is not a match). Sign convention:
    positive offset = mouth leads audio by that many frames. A constant signal gives NaN.
    """
    m = np.asarray(mouth, np.float64).ravel()
    a = np.asarray(audio, np.float64).ravel()
    if m.shape != a.shape:
        raise ValueError(f"mouth {m.shape} and audio {a.shape} must have the same length")
    T = m.size
    lags = np.arange(-max_lag, max_lag + 1)
    rs = np.full(lags.size, np.nan)
    for i, k in enumerate(lags):
        if T - abs(k) < 3:
            continue
        rs[i] = _pearson(m[max(0, -k):T - max(0, k)], a[max(0, k):T - max(0, -k)])
    if np.isnan(rs).all():
        return LagCorrelation(float("nan"), 0, lags, rs)
    best = int(np.nanargmax(rs))
    return LagCorrelation(float(rs[best]), int(lags[best]), lags, rs)


def circular_shift_control(signal: np.ndarray, shift: int | None = None) -> np.ndarray:
    """The signal rolled by ``shift`` frames (default T // 2): a chance-level audio for controls."""
    s = np.asarray(signal)
    return np.roll(s, s.shape[0] // 2 if shift is None else shift, axis=0)


def fit_length(signal: np.ndarray, T: int) -> np.ndarray:
    """Crop or tile ``signal`` (N, ...) along axis 0 to exactly T frames (for other-file controls)."""
    s = np.asarray(signal)
    if s.shape[0] == 0:
        raise ValueError("cannot fit an empty signal")
    reps = -(-T // s.shape[0])
    return np.concatenate([s] * reps, axis=0)[:T]
