"""Stage-2 PCE guidance sweep (PAHA Tables 2-3 style) on the ``vdm`` renderer, measured on pixels.

Usage::

    python bench/bench_guidance_video.py [--clips ../shared/data/validation] [--frames 40]
        [--seeds 0,1,2] [--settings none,sg@0.5,dg@0.5,...] [--steps 12] [--max-side 128]
        [--classifiers DIR] [--lambda-scale 1] [--weights DIR] [--json out.json]

Protocol (reconstruction + sync on real clips, measure only): for each validation clip the reference
photo is its frame 0 at the vdm's working size (long side ``--max-side``), the skeleton its own
keypoints (``<stem>_mediapipe_kp.npz``), the audio its own speech; the first ``--frames`` frames are
rendered with each setting and seed, then:

- **lip r**: MediaPipe Holistic re-detects the face on the rendered frames (upscaled x4); the mouth
  opening (``csg.keypoints.mouth_opening``) is correlated with the clip's log-RMS envelope at the best
  lag in ±4 frames (``eval.sync.lagged_correlation``); **ctl**: the same mouth track against the
  *other* clip's envelope (chance level); **det**: share of frames with a detected face;
- **wrist BAS**: kinematic beats of the re-detected wrists (speed minima) vs audio onsets, σ = 3
  frames (``eval.sync``); **ctl** with the other clip's onsets;
- **PSNR / face / hand**: against the real frames (``bench/recon.py`` boxes);
- **Δ**: mean |rendered − rendered without guidance| (same seed), 0-255 pixel units;
- **s/clip**: render wall time (1 torch thread, shared CPU).

Settings: ``none``; ``sg@r`` / ``dg@r`` (r: guided fraction; dg = residual form); ``dgl@r`` (literal
Eq. 12); suffix ``-noface`` (λ_f = 0, without D_face) or ``-nononface`` (λ_nf = 0, without D_non-face);
``@rxk`` sets this row's λ scale to k (e.g. ``sg@0.5x1``: PAHA's λ).
The real clip's own frames are measured the same way (row "real video").
``--weights DIR``: a trained vdm model folder (``csg train renderer``'s ``OUT``) instead of the
embedded checkpoint (e.g. the PAR ablation pair, docs/guidance.md Table 3).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_SETTINGS = ("none,sg@0.25,sg@0.5,sg@0.75,sg@1,dg@0.25,dg@0.5,dg@0.75,dg@1,"
                    "sg-noface@0.5,sg-nononface@0.5,dg-noface@0.5,dg-nononface@0.5,dgl@0.5")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", default=str(ROOT.parent / "shared" / "data" / "validation"))
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--settings", default=DEFAULT_SETTINGS)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--max-side", type=int, default=128)
    p.add_argument("--classifiers", default="", help="folder of classifier_face/ + classifier_nonface/")
    p.add_argument("--weights", default="", help="vdm model folder (default: the embedded checkpoint)")
    p.add_argument("--lambda-scale", type=float, default=1.0, help="x PAHA's (λ_nf, λ_f) = (1, 0.1)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--control-audio", default="",
                   help="media file whose speech is the other-audio control (default: the next "
                        "clip's; needed with a single clip)")
    p.add_argument("--json", default="")
    p.add_argument("--save-frames", default="", help="folder for one PNG strip per render")
    return p.parse_args(argv)


def parse_setting(name: str) -> dict:
    if name == "none":
        return {"mode": "none", "r": 0.0, "face": True, "nonface": True, "form": "residual"}
    head, r = name.split("@")
    r, _, scale = r.partition("x")
    parts = head.split("-")
    mode = {"sg": "sg", "dg": "dg", "dgl": "dg"}[parts[0]]
    return {"mode": mode, "r": float(r), "form": "literal" if parts[0] == "dgl" else "residual",
            "face": "noface" not in parts[1:], "nonface": "nononface" not in parts[1:],
            "scale": float(scale) if scale else None}


def load_clip(path: Path, frames: int, max_side: int) -> dict:
    from bench.recon import clip_keypoints, read_frames, working_size
    from csg.video import probe_video, read_audio_track

    info = probe_video(path)
    src = (int(info["height"]), int(info["width"]))
    hw = working_size(*src, max_side)
    real = np.stack(list(read_frames(path, hw, frames)))
    kp, _ = clip_keypoints(path, hw, src, frames, None)
    wav, sr = read_audio_track(path, 16000)
    fps = float(info["fps"])
    wav = wav[: int(round(len(real) / fps * 16000))]
    return {"name": path.stem, "real": real, "kp": kp[: len(real)].astype(np.float32), "wav": wav,
            "fps": fps, "hw": hw}


def detect(frames: np.ndarray, up: int = 4) -> np.ndarray:
    """(T, 133, 3) MediaPipe keypoints of frames upscaled x``up`` (zeros where nothing is found),
    in the frames' own pixels."""
    import cv2

    from csg.extract import PoseExtractor

    out = []
    with PoseExtractor(video=True, min_shoulder_score=0.0) as ex:
        for t, f in enumerate(frames):
            big = cv2.resize(f, (f.shape[1] * up, f.shape[0] * up), interpolation=cv2.INTER_CUBIC)
            k = ex(big, f"frame {t}")
            k = np.zeros((133, 3), np.float32) if k is None else np.asarray(k, np.float32).copy()
            k[:, :2] /= up
            out.append(k)
    return np.stack(out)


def sync_metrics(kp: np.ndarray, wav: np.ndarray, other_wav: np.ndarray, fps: float) -> dict:
    from csg import keypoints as K
    from csg.features import log_rms_envelope, onset_frames
    from eval.sync import (beat_alignment_score, joint_speed, kinematic_beats, lagged_correlation)

    T = len(kp)
    face_ok = (kp[:, K.INNER_LIPS, 2] > 0.3).all(axis=1) & (kp[:, K.FACE, 2].mean(axis=1) > 0.3)
    res = {"det": float(face_ok.mean())}
    env = log_rms_envelope(wav, 16000, fps, T)
    env_o = log_rms_envelope(other_wav, 16000, fps, T)
    if face_ok.sum() >= max(8, T // 2):
        mouth = K.mouth_opening(kp[..., :2].astype(np.float64))
        idx = np.arange(T)
        mouth = np.interp(idx, idx[face_ok], mouth[face_ok])
        res["lip_r"] = lagged_correlation(mouth, env, 4).r
        res["lip_ctl"] = lagged_correlation(mouth, env_o, 4).r
    else:
        res["lip_r"] = res["lip_ctl"] = float("nan")
    wr = np.array([K.LEFT_WRIST, K.RIGHT_WRIST])
    ok = (kp[:, wr, 2] > 0.3).all(axis=1)
    if ok.sum() >= max(8, T // 2):
        xy = kp[..., :2].astype(np.float64).copy()
        idx = np.arange(T)
        for j in wr:
            for c in range(2):
                xy[:, j, c] = np.interp(idx, idx[ok], xy[ok, j, c])
        scale = max(1e-6, float(np.median(K.torso_size(xy[ok]))))
        beats = kinematic_beats(joint_speed(xy, joints=wr, scale=scale))
        res["bas"] = beat_alignment_score(beats, onset_frames(wav, 16000, fps, T), 3.0)
        res["bas_ctl"] = beat_alignment_score(beats, onset_frames(other_wav, 16000, fps, T), 3.0)
    else:
        res["bas"] = res["bas_ctl"] = float("nan")
    return res


def recon_metrics(out: np.ndarray, clip: dict) -> dict:
    from bench.recon import frame_metrics

    rows = [frame_metrics(o, r, k) for o, r, k in zip(out, clip["real"], clip["kp"])]
    res = {}
    for key, col in (("psnr", "psnr"), ("psnr_face", "face"), ("psnr_hand_l", "hl"),
                     ("psnr_hand_r", "hr")):
        v = [r[key] for r in rows if key in r and np.isfinite(r[key])]
        res[col] = float(np.mean(v)) if v else float("nan")
    hands = [x for x in (res.pop("hl"), res.pop("hr")) if np.isfinite(x)]
    res["hand"] = float(np.mean(hands)) if hands else float("nan")
    return res


def set_guidance(renderer, s: dict, face, nonface, scale: float) -> None:
    from csg.diffusion.guidance import GuidanceConfig

    if s["mode"] == "none":
        renderer.guidance = None
        return
    scale = s.get("scale") or scale
    cfg = GuidanceConfig(mode=s["mode"], lambda_nonface=1.0 * scale, lambda_face=0.1 * scale,
                         guided_fraction=s["r"], dg_form=s["form"])
    renderer.guidance = (cfg, face if s["face"] else None, nonface if s["nonface"] else None)


def render(renderer, clip: dict, seed: int) -> tuple[np.ndarray, float]:
    import torch

    from csg.pose import PoseSequence

    h, w = clip["hw"]
    poses = PoseSequence(clip["kp"], fps=clip["fps"], width=w, height=h)
    t0 = time.time()
    state = renderer.prepare(clip["real"][0], PoseSequence(clip["kp"][:1], fps=clip["fps"],
                                                           width=w, height=h))
    frames = np.concatenate(list(renderer.render(state, poses, audio=clip["wav"], progress=False,
                                                 generator=torch.Generator().manual_seed(seed))))
    return frames, time.time() - t0


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    root = Path(args.clips)
    paths = sorted(root.glob("*.mp4")) if root.is_dir() else []
    if not paths:
        print(f"{root}: no clips (the validation clips live outside the project); skipped")
        return 0
    from pose2video.vdm.classifier import load_classifiers
    from pose2video.vdm.config import VdmRenderConfig
    from pose2video.vdm.renderer import VdmRenderer

    renderer = VdmRenderer(VdmRenderConfig(steps=args.steps, weights=args.weights))
    face, nonface = load_classifiers(args.classifiers or None)
    clips = [load_clip(p, args.frames, args.max_side) for p in paths]
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = args.settings.split(",")
    out_json = Path(args.json) if args.json else None
    results = {"args": vars(args), "rows": []}
    if args.control_audio:
        from csg.video import read_audio_track

        ctl = read_audio_track(args.control_audio, 16000)[0]
        others = [ctl for _ in clips]
    elif len(clips) > 1:
        others = [clips[(i + 1) % len(clips)]["wav"] for i in range(len(clips))]
    else:
        raise SystemExit("one clip: pass --control-audio FILE for the other-audio control")
    for i, clip in enumerate(clips):  # the real video row
        other = others[i]
        m = sync_metrics(detect(clip["real"]), clip["wav"], other, clip["fps"])
        results["rows"].append({"setting": "real video", "clip": clip["name"], "seed": -1, **m})
        print("real", clip["name"], {k: round(v, 3) for k, v in m.items()}, flush=True)
    base = {}
    for name in settings:
        s = parse_setting(name)
        set_guidance(renderer, s, face, nonface, args.lambda_scale)
        for seed in seeds:
            for i, clip in enumerate(clips):
                frames, sec = render(renderer, clip, seed)
                if name == "none":
                    base[(clip["name"], seed)] = frames
                b = base.get((clip["name"], seed))
                delta = float(np.abs(frames.astype(np.float32) - b).mean()) if b is not None \
                    else float("nan")
                other = others[i]
                row = {"setting": name, "clip": clip["name"], "seed": seed, "seconds": sec,
                       "delta": delta, **recon_metrics(frames, clip),
                       **sync_metrics(detect(frames), clip["wav"], other, clip["fps"])}
                results["rows"].append(row)
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                  for k, v in row.items()}), flush=True)
                if args.save_frames:
                    import cv2

                    d = Path(args.save_frames)
                    d.mkdir(parents=True, exist_ok=True)
                    strip = np.concatenate([np.concatenate(list(frames[::8]), 1),
                                            np.concatenate(list(clip["real"][::8]), 1)], 0)
                    cv2.imwrite(str(d / f"{clip['name'][:20]}_{name}_s{seed}.png"),
                                strip[..., ::-1])
                if out_json:
                    out_json.write_text(json.dumps(results, indent=1))
    print(table(results["rows"]))
    return 0


COLS = ("lip_r", "lip_ctl", "det", "bas", "bas_ctl", "psnr", "face", "hand", "delta", "seconds")


def table(rows: list[dict]) -> str:
    """Markdown: per setting, the mean over clips and seeds; ± = SD over seeds of the clip mean;
    lip r's (n/N): renders where the face was found in at least half the frames."""
    names = list(dict.fromkeys(r["setting"] for r in rows))
    lines = ["| setting | lip r | lip r other audio | face det | wrist BAS | BAS other audio | "
             "PSNR | face PSNR | hand PSNR | Δ vs none | s/clip |",
             "| --- |" + " --- |" * 10]
    for n in names:
        rs = [r for r in rows if r["setting"] == n]
        cells = []
        for c in COLS:
            vals = [r.get(c, np.nan) for r in rs]
            if not np.isfinite(vals).any():
                cells.append("-")
                continue
            mean = float(np.nanmean(vals))
            per_seed = [np.nanmean([r.get(c, np.nan) for r in rs if r["seed"] == s])
                        for s in sorted({r["seed"] for r in rs})]
            per_seed = [v for v in per_seed if np.isfinite(v)]
            sd = float(np.std(per_seed)) if len(per_seed) > 1 else None
            fmt = "{:.1f}" if c in ("psnr", "face", "hand", "seconds") else (
                "{:.2f}" if c in ("delta", "det") else "{:.3f}")
            cells.append(fmt.format(mean) + (f" ±{fmt.format(sd)}" if sd is not None and c in
                                            ("lip_r", "bas", "psnr", "face", "hand") else "")
                         + (f" ({int(np.isfinite(vals).sum())}/{len(vals)})"
                            if c == "lip_r" and len(vals) > 1 else ""))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
