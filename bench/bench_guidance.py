"""PCE benchmark (PAHA Table 2 style): none / SG / DG sampling of stage 1 on held-out clips.

For each mode: lip sync (mouth opening vs log-RMS envelope, best-lag Pearson r within ±4 frames),
beat alignment (BAS, σ = 3 frames), diversity (mean pairwise L1 of motion-autoencoder features,
or of normalised pose windows when no autoencoder checkpoint exists), the classifiers' own sync
score of the final samples, and seconds per clip. Metrics come from eval.pose_eval. Optionally
(--classifier-acc) the held-out accuracy of both classifiers per noise level on the same split.

    python bench/bench_guidance.py --data data/synth --split test --clips 8 \
        --modes none,sg,dg,dg-residual --json runs/bench_guidance.json
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("bench_guidance")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/synth")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--checkpoint", default=None, help="stage-1 folder (default: embedded)")
    p.add_argument("--classifiers", default=None, help="folder with classifier_face/, "
                   "classifier_nonface/ (default: the stage-1 folder)")
    p.add_argument("--modes", default="none,sg,dg,dg-residual")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seeds", type=int, default=1, help="samples per clip and mode")
    p.add_argument("--lambda-nonface", type=float, default=1.0)
    p.add_argument("--lambda-face", type=float, default=0.1)
    p.add_argument("--lambda-diff", type=float, default=0.25)
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument("--classifier-acc", action="store_true")
    p.add_argument("--json", default=None, help="write all figures here")
    return p.parse_args(argv)


def diversity(preds: list[np.ndarray]) -> tuple[float, str]:
    """Diversity of a set of (T, 133, 3) clips, in the pose autoencoder's latent space if possible."""
    from eval import pose_metrics as PM

    try:
        from eval.pose_autoencoder import encode_clips, load_pose_autoencoder

        ae = load_pose_autoencoder()
        return PM.diversity(np.concatenate(encode_clips(ae, preds, stride=16))), "autoencoder"
    except Exception as e:  # noqa: BLE001 - fall back, and say so in the output
        log.info("no pose autoencoder (%s); diversity on normalised pose windows", e)
    feats = []
    for kp in preds:
        n = PM.normalise_clip(kp)
        for s in range(0, n.shape[0] - 32 + 1, 16):
            feats.append(n[s:s + 32].ravel())
    return PM.diversity(np.stack(feats)), "normalised-pose windows (32 frames, L1)"


def classifier_scores(guide_models, pipe, kp: np.ndarray, ref: np.ndarray, wav) -> dict:
    """Mean sync probability s of a (T, 133, 3) clip under each classifier at t = 0."""
    import torch

    from audio2pose.classifier_train import pose_state
    from csg.features import audio_features

    z = pose_state(pipe.model, kp, ref)[0][None]
    a = torch.from_numpy(audio_features(wav, 16000, pipe.fps, kp.shape[0], pipe.features))[None]
    out = {}
    with torch.no_grad():
        for name, m in guide_models.items():
            W = 100
            ss = [torch.sigmoid(m.masked_logits(z[:, s:s + W], torch.zeros(1, dtype=torch.long),
                                                a[:, s:s + W])).item()
                  for s in range(0, max(kp.shape[0] - W, 0) + 1, W // 2)]
            out[f"s_{name}"] = float(np.mean(ss))
    return out


def run_modes(args, pipe, clips, ckdir):
    import torch

    from audio2pose.classifier import load_classifier, load_guide
    from csg.pose import PoseSequence
    from eval.pose_eval import evaluate_pose_sets

    models = {r: load_classifier(Path(ckdir) / f"classifier_{r}") for r in ("face", "nonface")}
    table = {}
    real = {c.record.id: c.poses for c in clips}
    audios = {c.record.id: c.audio for c in clips}
    fps = {c.record.id: c.fps for c in clips}
    rep = evaluate_pose_sets(real, fps, audios=audios)["summary"]
    rs = [classifier_scores(models, pipe, c.poses, c.ref, c.audio) for c in clips]
    table["real"] = {"lipsync_r": rep["lipsync_r"], "bas": rep["bas"],
                     "lipsync_r_shift": rep["lipsync_r_shift"],
                     "diversity": diversity(list(real.values()))[0],
                     **{k: float(np.mean([r[k] for r in rs])) for k in rs[0]}}
    for mode in args.modes.split(","):
        base, form = (mode.split("-") + ["literal"])[:2]
        guide = load_guide(base, ckdir, lambda_nonface=args.lambda_nonface,
                           lambda_face=args.lambda_face, lambda_diff=args.lambda_diff,
                           guided_fraction=args.fraction, dg_form=form)
        preds, secs, scores = {}, [], []
        for c in clips:
            ref = PoseSequence(c.ref[None], fps=c.fps, width=c.width, height=c.height)
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                out = pipe(c.audio, 16000, ref, steps=args.steps, guide=guide, progress=False,
                           generator=torch.Generator().manual_seed(seed))
                secs.append(time.perf_counter() - t0)
                preds[f"{c.record.id}_{seed}"] = out.keypoints
                scores.append(classifier_scores(models, pipe, out.keypoints, c.ref, c.audio))
                audios[f"{c.record.id}_{seed}"] = c.audio
                fps[f"{c.record.id}_{seed}"] = c.fps
        s = evaluate_pose_sets(preds, fps, gts={k: real[k.rsplit("_", 1)[0]] for k in preds},
                               audios={k: audios[k] for k in preds})["summary"]
        div, how = diversity(list(preds.values()))
        table[mode] = {"lipsync_r": s["lipsync_r"], "lipsync_r_shift": s["lipsync_r_shift"],
                       "bas": s["bas"], "l1": s.get("l1"), "jitter": s["jitter"],
                       "diversity": div, "diversity_space": how,
                       "sec_per_clip": float(np.mean(secs)),
                       **{k: float(np.mean([r[k] for r in scores])) for k in scores[0]}}
        log.info("%s: %s", mode, table[mode])
    return table


def classifier_accuracy(pipe, args, ckdir) -> dict:
    """Held-out accuracy per t/T of both classifiers on ``args.split`` windows."""
    import math

    import torch

    from audio2pose import classifier_train as CT
    from audio2pose import diffusion as D
    from audio2pose.classifier import load_classifier

    cfg = CT.ClassifierTrainConfig(eval_items=64)
    bank = CT.build_bank(args.data, args.split, cfg.data_window, pipe)
    g = torch.Generator().manual_seed(77)
    pool = CT.build_pool(pipe, bank, 64, cfg.pool_steps, g)
    ac = D.cosine_alphas_cumprod(pipe.model.config.num_train_timesteps).float()
    min_shift = int(math.ceil(cfg.min_shift_s * pipe.fps))
    return {r: CT.evaluate(load_classifier(Path(ckdir) / f"classifier_{r}"), bank, pool, cfg, ac,
                           min_shift) for r in ("face", "nonface")}


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = parse_args(argv)
    from audio2pose.pipeline import Audio2PosePipeline, resolve_checkpoint
    from csg.data.manifest import load_clip, read_manifest, select

    ck = resolve_checkpoint(args.checkpoint)
    ckdir = args.classifiers or ck
    pipe = Audio2PosePipeline.from_pretrained(ck)
    recs = select(read_manifest(args.data), args.split)[:args.clips]
    clips = [load_clip(args.data, r) for r in recs]
    result = {"settings": vars(args), "clips": [r.id for r in recs]}
    if args.classifier_acc:
        result["classifier_acc"] = classifier_accuracy(pipe, args, ckdir)
        for r, rows in result["classifier_acc"].items():
            print(f"classifier {r}: " + ", ".join(f"{k} {v['acc']:.3f}" for k, v in rows.items()))
    result["modes"] = run_modes(args, pipe, clips, ckdir)
    cols = ["lipsync_r", "lipsync_r_shift", "bas", "diversity", "s_face", "s_nonface",
            "sec_per_clip"]
    print("| mode | " + " | ".join(cols) + " |")
    print("|" + " --- |" * (len(cols) + 1))
    for mode, row in result["modes"].items():
        print(f"| {mode} | " + " | ".join(
            f"{row[c]:.3f}" if isinstance(row.get(c), float) else "-" for c in cols) + " |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
