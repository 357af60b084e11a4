"""Overlapping temporal windows, carried (known) frames and blend weights, for any stage.

A long sequence of ``num_frames`` frames is generated window by window, memory bounded by
``window``. Two ways to join windows, both supported here:

- **carry** (stage 1, CSG / PAHA long-video generation): each window after the first starts
  ``overlap`` frames before the previous one ends and takes those frames as known values
  (:class:`csg.diffusion.sampling.Known`), so it continues the motion with no seam; only its new
  frames are kept. :func:`plan_windows` gives each window's ``carried`` count.
- **blend** (MultiDiffusion-style averaging, Bar-Tal et al. 2023, Eq. 3-5): overlapping windows are
  generated independently and averaged with :func:`blend_weights`, linear ramps across each
  overlap that sum to 1 frame by frame; :func:`blend_windows` does the weighted sum.

Pure numpy / integer maths; no model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class Window:
    """Frames ``start:stop`` of the whole sequence; the first ``carried`` of them are known
    (taken from the previous window); ``index``: 0-based position in the plan."""

    index: int
    start: int
    stop: int
    carried: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def new(self) -> slice:
        """The frames this window contributes, as a slice of the whole sequence."""
        return slice(self.start + self.carried, self.stop)


def window_spans(num_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Cover ``num_frames`` with windows of ``window`` frames, each after the first starting
    ``overlap`` frames before the previous one ends. Returns [(start, stop), ...]; the last window is
    shortened to end at ``num_frames`` (so it has at least ``overlap + 1`` frames).
    0 <= overlap < window."""
    if not 0 <= overlap < window:
        raise ValueError(f"need 0 <= overlap < window, got overlap={overlap}, window={window}")
    if num_frames <= window:
        return [(0, num_frames)]
    spans, start = [], 0
    while True:
        stop = min(start + window, num_frames)
        spans.append((start, stop))
        if stop == num_frames:
            return spans
        start = stop - overlap  # leaves num_frames - start > overlap frames, so >= 1 new frame


def plan_windows(num_frames: int, window: int, overlap: int) -> list[Window]:
    """:func:`window_spans` with the carried-frame count of each window: 0 for the first, else
    ``min(overlap, length - 1)`` (every window adds at least one new frame)."""
    return [Window(i, a, b, 0 if i == 0 else min(overlap, b - a - 1))
            for i, (a, b) in enumerate(window_spans(num_frames, window, overlap))]


def chunk_bounds(num_frames: int, chunk: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(num_frames)`` in disjoint chunks of at most
    ``chunk`` (streaming granularity, no overlap)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return [(a, min(a + chunk, num_frames)) for a in range(0, num_frames, chunk)]


def blend_weights(spans: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Per-window frame weights (float64 (stop - start,)) that sum to 1 on every covered frame.

    Where two consecutive windows overlap by k frames, the earlier one ramps down
    (k/(k+1), ..., 1/(k+1)) and the later one up (1/(k+1), ..., k/(k+1)); elsewhere a window has
    weight 1. Spans must be sorted, each overlapping at most its neighbours.
    """
    ws = [np.ones(b - a) for a, b in spans]
    for j in range(1, len(spans)):
        (a0, b0), (a1, b1) = spans[j - 1], spans[j]
        if a1 < a0 or (j >= 2 and a1 < spans[j - 2][1]):
            raise ValueError(f"spans must be sorted and overlap only neighbours, got {list(spans)}")
        k = max(0, min(b0, b1) - a1)
        if k:
            up = np.arange(1, k + 1) / (k + 1)
            ws[j][:k] *= up
            ws[j - 1][a1 - a0:a1 - a0 + k] *= up[::-1]
    return ws


def blend_windows(chunks: Iterable[np.ndarray], spans: Sequence[tuple[int, int]],
                  num_frames: int | None = None) -> np.ndarray:
    """Weighted sum of per-window arrays (each (stop - start, ...)) with :func:`blend_weights`.

    Returns (num_frames, ...) float64; frames no window covers are 0.
    """
    chunks = [np.asarray(c, np.float64) for c in chunks]
    if len(chunks) != len(spans):
        raise ValueError(f"{len(chunks)} chunks for {len(spans)} spans")
    n = max(b for _, b in spans) if num_frames is None else num_frames
    out = np.zeros((n,) + chunks[0].shape[1:])
    for c, (a, b), w in zip(chunks, spans, blend_weights(spans)):
        if c.shape[0] != b - a:
            raise ValueError(f"chunk of {c.shape[0]} frames for span {(a, b)}")
        out[a:b] += c * w.reshape((-1,) + (1,) * (c.ndim - 1))
    return out
