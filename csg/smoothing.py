"""Keypoint smoothing: the low-latency One-Euro filter per body region, and Savitzky-Golay in numpy.

One-Euro filter (Casiez, Roussel, Vogel, "1€ Filter: A Simple Speed-based Low-pass Filter for
Noisy Input in Interactive Systems", CHI 2012, Eq. 1-5 / Algorithm 1): a first-order low-pass
whose cut-off rises with the (low-passed) speed,

    alpha(fc) = 1 / (1 + tau / T_e),   tau = 1 / (2 pi fc),   T_e = 1 / rate          (Eq. 1-2)
    dx_t     = (x_t - xhat_{t-1}) * rate,   dxhat_t = dxhat_{t-1} + alpha(d_cutoff) (dx_t - dxhat_{t-1})
    fc_t     = min_cutoff + beta * |dxhat_t|                                           (Eq. 5)
    xhat_t   = xhat_{t-1} + alpha(fc_t) (x_t - xhat_{t-1})

so slow motion (where jitter shows) is filtered at ``min_cutoff`` and fast motion passes with little
lag. It is causal (no look-ahead), so it runs on a stream. Here ``|dxhat|`` is the 2D speed of each
keypoint in ``scale`` units per second (the reference torso size), so ``beta`` does not depend on the
image size. The first frame passes unchanged (frame 0 of a generated sequence is the reference).

Cut-offs per region (:data:`REGION_CUTOFFS`, chosen on the synthetic validation split and checked
on real speech, see docs/audio2pose.md): body and feet 1.2 Hz, hands 1.5 Hz (beta 2.0 / 2.0 per
torso-unit/s), face 4 Hz with beta 1.0 (the mouth moves at syllable rate, 3-7 Hz; a lower face
cut-off costs lip sync).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import keypoints as K


@dataclass(frozen=True)
class OneEuro:
    """Parameters of one region's filter (Hz, and Hz per scale-unit/s for ``beta``)."""

    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0


REGION_CUTOFFS: dict[str, OneEuro] = {
    "body": OneEuro(min_cutoff=1.2, beta=2.0),
    "hands": OneEuro(min_cutoff=1.5, beta=2.0),
    "face": OneEuro(min_cutoff=4.0, beta=1.0),
}


def _alpha(cutoff: np.ndarray | float, rate: float) -> np.ndarray:
    tau = 1.0 / (2 * np.pi * np.asarray(cutoff, np.float64))
    return 1.0 / (1.0 + tau * rate)


def one_euro(x: np.ndarray, rate: float, params: OneEuro = OneEuro(), *,
             scale: float = 1.0) -> np.ndarray:
    """One-Euro filter of ``x`` (T, J, D) along time at ``rate`` Hz, each point's D coordinates
    sharing one speed-adaptive cut-off. ``scale``: length unit of the speed in ``beta``.
    Returns a new float64 array; ``out[0] == x[0]``."""
    x = np.asarray(x, np.float64)
    if x.ndim != 3:
        raise ValueError(f"expected (T, J, D), got {x.shape}")
    return one_euro_groups(x, rate, [(np.arange(x.shape[1]), params)], scale=scale)


def one_euro_groups(x: np.ndarray, rate: float, groups: list[tuple[np.ndarray, OneEuro]], *,
                    scale: float = 1.0) -> np.ndarray:
    """:func:`one_euro` of the points ``idx`` of ``x`` (T, J, D) with ``params``, for each
    ``(idx, params)`` in ``groups`` (disjoint), in one pass over time (the per-frame cost is the
    same for one point or a hundred); points in no group are copied. The groups must share
    ``d_cutoff``. Returns a new float64 array, frame 0 unchanged."""
    x = np.asarray(x, np.float64)
    if x.ndim != 3:
        raise ValueError(f"expected (T, J, D), got {x.shape}")
    if rate <= 0 or scale <= 0:
        raise ValueError("rate and scale must be positive")
    out = x.copy()
    if x.shape[0] == 1 or not groups:
        return out
    if len({g.d_cutoff for _, g in groups}) != 1:
        raise ValueError("one_euro_groups: the groups must share d_cutoff")
    idx = np.concatenate([np.asarray(i, np.int64).reshape(-1) for i, _ in groups])
    if np.unique(idx).size != idx.size:
        raise ValueError("one_euro_groups: a point is in two groups")
    per = lambda f: np.concatenate([np.full(np.size(i), f(g), np.float64)  # noqa: E731
                                    for i, g in groups])[:, None]
    min_cutoff, beta_s = per(lambda g: g.min_cutoff), per(lambda g: g.beta) / scale
    a_d = float(_alpha(groups[0][1].d_cutoff, rate))
    xs = x[:, idx]
    ys = np.empty_like(xs)
    ys[0] = xs[0]
    # alpha(min_cutoff + beta * |dx_hat| / scale) written out: a frame costs a few small array
    # operations whatever the number of points (this runs on every generated frame)
    two_pi = 2 * np.pi
    dx_hat = np.zeros(xs.shape[1:])
    speed = np.empty(xs.shape[1:-1] + (1,))
    for t in range(1, xs.shape[0]):
        diff = xs[t] - ys[t - 1]
        dx_hat += a_d * (diff * rate - dx_hat)
        np.sqrt(np.einsum("jd,jd->j", dx_hat, dx_hat), out=speed[..., 0])
        a = 1.0 / (1.0 + (1.0 / (two_pi * (min_cutoff + beta_s * speed))) * rate)
        ys[t] = ys[t - 1] + a * diff
    out[:, idx] = ys
    return out


def one_euro_regions(xy: np.ndarray, fps: float, *, scale: float | None = None,
                     cutoffs: dict[str, OneEuro] = REGION_CUTOFFS) -> np.ndarray:
    """Per-region One-Euro filter of (T, 133, 2) keypoints at ``fps``: ``cutoffs['body']`` on body
    and feet, ``'hands'`` on both hands, ``'face'`` on the 68 face points. ``scale``: the torso size
    in pixels (default: of frame 0). Returns (T, 133, 2) float64, frame 0 unchanged."""
    xy = np.asarray(xy, np.float64)
    if xy.ndim != 3 or xy.shape[1:] != (K.NUM_KEYPOINTS, 2):
        raise ValueError(f"expected (T, 133, 2), got {xy.shape}")
    if scale is None:
        scale = float(K.torso_size(xy[0]))
    groups = [(K.indices(*g), cutoffs[name]) for name, g in
              (("body", (K.BODY, K.FEET)), ("hands", (K.HANDS,)), ("face", (K.FACE,)))
              if name in cutoffs]
    if len({g.d_cutoff for _, g in groups}) > 1:  # one pass needs one derivative cut-off
        out = xy.copy()
        for idx, g in groups:
            out[:, idx] = one_euro(xy[:, idx], fps, g, scale=scale)
        return out
    return one_euro_groups(xy, fps, groups, scale=scale)


def ease_from(xy: np.ndarray, ref_xy: np.ndarray, frames: int) -> np.ndarray:
    """Start exactly at the reference and ease out of it: for t < ``frames``,
    ``out[t] = ref + e(t) (xy[t] - ref)`` with the cosine ease ``e(t) = (1 - cos(pi t / frames)) / 2``
    (0 at t = 0, zero slope there, 1 from t = frames on). xy: (T, J, 2); ref_xy: (J, 2).
    ``frames`` <= 1 returns a copy with only frame 0 set to the reference."""
    xy = np.array(xy, np.float64, copy=True)
    ref = np.asarray(ref_xy, np.float64)
    n = min(max(int(frames), 1), xy.shape[0])
    e = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / max(int(frames), 1))
    xy[:n] = ref[None] + e[:, None, None] * (xy[:n] - ref[None])
    return xy



def savgol_matrix(window: int, order: int) -> np.ndarray:
    """The Savitzky-Golay hat matrix (window, window) for an odd ``window`` > ``order``: row i gives
    the value at position i of the degree-``order`` least-squares polynomial fitted to ``window``
    samples (Savitzky & Golay 1964; ``H = A pinv(A)`` with A the Vandermonde matrix of the centred
    positions). The middle row is the smoothing kernel; the first and last rows are the edge fits."""
    if window % 2 != 1 or order >= window or order < 0:
        raise ValueError(f"need an odd window > order >= 0, got window {window}, order {order}")
    pos = np.arange(window, dtype=np.float64) - window // 2
    A = pos[:, None] ** np.arange(order + 1)[None]
    return A @ np.linalg.pinv(A)


def savgol(x: np.ndarray, window: int, order: int) -> np.ndarray:
    """Savitzky-Golay smoothing of ``x`` along axis 0 in numpy, the same numbers (to rounding) as
    ``scipy.signal.savgol_filter(x, window, order, axis=0)`` with its default ``mode="interp"``:
    inside, the least-squares polynomial of each centred ``window``; in the first and last
    ``window // 2`` samples, the polynomial fitted to the first / last ``window`` samples.
    Needs ``order < window <= len(x)``; an even ``window`` goes to scipy. Returns float64."""
    x = np.asarray(x, np.float64)
    window, order = int(window), int(order)
    if window % 2 == 0:
        from scipy.signal import savgol_filter

        return savgol_filter(x, window, order, axis=0)
    T = x.shape[0]
    if window > T:
        raise ValueError(f"window {window} is longer than the {T} samples")
    H = savgol_matrix(window, order)
    h = window // 2
    flat = x.reshape(T, -1)
    out = np.empty_like(flat)
    # inside: out[i] = sum_k H[h, k] x[i - h + k]
    out[h:T - h] = sum(H[h, k] * flat[k:T - window + 1 + k] for k in range(window))
    if h:
        out[:h] = H[:h] @ flat[:window]
        out[T - h:] = H[window - h:] @ flat[T - window:]
    return out.reshape(x.shape)
