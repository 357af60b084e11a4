"""Audio augmentation for the synthetic-to-real gap: pure functions of (wav, generator).

No speed/rate perturbation: it would change the frame count, and the poses would have to be
resampled with it; the windows of :class:`csg.data.dataset.PoseWindowDataset` stay exact instead.
"""
from __future__ import annotations

import numpy as np


def add_noise(wav: np.ndarray, snr_db: float, generator: np.random.Generator) -> np.ndarray:
    """White noise at ``snr_db`` relative to the signal power. (N,) -> (N,) float32."""
    p = float(np.mean(np.asarray(wav, np.float64) ** 2)) + 1e-12
    noise = generator.normal(0, np.sqrt(p / 10 ** (snr_db / 10)), wav.shape)
    return (wav + noise).astype(np.float32)


def reverb(wav: np.ndarray, sr: int, rt60: float, generator: np.random.Generator,
           wet: float = 0.4) -> np.ndarray:
    """Convolve with an exponentially decaying noise impulse (-60 dB after ``rt60`` s); the direct
    path is kept, the tail mixed at ``wet`` and trimmed to the input length."""
    from scipy.signal import fftconvolve

    n = max(1, int(rt60 * sr))
    ir = generator.normal(0, 1, n) * np.exp(-6.9 * np.arange(n) / n)
    ir /= np.sqrt(np.sum(ir ** 2)) + 1e-12
    tail = fftconvolve(wav, ir)[: len(wav)]
    out = (1 - wet) * wav + wet * tail
    return out.astype(np.float32)


def augment_audio(wav: np.ndarray, sr: int, generator: np.random.Generator) -> np.ndarray:
    """The training augmentation: reverb (p=0.5, RT60 0.1-0.6 s), noise (p=0.7, SNR 5-30 dB),
    gain (-12..+6 dB, clipped to [-1, 1])."""
    g = generator
    out = np.asarray(wav, np.float32)
    if g.random() < 0.5:
        out = reverb(out, sr, g.uniform(0.1, 0.6), g)
    if g.random() < 0.7:
        out = add_noise(out, g.uniform(5, 30), g)
    out = out * 10 ** (g.uniform(-12, 6) / 20)
    return np.clip(out, -1, 1).astype(np.float32)
