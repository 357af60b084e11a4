"""Stage-1 evaluation: a set of predicted skeletons (+ ground truth, + audio) -> one report dict.

``evaluate_pose_sets`` works on loaded arrays, so ``csg eval pose`` and ``csg eval compare`` share it.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from csg import keypoints as K
from csg.errors import InputError
from eval import pose_metrics as PM
from eval import sync as S
from eval.frechet import frechet_distance_features

logger = logging.getLogger(__name__)

POSE_SUFFIXES = (".pose.json", ".json")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a")


@dataclass(frozen=True)
class PoseEvalSettings:
    sigma_frames: float = 3.0        # BAS Gaussian width σ, in pose frames
    max_lag: int = 4                 # lip sync: lags searched, ± frames
    score_threshold: float = 0.3     # points below this score are ignored (PCK, L1, jitter)
    pck_alphas: tuple = (0.05, 0.1)  # PCK thresholds, × torso size of the ground truth
    speed_smooth: float = 1.0        # Gaussian smoothing of joint speed before beat picking, frames
    beat_prominence: float = 0.002   # a speed minimum must dip this far (torso/frame) to be a beat
    fgd_stride: int = 8              # hop between autoencoder windows, frames


def stem_key(path: Path, suffixes: tuple[str, ...]) -> str:
    """File name without the first matching suffix: ``a.pose.json`` -> ``a``, ``a.wav`` -> ``a``."""
    name = path.name
    for s in suffixes:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return path.stem


def collect(path: str | Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    """``{key: file}`` for a file or every matching file in a folder (sorted by key)."""
    p = Path(path)
    if p.is_file():
        return {stem_key(p, suffixes): p}
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(suffixes))
        if not files:
            raise InputError(f"{p}: no {what} files ({', '.join(suffixes)}) in this folder")
        return {stem_key(f, suffixes): f for f in files}
    raise InputError(f"{p}: {what} file or folder not found")


def pair(pred: dict[str, Any], other: dict[str, Any] | None, what: str, option: str,
         *, broadcast: bool = False) -> dict[str, Any] | None:
    """``other`` keyed like ``pred``; raise naming the unpaired predictions.

    ``broadcast``: ``other`` came from a single file, which then pairs with every prediction.
    """
    if other is None:
        return None
    if broadcast and len(other) == 1:
        only = next(iter(other.values()))
        return {k: only for k in pred}
    missing = sorted(set(pred) - set(other))
    if missing:
        raise InputError(f"{option}: no {what} for prediction(s) {', '.join(missing[:5])}; files "
                         "are paired by name (a.pose.json <-> a.wav)")
    return {k: other[k] for k in pred}


def _partner(d: dict[str, Any] | None, key: str):
    return None if d is None else d.get(key)


def clip_sync(kp: np.ndarray, fps: float, wav: np.ndarray, sr: int, cfg: PoseEvalSettings, *,
              other_wav: np.ndarray | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """BAS and lip sync of one clip (T, 133, 3) against its audio, plus the chance controls.

    Controls: the same metric against the clip's own audio features rolled by T/2 frames
    ("shift") and against another file's audio tiled to this length ("other").
    Returns (metrics, series for plots).
    """
    from csg.features import log_rms_envelope, onset_frames

    T = kp.shape[0]
    speed = S.joint_speed(kp[..., :2], scale=PM.clip_torso(kp[..., :2]),
                          smooth_sigma=cfg.speed_smooth)
    beats = S.kinematic_beats(speed, min_prominence=cfg.beat_prominence)
    onsets = onset_frames(wav, sr, fps, T)
    env = log_rms_envelope(wav, sr, fps, T)
    mouth = K.mouth_opening(kp[..., :2].astype(np.float64))
    ls = S.lagged_correlation(mouth, env, cfg.max_lag)
    m = {"bas": S.beat_alignment_score(beats, onsets, cfg.sigma_frames),
         "bas_shift": S.beat_alignment_score(beats, (onsets + T // 2) % T, cfg.sigma_frames),
         "lipsync_r": ls.r, "lipsync_offset": ls.offset,
         "lipsync_r_shift": S.lagged_correlation(mouth, S.circular_shift_control(env),
                                                 cfg.max_lag).r,
         "kin_beats_per_s": len(beats) / (T / fps), "onsets_per_s": len(onsets) / (T / fps)}
    if other_wav is not None:
        ow = S.fit_length(other_wav, len(wav))
        m["bas_other"] = S.beat_alignment_score(beats, onset_frames(ow, sr, fps, T),
                                                cfg.sigma_frames)
        m["lipsync_r_other"] = S.lagged_correlation(mouth, log_rms_envelope(ow, sr, fps, T),
                                                    cfg.max_lag).r
    series = {"speed": speed, "beats": beats, "onsets": onsets, "mouth": mouth, "envelope": env,
              "fps": fps, "lipsync_r": ls.r, "lipsync_offset": ls.offset}
    return m, series


def evaluate_pose_sets(preds: dict[str, np.ndarray], fps: dict[str, float], *,
                       gts: dict[str, np.ndarray] | None = None,
                       audios: dict[str, np.ndarray] | None = None, sr: int = 16000,
                       autoencoder=None, checkpoint: str | None = None,
                       cfg: PoseEvalSettings = PoseEvalSettings()) -> dict[str, Any]:
    """Every stage-1 metric for a set of clips.

    preds / gts: ``{key: (T, 133, 3)}`` (gt paired by key, cropped to the shorter length);
    audios: ``{key: (N,) float32 at sr}``; autoencoder: a :class:`PoseAutoencoder` for FGD and
    diversity (skipped when None). Returns ``{"summary", "per_clip", "settings", "series"}``;
    summary values are means over clips (NaNs ignored).
    """
    keys = sorted(preds)
    per_clip: dict[str, dict[str, Any]] = {}
    series: dict[str, dict[str, Any]] = {}
    for i, k in enumerate(keys):
        kp = preds[k]
        c: dict[str, Any] = {"frames": int(kp.shape[0]), "jitter": PM.jitter(kp),
                             "hkc": PM.mean_confidence(kp, K.HANDS),
                             "face_conf": PM.mean_confidence(kp, K.FACE)}
        g = _partner(gts, k)
        if g is not None:
            p, g = PM.align_lengths(kp, g)
            c["l1"] = PM.l1_error(p, g, score_threshold=cfg.score_threshold)
            c.update(PM.pck_by_region(p[..., :2], g, cfg.pck_alphas,
                                      score_threshold=cfg.score_threshold))
            c["jitter_gt"] = PM.jitter(g)
        wav = _partner(audios, k)
        if wav is not None:
            others = [audios[o] for o in sorted(audios) if audios[o] is not wav]
            m, series[k] = clip_sync(kp, fps[k], wav, sr, cfg,
                                     other_wav=others[i % len(others)] if others else None)
            c.update(m)
        per_clip[k] = c
    summary = _mean_over(per_clip)
    if autoencoder is not None:
        summary.update(_latent_metrics(autoencoder, preds, gts, keys, cfg))
    settings = {**asdict(cfg), "autoencoder_checkpoint": checkpoint,
                "pck_size": "torso (max of shoulder width, shoulder-to-hip height) of the ground "
                            "truth, per frame",
                "lipsync_sign": "positive offset = mouth leads audio (mouth[t] ~ audio[t+offset])",
                "controls": "shift: own audio features rolled by T/2 frames; other: another "
                            "file's audio tiled to this length"}
    return {"summary": summary, "per_clip": per_clip, "settings": settings, "series": series}


def _mean_over(per_clip: dict[str, dict[str, Any]]) -> dict[str, float]:
    cols = list(dict.fromkeys(c for d in per_clip.values() for c in d))
    out = {}
    for c in cols:
        vals = np.array([d[c] for d in per_clip.values() if c in d], np.float64)
        vals = vals[np.isfinite(vals)]
        out[c] = float(vals.mean()) if vals.size else float("nan")
    out["clips"] = len(per_clip)
    return out


def _latent_metrics(ae, preds, gts, keys, cfg) -> dict[str, float]:
    from eval.pose_autoencoder import encode_clips

    fp = np.concatenate(encode_clips(ae, [preds[k] for k in keys], stride=cfg.fgd_stride))
    out = {"diversity": PM.diversity(fp), "windows": int(len(fp))}
    if gts:
        gk = [k for k in keys if _partner(gts, k) is not None]
        fg = np.concatenate(encode_clips(ae, [_partner(gts, k) for k in gk], stride=cfg.fgd_stride))
        out["diversity_gt"] = PM.diversity(fg)
        if len(fp) >= 2 and len(fg) >= 2:
            out["fgd"] = frechet_distance_features(fp, fg)
    return out


def load_pose_dir(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, float], dict]:
    """Load pose file(s): ({key: keypoints}, {key: fps}, {key: PoseSequence})."""
    from csg.pose import PoseSequence

    seqs = {k: PoseSequence.load(f) for k, f in collect(path, POSE_SUFFIXES, "pose").items()}
    return ({k: s.keypoints for k, s in seqs.items()}, {k: s.fps for k, s in seqs.items()}, seqs)


def load_audio_dir(path: str | Path, sr: int = 16000) -> dict[str, np.ndarray]:
    from csg.audio import load_audio

    return {k: load_audio(f, sr) for k, f in collect(path, AUDIO_SUFFIXES, "audio").items()}


SUMMARY_ORDER = ("clips", "fgd", "diversity", "diversity_gt", "bas", "bas_shift", "bas_other",
                 "lipsync_r", "lipsync_offset", "lipsync_r_shift", "lipsync_r_other", "jitter",
                 "jitter_gt", "hkc", "face_conf", "l1", "pck@0.05", "pck@0.1")


def pose_markdown(report: dict[str, Any], title: str = "Pose evaluation") -> str:
    """The Markdown body of a pose report: summary, what the numbers mean, per-clip table."""
    from eval.report import markdown_table

    s, st = report["summary"], report["settings"]
    row = {k: s[k] for k in SUMMARY_ORDER if k in s}
    lines = [f"# {title}\n", markdown_table([row]),
             "\n## Settings\n",
             f"- FGD / diversity autoencoder: `{st['autoencoder_checkpoint'] or 'none (skipped)'}`; "
             "FGD needs --gt and is only comparable under the same checkpoint.",
             f"- BAS: σ = {st['sigma_frames']:g} frames; kinematic beats = speed minima of upper "
             "body + hands (Gaussian-smoothed, σ = "
             f"{st['speed_smooth']:g} frame, prominence ≥ {st['beat_prominence']:g} torso/frame); "
             "mean over kinematic beats.",
             f"- Lip sync: Pearson r of mouth opening vs audio log-RMS at the best lag in "
             f"±{st['max_lag']} frames; {st['lipsync_sign']}.",
             f"- Chance controls ({st['controls']}): a real effect beats `_shift` / `_other`.",
             f"- PCK@α and L1 use the {st['pck_size']}; points with score ≤ "
             f"{st['score_threshold']:g} are ignored. Jitter: mean |acceleration| in torso sizes "
             "per frame².", "\n## Per clip\n"]
    rows = [{"clip": k, **v} for k, v in report["per_clip"].items()]
    cols = ["clip"] + [c for c in SUMMARY_ORDER if any(c in r for r in rows)] + ["frames"]
    lines.append(markdown_table(rows, cols))
    if report.get("series"):
        lines.append("\n## Plots\n")
        for k in list(report["series"])[:MAX_PLOTS]:
            lines.append(f"![lip sync {k}](lipsync_{k}.png)\n\n![beats {k}](beats_{k}.png)\n")
    if any(k.startswith("pck@") for k in s):
        lines.append("![PCK per region](pck_regions.png)\n")
    return "\n".join(lines)


MAX_PLOTS = 4


def pose_plots(report: dict[str, Any]) -> dict[str, Any]:
    """``{name: fn(path)}`` plot writers for :func:`eval.report.write_report`."""
    from functools import partial

    from eval import plots

    out = {}
    for k in list(report["series"])[:MAX_PLOTS]:
        sr = report["series"][k]
        out[f"lipsync_{k}"] = partial(plots.plot_lipsync, mouth=sr["mouth"], envelope=sr["envelope"],
                                      fps=sr["fps"], title=k, offset=sr["lipsync_offset"],
                                      r=sr["lipsync_r"])
        out[f"beats_{k}"] = partial(plots.plot_beats, speed=sr["speed"], kin_beats=sr["beats"],
                                    onsets=sr["onsets"], fps=sr["fps"], title=k)
    s = report["summary"]
    if any(k.startswith("pck@") for k in s):
        vals = {f"pck@{a:g}": {r: s.get(f"pck@{a:g}/{r}", np.nan) for r in PM.REGIONS}
                for a in report["settings"]["pck_alphas"]}
        out["pck_regions"] = partial(plots.plot_region_bars, values=vals,
                                     title="PCK vs ground truth, per region")
    return out
