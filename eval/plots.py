"""Report figures (matplotlib, Agg backend, imported lazily). Each function writes one PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_lipsync(path: Path, mouth: np.ndarray, envelope: np.ndarray, fps: float, *,
                 title: str = "", offset: int | None = None, r: float | None = None) -> None:
    """Mouth opening (T,) over the audio log-RMS envelope (T,) in dB, both against seconds."""
    plt = _pyplot()
    t = np.arange(len(mouth)) / fps
    fig, ax = plt.subplots(figsize=(9, 3), dpi=100)
    ax.plot(t, envelope, color="0.6", lw=1, label="audio log-RMS (dB)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("dB")
    ax2 = ax.twinx()
    ax2.plot(t, mouth, color="C3", lw=1.2, label="mouth opening")
    ax2.set_ylabel("mouth opening / face height")
    extra = f"  r={r:.3f} at offset {offset:+d} frames (+ = mouth leads)" if r is not None \
        and offset is not None and np.isfinite(r) else ""
    ax.set_title((title + extra).strip(), fontsize=9)
    fig.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_beats(path: Path, speed: np.ndarray, kin_beats: np.ndarray, onsets: np.ndarray,
               fps: float, *, title: str = "") -> None:
    """Joint speed with kinematic beats (dots on the curve) and audio onsets (vertical lines)."""
    plt = _pyplot()
    t = np.arange(len(speed)) / fps
    fig, ax = plt.subplots(figsize=(9, 3), dpi=100)
    for i, a in enumerate(np.asarray(onsets)):
        ax.axvline(a / fps, color="C0", alpha=0.35, lw=1, label="audio onsets" if i == 0 else None)
    ax.plot(t, speed, color="0.3", lw=1, label="upper-body+hands speed (torso/frame)")
    kb = np.asarray(kin_beats, int)
    ax.plot(kb / fps, speed[kb], "o", color="C3", ms=4, label="kinematic beats")
    ax.set_xlabel("seconds")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_region_bars(path: Path, values: dict[str, dict[str, float]], *, title: str = "",
                     ylabel: str = "PCK") -> None:
    """Grouped bars: ``values[series][region]`` (e.g. {"pck@0.05": {"body": .9, ...}, ...})."""
    plt = _pyplot()
    series = list(values)
    regions = list(dict.fromkeys(r for s in series for r in values[s]))
    x = np.arange(len(regions))
    w = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    for i, s in enumerate(series):
        ys = [values[s].get(r, np.nan) for r in regions]
        ax.bar(x + (i - (len(series) - 1) / 2) * w, np.nan_to_num(ys), w, label=s)
    ax.set_xticks(x, regions)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
