"""Acceptance figures of stage 1: lip sync and beat alignment vs shuffled-audio controls, on held-out
synthetic clips and on real speech with real reference photos; long-audio drift and seams.

    python bench/measure_audio2pose.py --data data/synth [--checkpoint DIR] [--clips 20]
        [--out docs/figures] [--json bench_audio2pose_measure.json]

Metrics come from eval.pose_eval.clip_sync (BAS with σ = 3 frames, AIST++; lip-sync Pearson r of
mouth opening vs log-RMS at the best lag in ±4 frames). Controls: the same audio rolled by T/2
("shift") and another file's audio ("other").
"""
from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

import numpy as np
import torch

from audio2pose.pipeline import Audio2PosePipeline
from csg import keypoints as K

ROOT = Path(__file__).resolve().parents[1]
from csg.audio import SAMPLE_RATE, load_audio
from csg.data import load_clip, read_manifest, select
from csg.pose import PoseSequence

KEYS = ("lipsync_r", "lipsync_r_shift", "lipsync_r_other", "bas", "bas_shift", "bas_other")


def sync(kp, fps, wav, other):
    from eval.pose_eval import PoseEvalSettings, clip_sync

    return clip_sync(kp, fps, wav, SAMPLE_RATE, PoseEvalSettings(), other_wav=other)[0]


def mean(rows):
    return {k: float(np.nanmean([r[k] for r in rows])) for k in KEYS if rows and k in rows[0]}


def synthetic(pipe, data, n, seed):
    recs = select(read_manifest(data), "test")[:n]
    clips = [load_clip(data, r) for r in recs]
    gen, gt = [], []
    for i, c in enumerate(clips):
        other = clips[(i + 1) % len(clips)].audio
        ref = PoseSequence(c.ref[None], c.record.fps, c.record.width, c.record.height)
        p = pipe(c.audio, SAMPLE_RATE, ref, generator=torch.Generator().manual_seed(seed),
                 progress=False)
        gen.append(sync(p.keypoints, p.fps, c.audio, other))
        gt.append(sync(c.poses, c.record.fps, c.audio, other))
    return {"clips": len(clips), "generated": mean(gen), "ground_truth": mean(gt)}


def real(pipe, seed):
    from csg.extract import extract_pose
    from csg.image import load_image

    audios = sorted(glob.glob(str(ROOT / "examples/audio/*.wav")) +
                    glob.glob(str(ROOT / "examples/audio/*.flac")))
    images = sorted(glob.glob(str(ROOT / "examples/images/*")))
    wavs = {Path(a).name: load_audio(a) for a in audios}
    refs = {Path(i).name: extract_pose(load_image(i)) for i in images}
    rows, per = [], {}
    names = list(wavs)
    for ai, an in enumerate(names):
        other = wavs[names[(ai + 1) % len(names)]]
        for iname, ref in refs.items():
            p = pipe(wavs[an], SAMPLE_RATE, ref, generator=torch.Generator().manual_seed(seed),
                     progress=False)
            m = sync(p.keypoints, p.fps, wavs[an], other)
            per[f"{an}|{iname}"] = {k: round(m[k], 3) for k in KEYS}
            rows.append(m)
    return {"pairs": per, "mean": mean(rows)}, wavs, refs


def jitter_check(pipe, data, n, seed):
    """Mean acceleration (eval.pose_metrics.jitter, torso / frame²) of generated vs real motion."""
    from eval.pose_metrics import jitter

    gen, gt = [], []
    for r in select(read_manifest(data), "test")[:n]:
        c = load_clip(data, r)
        ref = PoseSequence(c.ref[None], r.fps, r.width, r.height)
        p = pipe(c.audio, SAMPLE_RATE, ref, generator=torch.Generator().manual_seed(seed),
                 progress=False)
        gen.append(jitter(p.keypoints))
        gt.append(jitter(c.poses))
    return {"generated": round(float(np.mean(gen)), 4), "ground_truth": round(float(np.mean(gt)), 4)}


def long_audio(pipe, wavs, data, ref, seconds, seed, out_png):
    parts = list(wavs.values())
    for r in select(read_manifest(data), "test"):
        if sum(len(p) for p in parts) >= seconds * SAMPLE_RATE:
            break
        parts.append(load_clip(data, r).audio)
    wav = np.concatenate(parts)[: int(seconds * SAMPLE_RATE)]
    t0 = time.perf_counter()
    p = pipe(wav, SAMPLE_RATE, ref, generator=torch.Generator().manual_seed(seed), progress=False)
    dt = time.perf_counter() - t0
    from audio2pose.sampling import window_spans

    xy = p.xy.astype(np.float64)
    torso = K.torso_size(xy)
    centre = xy[:, [K.LEFT_SHOULDER, K.RIGHT_SHOULDER]].mean(1)
    ref_torso = float(K.torso_size(ref.xy[0].astype(np.float64)))
    s = pipe.sampling
    borders = [a for a, _ in window_spans(p.num_frames, s.window, s.overlap)][1:]
    step = np.linalg.norm(np.diff(xy[:, K.BODY], axis=0), axis=-1).mean(-1) / ref_torso
    seam = float(np.mean([step[b + s.overlap - 1] for b in borders]))  # first new frame
    inner = float(np.mean(step))
    n5 = int(5 * p.fps)
    drift = float(np.linalg.norm(centre[-n5:].mean(0) - centre[:n5].mean(0)) / ref_torso)
    scale_drift = float(torso[-n5:].mean() / torso[:n5].mean() - 1)
    _plot(p, torso / ref_torso, (centre - centre[0]) / ref_torso, ref_torso, borders, s.overlap,
          out_png)
    return {"seconds": p.duration, "frames": p.num_frames, "windows": len(borders) + 1,
            "gen_seconds": round(dt, 1), "centre_drift_torso": round(drift, 4),
            "scale_drift_rel": round(scale_drift, 4),
            "torso_scale_range": [round(float((torso / ref_torso).min()), 3),
                                  round(float((torso / ref_torso).max()), 3)],
            "seam_step_torso": round(seam, 5), "mean_step_torso": round(inner, 5),
            "seam_ratio": round(seam / inner, 2)}


def _plot(p, scale, centre, ref_torso, borders, overlap, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(p.num_frames) / p.fps
    fig, ax = plt.subplots(3, 1, figsize=(11, 7), sharex=True)
    ax[0].plot(t, scale)
    ax[0].set_ylabel("torso / ref torso")
    ax[1].plot(t, centre[:, 0], label="x")
    ax[1].plot(t, centre[:, 1], label="y")
    ax[1].set_ylabel("shoulder centre - frame 0\n(ref torso units)")
    ax[1].legend(loc="upper right")
    wr = p.xy[:, K.RIGHT_WRIST] - p.xy[0, K.RIGHT_WRIST]
    ax[2].plot(t, wr[:, 1] / ref_torso, lw=0.8, label="right wrist y - frame 0 (torso units)")
    ax[2].plot(t, K.mouth_opening(p.xy.astype(np.float64)), lw=0.8, label="mouth opening")
    ax[2].legend(loc="upper right")
    ax[2].set_xlabel("seconds")
    for a in ax:
        for b in borders:
            a.axvline(b / p.fps, color="r", alpha=0.3, lw=0.8)
            a.axvspan(b / p.fps, (b + overlap) / p.fps, color="r", alpha=0.06)
    fig.suptitle("audio2pose on 60 s of speech: body scale and position; red = window starts, "
                 "shaded = carried frames")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/synth")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--long-seconds", type=float, default=60.0)
    ap.add_argument("--out", default="docs/figures")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pipe = Audio2PosePipeline.from_pretrained(a.checkpoint)
    res = {"synthetic_test": synthetic(pipe, a.data, a.clips, a.seed)}
    print(json.dumps(res, indent=1), flush=True)
    res["real"], wavs, refs = real(pipe, a.seed)
    print(json.dumps(res["real"], indent=1), flush=True)
    ref = refs.get("moore_anyone-3.png", next(iter(refs.values())))
    res["long"] = long_audio(pipe, wavs, a.data, ref, a.long_seconds, a.seed,
                             Path(a.out) / "audio2pose_long.png")
    print(json.dumps(res["long"], indent=1), flush=True)
    res["jitter"] = jitter_check(pipe, a.data, a.clips, a.seed)
    print(json.dumps(res["jitter"], indent=1), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
