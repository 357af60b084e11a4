"""Generated skeletons against the same speaker's real motion (``csg eval motion``).

Pure numpy measures on (T, 133, 3) COCO-WholeBody sequences (x, y pixels, score). Lengths are in
**shoulder widths** (sw) of the reference skeleton (the photo: frame 0 of the real clip), speeds in
sw per second, so a generated sequence (on the photo's canvas) and the real one (the video's
pixels) compare directly. The real sequence is resampled to the generated frame rate first
(:func:`resample`, linear), because frame-level measures (jitter) depend on the rate.

Measures of one sequence (:func:`motion_stats`):

* ``jitter``: mean raw wrist speed over the mean speed after a centred 5-frame moving average
  (:func:`moving_average`); 1 for a smooth motion, large for frame-to-frame noise. Elbows alike
  (``jitter_elbow``).
* ``wrist_speed``, ``elbow_speed``, ``head_speed``, ``torso_speed``: mean speed of the
  5-frame-averaged trajectories (head: nose, eyes, ears centre; torso: shoulder centre).
* ``wrist_range``: 5-95 percentile spread of each wrist coordinate, mean of x and y and both wrists.
* ``elbow_spread``: median over frames of |x_left_elbow - x_right_elbow| / sw; ``hand_height``:
  median of (shoulder-centre y - wrist y) / sw over both wrists (up = positive).
* ``startup_jump``: the largest arm step (elbows + wrists, mean point distance) among the first
  3 frame-to-frame steps, with the reference pose as frame 0; ``startup_offset``: arms' mean
  distance from the reference pose at frame 3. ``step_p95`` / ``step_mean``: the same arm step over
  the whole sequence (what "ordinary" frame-to-frame motion is for this speaker).
* ``mouth_mean``, ``mouth_std``: inner-lip opening over face height (:func:`csg.keypoints.mouth_opening`);
  ``lip_width_std`` (mouth-corner distance / face height) and ``width_opening_r`` (correlation
  of width with opening: -1..1; near +-1 = one degree of freedom, a loudness meter).
* ``periodicity``: the highest autocorrelation of the smoothed wrist speed at lags 0.3-3 s, and
  that lag (``period_s``); near 1 = a metronome, real speakers are irregular.

:func:`compare_motion` puts a generated and a real sequence side by side: like-for-like ratios
(generated / real: 1 when a sequence is compared with itself), posture offsets (generated minus
real, and relative to the reference photo's own posture) and the acceptance checks of issue #14.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from csg import keypoints as K

ARMS = np.array([K.LEFT_ELBOW, K.RIGHT_ELBOW, K.LEFT_WRIST, K.RIGHT_WRIST])
WRISTS = np.array([K.LEFT_WRIST, K.RIGHT_WRIST])
ELBOWS = np.array([K.LEFT_ELBOW, K.RIGHT_ELBOW])
HEAD = np.array([K.NOSE, K.LEFT_EYE_C, K.RIGHT_EYE_C, K.LEFT_EAR, K.RIGHT_EAR])
SHOULDERS = np.array([K.LEFT_SHOULDER, K.RIGHT_SHOULDER])
MOUTH_LEFT, MOUTH_RIGHT = K.OUTER_LIPS.start + 6, K.OUTER_LIPS.start  # iBUG 54, 48


@dataclass(frozen=True)
class MotionSettings:
    """Knobs of the measures (defaults are the issue-#14 protocol)."""

    smooth: int = 5                  # moving-average window (frames) for jitter and smoothed speeds
    score_threshold: float = 0.3     # points below it are missing
    startup_frames: int = 3          # steps checked for a start-up jump
    period_min_s: float = 0.3        # autocorrelation lag range for periodicity
    period_max_s: float = 3.0


# --- small pure helpers ---------------------------------------------------------------------------

def moving_average(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average of ``x`` (T, ...) along axis 0, window ``n`` (odd), edge-padded so
    the length stays T and a constant stays exactly constant."""
    x = np.asarray(x, np.float64)
    if n <= 1 or x.shape[0] < 2:
        return x.copy()
    h = n // 2
    pad = np.concatenate([np.repeat(x[:1], h, 0), x, np.repeat(x[-1:], h, 0)], 0)
    c = np.cumsum(np.concatenate([np.zeros_like(x[:1]), pad], 0), axis=0)
    return (c[n:] - c[:-n])[: x.shape[0]] / n


def resample(kp: np.ndarray, fps_from: float, fps_to: float) -> np.ndarray:
    """(T, J, C) sampled at ``fps_from`` -> linear interpolation at ``fps_to`` over the same span
    (frame i at i / fps). Returns a copy when the rates agree."""
    kp = np.asarray(kp, np.float64)
    if abs(fps_from - fps_to) < 1e-6 or kp.shape[0] < 2:
        return kp.copy()
    T = kp.shape[0]
    n = max(1, int(np.floor((T - 1) / fps_from * fps_to)) + 1)
    t = np.arange(n) / fps_to * fps_from
    i0 = np.clip(np.floor(t).astype(int), 0, T - 1)
    i1 = np.clip(i0 + 1, 0, T - 1)
    w = (t - i0)[:, None, None]
    return (1 - w) * kp[i0] + w * kp[i1]


def shoulder_width(xy: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(...,) distance between the shoulders of (..., 133, 2)."""
    return np.maximum(np.linalg.norm(xy[..., K.LEFT_SHOULDER, :] - xy[..., K.RIGHT_SHOULDER, :],
                                     axis=-1), eps)


def _valid(kp: np.ndarray, joints: np.ndarray, thr: float) -> np.ndarray:
    return (kp[:, joints, 2] > thr)


def _mean_speed(xy: np.ndarray, valid: np.ndarray, fps: float, unit: float) -> float:
    """Mean |dx| per second over (T, J, 2) where both frames are valid; NaN when none is."""
    if xy.shape[0] < 2:
        return float("nan")
    d = np.linalg.norm(np.diff(xy, axis=0), axis=-1)  # (T-1, J)
    ok = valid[1:] & valid[:-1]
    return float(d[ok].mean() * fps / unit) if ok.any() else float("nan")


def _centre(xy: np.ndarray, joints: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 1, 2) mean of the valid ``joints`` per frame, (T, 1) validity (all of them valid)."""
    return xy[:, joints].mean(1, keepdims=True), valid.all(1, keepdims=True)


def _autocorr_peak(x: np.ndarray, lo: int, hi: int) -> tuple[float, int]:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    x = x - x.mean() if x.size else x
    den = float((x * x).sum())
    if x.size < hi + 2 or den <= 1e-12 or hi < lo:
        return float("nan"), 0
    ac = np.array([float((x[:-k] * x[k:]).sum()) / den for k in range(lo, hi + 1)])
    k = int(np.argmax(ac))
    return float(ac[k]), lo + k


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-12 else float("nan")


# --- one sequence ---------------------------------------------------------------------------------

def motion_stats(kp: np.ndarray, fps: float, ref: np.ndarray | None = None,
                 cfg: MotionSettings = MotionSettings()) -> dict[str, float]:
    """Every per-sequence measure (see the module doc) of ``kp`` (T, 133, 3) at ``fps``.

    ref: (133, 3) reference pose (default: frame 0); its shoulder width is the unit.
    """
    kp = np.asarray(kp, np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (K.NUM_KEYPOINTS, 3):
        raise ValueError(f"expected (T, 133, 3) keypoints, got {kp.shape}")
    ref = kp[0] if ref is None else np.asarray(ref, np.float64)
    unit = float(shoulder_width(ref[:, :2]))
    xy, thr, n = kp[..., :2], cfg.score_threshold, cfg.smooth
    sm = moving_average(xy, n)
    out: dict[str, float] = {"frames": float(kp.shape[0]), "fps": float(fps), "unit_px": unit}

    vw, ve = _valid(kp, WRISTS, thr), _valid(kp, ELBOWS, thr)
    raw_w, sm_w = _mean_speed(xy[:, WRISTS], vw, fps, unit), _mean_speed(sm[:, WRISTS], vw, fps, unit)
    raw_e, sm_e = _mean_speed(xy[:, ELBOWS], ve, fps, unit), _mean_speed(sm[:, ELBOWS], ve, fps, unit)
    out["jitter"] = raw_w / sm_w if sm_w > 0 else float("nan")
    out["jitter_elbow"] = raw_e / sm_e if sm_e > 0 else float("nan")
    out["wrist_speed"], out["elbow_speed"] = sm_w, sm_e
    out["wrist_speed_raw"] = raw_w
    hc, hv = _centre(sm, HEAD, _valid(kp, HEAD, thr))
    out["head_speed"] = _mean_speed(hc, hv, fps, unit)
    tc, tv = _centre(sm, SHOULDERS, _valid(kp, SHOULDERS, thr))
    out["torso_speed"] = _mean_speed(tc, tv, fps, unit)

    rng = []
    for j in WRISTS:
        ok = kp[:, j, 2] > thr
        if ok.sum() >= 2:
            p = np.percentile(xy[ok, j], [5, 95], axis=0)
            rng.append((p[1] - p[0]).mean() / unit)
    out["wrist_range"] = float(np.mean(rng)) if rng else float("nan")

    sh_y = xy[:, SHOULDERS, 1].mean(1)
    ok_e = ve.all(1)
    spread = np.abs(xy[:, K.LEFT_ELBOW, 0] - xy[:, K.RIGHT_ELBOW, 0]) / unit
    out["elbow_spread"] = float(np.median(spread[ok_e])) if ok_e.any() else float("nan")
    hh = (sh_y[:, None] - xy[:, WRISTS, 1]) / unit
    out["hand_height"] = float(np.median(hh[vw])) if vw.any() else float("nan")
    out["ref_elbow_spread"] = float(abs(ref[K.LEFT_ELBOW, 0] - ref[K.RIGHT_ELBOW, 0]) / unit)
    out["ref_hand_height"] = float(((ref[SHOULDERS, 1].mean() - ref[WRISTS, 1]) / unit).mean())

    arms = np.concatenate([ref[None, ARMS, :2], xy[1:, ARMS]], 0)  # frame 0 := the reference
    step = np.linalg.norm(np.diff(arms, axis=0), axis=-1).mean(1) / unit  # (T-1,)
    k = min(cfg.startup_frames, step.size)
    out["startup_jump"] = float(step[:k].max()) if k else float("nan")
    out["startup_offset"] = float(np.linalg.norm(arms[k] - arms[0], axis=-1).mean() / unit) \
        if k else float("nan")
    out["step_mean"] = float(step.mean()) if step.size else float("nan")
    out["step_p95"] = float(np.percentile(step, 95)) if step.size else float("nan")

    face_ok = kp[:, K.FACE, 2].mean(1) > thr
    if face_ok.any():
        mo = K.mouth_opening(xy[face_ok])
        width = (np.linalg.norm(xy[face_ok, MOUTH_LEFT] - xy[face_ok, MOUTH_RIGHT], axis=-1)
                 / np.maximum(K.face_height(xy[face_ok]), 1e-6))
        out["mouth_mean"], out["mouth_std"] = float(mo.mean()), float(mo.std())
        out["lip_width_std"] = float(width.std())
        out["width_opening_r"] = _pearson(width, mo) if mo.size > 2 else float("nan")
    else:
        out.update(mouth_mean=float("nan"), mouth_std=float("nan"), lip_width_std=float("nan"),
                   width_opening_r=float("nan"))

    wspeed = np.linalg.norm(np.diff(sm[:, WRISTS], axis=0), axis=-1).mean(1)
    per, lag = _autocorr_peak(wspeed, max(1, int(round(cfg.period_min_s * fps))),
                              int(round(cfg.period_max_s * fps)))
    out["periodicity"], out["period_s"] = per, lag / fps
    return out


# --- generated vs real ----------------------------------------------------------------------------

RATIOS = ("jitter", "jitter_elbow", "wrist_speed", "elbow_speed", "head_speed", "torso_speed",
          "wrist_range", "mouth_mean", "mouth_std", "lip_width_std", "step_mean")


@dataclass(frozen=True)
class Acceptance:
    """Issue #14's thresholds."""

    jitter_ratio_max: float = 1.3
    head_speed_ratio: tuple = (0.5, 2.0)
    elbow_spread_rel: float = 0.2
    mouth_mean_ratio_max: float = 1.3


def compare_motion(gen: np.ndarray, gen_fps: float, real: np.ndarray, real_fps: float, *,
                   ref: np.ndarray | None = None, cfg: MotionSettings = MotionSettings(),
                   acceptance: Acceptance = Acceptance()) -> dict[str, Any]:
    """Generated (T, 133, 3) vs the same speaker's real motion (T', 133, 3).

    ref: the reference pose (default: the real clip's frame 0). The real sequence is resampled to
    ``gen_fps``. Returns ``{"gen": stats, "real": stats, "ratio": {...}, "offset": {...},
    "checks": {...}}``: ``ratio[k] = gen[k] / real[k]``; ``offset``: ``elbow_spread`` (relative,
    gen / real - 1), ``hand_height`` (gen - real, sw), ``elbow_spread_vs_ref`` (gen median / the
    reference photo's - 1), ``hand_height_vs_ref`` (sw); ``startup_jump_vs_step`` = the start-up
    jump over the real speaker's 95th-percentile frame-to-frame arm step.
    """
    real = np.asarray(real, np.float64)
    ref = real[0] if ref is None else np.asarray(ref, np.float64)
    real_r = resample(real, real_fps, gen_fps)
    g = motion_stats(gen, gen_fps, ref, cfg)
    r = motion_stats(real_r, gen_fps, ref, cfg)

    def ratio(k):
        return g[k] / r[k] if np.isfinite(g[k]) and np.isfinite(r[k]) and r[k] != 0 else float("nan")

    rat = {k: ratio(k) for k in RATIOS}
    off = {"elbow_spread": ratio("elbow_spread") - 1.0,
           "hand_height": g["hand_height"] - r["hand_height"],
           "elbow_spread_vs_ref": g["elbow_spread"] / g["ref_elbow_spread"] - 1.0
           if g["ref_elbow_spread"] > 0 else float("nan"),
           "real_elbow_spread_vs_ref": r["elbow_spread"] / r["ref_elbow_spread"] - 1.0
           if r["ref_elbow_spread"] > 0 else float("nan"),
           "hand_height_vs_ref": g["hand_height"] - g["ref_hand_height"],
           "real_hand_height_vs_ref": r["hand_height"] - r["ref_hand_height"],
           "startup_jump_vs_step": g["startup_jump"] / r["step_p95"] if r["step_p95"] > 0
           else float("nan")}
    a = acceptance
    checks = {"jitter": bool(rat["jitter"] <= a.jitter_ratio_max),
              "head_speed": bool(a.head_speed_ratio[0] <= rat["head_speed"] <= a.head_speed_ratio[1]),
              "elbow_spread": bool(abs(off["elbow_spread_vs_ref"]) <= a.elbow_spread_rel),
              "startup_jump": bool(off["startup_jump_vs_step"] <= 1.0),
              # "within 1.3x" both ways: a mouth opening a third as far fails as one 1.3x too wide
              "mouth_mean": bool(1.0 / a.mouth_mean_ratio_max <= rat["mouth_mean"]
                                 <= a.mouth_mean_ratio_max)}
    return {"gen": g, "real": r, "ratio": rat, "offset": off, "checks": checks,
            "settings": asdict(cfg), "acceptance": asdict(acceptance)}


def series(kp: np.ndarray, fps: float, ref: np.ndarray | None = None,
           cfg: MotionSettings = MotionSettings()) -> dict[str, np.ndarray]:
    """Per-frame curves for plots: smoothed wrist / head speed (sw/s), mouth opening, arm distance
    from the reference (sw)."""
    kp = np.asarray(kp, np.float64)
    ref = kp[0] if ref is None else np.asarray(ref, np.float64)
    unit = float(shoulder_width(ref[:, :2]))
    sm = moving_average(kp[..., :2], cfg.smooth)
    d = np.linalg.norm(np.diff(sm, axis=0), axis=-1) * fps / unit
    return {"wrist_speed": d[:, WRISTS].mean(1), "head_speed": np.linalg.norm(
                np.diff(sm[:, HEAD].mean(1), axis=0), axis=-1) * fps / unit,
            "mouth": K.mouth_opening(kp[..., :2]),
            "arm_from_ref": np.linalg.norm(kp[:, ARMS, :2] - ref[None, ARMS, :2], axis=-1).mean(1)
            / unit,
            "elbow_spread": np.abs(kp[:, K.LEFT_ELBOW, 0] - kp[:, K.RIGHT_ELBOW, 0]) / unit,
            "ref_elbow_spread": float(abs(ref[K.LEFT_ELBOW, 0] - ref[K.RIGHT_ELBOW, 0]) / unit)}


def plot_comparison(path, gen: np.ndarray, gen_fps: float, real: np.ndarray, real_fps: float, *,
                    ref: np.ndarray | None = None, title: str = "",
                    cfg: MotionSettings = MotionSettings()) -> None:
    """One PNG, four panels (wrist speed, head speed, elbow spread, mouth opening), generated vs
    real against seconds (matplotlib imported here)."""
    from eval.plots import _pyplot

    plt = _pyplot()
    real = np.asarray(real, np.float64)
    ref = real[0] if ref is None else ref
    sg = series(gen, gen_fps, ref, cfg)
    sr = series(resample(real, real_fps, gen_fps), gen_fps, ref, cfg)
    fig, axes = plt.subplots(4, 1, figsize=(9, 8), dpi=90, sharex=True)
    for ax, key, lab in zip(axes, ("wrist_speed", "head_speed", "elbow_spread", "mouth"),
                            ("wrist speed (sw/s, 5-frame avg)", "head speed (sw/s)",
                             "elbow spread (sw)", "mouth opening / face h")):
        for s, name, c in ((sr, "real", "0.3"), (sg, "generated", "C3")):
            ax.plot(np.arange(len(s[key])) / gen_fps, s[key], color=c, lw=1, label=name)
        if key == "elbow_spread":
            ax.axhline(sg["ref_elbow_spread"], color="C0", ls="--", lw=1, label="reference photo")
        ax.set_ylabel(lab, fontsize=8)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("seconds")
    axes[0].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --- loading --------------------------------------------------------------------------------------

REAL_KEYS = ("coco_wholebody133_2d", "poses", "keypoints")


def load_motion(path) -> tuple[np.ndarray, float]:
    """(T, 133, 3) float64 and fps from a csg.pose JSON or an npz (``coco_wholebody133_2d`` as in
    ``../shared/data/validation``, or a dataset clip's ``poses``). Raises InputError otherwise."""
    import zipfile
    from pathlib import Path

    from csg.errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file (a skeleton JSON or a keypoint .npz)")
    if p.suffix.lower() == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                key = next((k for k in REAL_KEYS if k in z.files), None)
                if key is None:
                    raise InputError(f"{p}: none of the arrays {', '.join(REAL_KEYS)} "
                                     f"(found {', '.join(z.files)})")
                kp = np.asarray(z[key], np.float64)
                fps = float(z["fps"]) if "fps" in z.files else None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # empty, truncated
            raise InputError(f"{p}: not a readable npz ({str(e) or type(e).__name__})") from None
        if fps is None or not np.isfinite(fps) or fps <= 0:
            raise InputError(f"{p}: no valid 'fps' array")
    else:
        from csg.pose import PoseSequence

        seq = PoseSequence.load(p)
        kp, fps = seq.keypoints.astype(np.float64), seq.fps
    if kp.ndim != 3 or kp.shape[1:] != (K.NUM_KEYPOINTS, 3) or kp.shape[0] < 2:
        raise InputError(f"{p}: expected (T>=2, 133, 3) keypoints, got {kp.shape}")
    if not np.isfinite(kp).all():
        raise InputError(f"{p}: keypoints contain NaN or Inf")
    return kp, fps
