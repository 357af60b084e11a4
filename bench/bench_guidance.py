"""PCE benchmark (PAHA Table 2 style): none / SG / DG sampling of stage 1, swept over λ and r.

Every setting generates the same held-out synthetic clips (one batch; the same noise per seed)
and, optionally, the example speech recordings on a reference skeleton extracted from a photo.
Per setting: lip sync (mouth opening vs log-RMS envelope, best-lag Pearson r within ±4 frames),
Beat Alignment Score (σ = 3 frames; kinematic beats vs csg.features.onset_frames), both against a
shifted-audio control (audio rolled by T/2); FGD and diversity (pose-autoencoder space, across
clips); jitter; L1 to the ground truth; the mean change of the output vs unguided ("Δ", torso
units); the classifiers' own sync probability of the result; seconds per clip (batched).
Metrics come from eval.pose_eval (eval.sync, eval.pose_metrics). Optionally (--classifier-acc)
the held-out accuracy of both classifiers per noise level and per negative kind. With
--seeds N every metric is the mean over N seeds (same seeds for every setting), and the table
shows the seed-to-seed SD of lip sync and BAS, the noise floor to judge differences against.

    python bench/bench_guidance.py --clips 6 --scales 1,10,100,1000 --fractions 0.5,1 \
        --modes sg,dg,dg-residual --classifier-acc --json runs/bench_guidance.json   # ~3.5 min
    python bench/bench_guidance.py --seeds 3 --scales 10,30,100 --fractions 0.5 \
        --modes sg,dg-residual                                        # seed noise floor, ~2 min
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
SR = 16000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/synth")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=6)
    p.add_argument("--checkpoint", default=None, help="stage-1 folder (default: embedded)")
    p.add_argument("--classifiers", default=None, help="folder with classifier_face/, "
                   "classifier_nonface/ (default: the stage-1 folder)")
    p.add_argument("--modes", default="sg,dg,dg-residual", help="guided modes; 'none' always runs")
    p.add_argument("--scales", default="1,10,100", help="multipliers of (λ_nf, λ_f)")
    p.add_argument("--fractions", default="0.5,1.0", help="guided fractions r")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--seeds", type=int, default=1, help="seeds per setting (metrics averaged; "
                   "with > 1 the table also shows the seed-to-seed SD of BAS and lip sync)")
    p.add_argument("--lambda-nonface", type=float, default=1.0, help="λ_nf at scale 1 (PAHA)")
    p.add_argument("--lambda-face", type=float, default=0.1, help="λ_f at scale 1 (PAHA)")
    p.add_argument("--lambda-diff", type=float, default=0.25)
    p.add_argument("--real-audio", default="examples/audio", help="folder of speech files ('' off)")
    p.add_argument("--real-ref", default="examples/images/moore_anyone-3.png")
    p.add_argument("--real-seconds", type=float, default=8.0, help="crop of each speech file")
    p.add_argument("--classifier-acc", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest for these "
                   "tiny models on a shared 2-core box)")
    p.add_argument("--json", default=None, help="write all figures here")
    return p.parse_args(argv)


# --- batched generation (the same maths as Audio2PosePipeline.__call__, B clips at once) ---------
def generate_batch(pipe, wavs: list[np.ndarray], refs: list[np.ndarray], *, steps: int,
                   seed: int, guide) -> list[np.ndarray]:
    """wavs: B equal-length (N,) float32 at 16 kHz; refs: B (133, 3) pixel skeletons.
    Returns B (T, 133, 3) keypoint arrays, as the pipeline would (smoothed, frame 0 = ref)."""
    import torch

    from audio2pose.normalize import RELIABLE, denormalize, unturn_hands
    from audio2pose.pipeline import savgol_smooth
    from audio2pose.sampling import sample_long
    from csg.audio import fit_to_frames, num_frames_for
    from csg.features import audio_features

    m, s = pipe.model, pipe.sampling
    T = num_frames_for(wavs[0].shape[0], SR, pipe.fps)
    feats = [audio_features(fit_to_frames(w, T, SR, pipe.fps), SR, pipe.fps, T, pipe.features)
             for w in wavs]
    nets = [pipe.network_reference(np.asarray(r, np.float32)) for r in refs]  # as generate does
    ref_rel = torch.stack([torch.from_numpy(n[1]) for n in nets])
    ok = torch.stack([torch.from_numpy(n[0][:, 2:] > RELIABLE) for n in nets])
    ref_in = torch.where(ok, ref_rel, 0.0)
    first = m.standardize(torch.zeros_like(ref_rel))
    out = sample_long(m, torch.from_numpy(np.stack(feats)), ref_in, first, window=s.window,
                      overlap=s.overlap, steps=steps, cfg_scale=s.cfg_scale, eta=s.eta,
                      generator=torch.Generator().manual_seed(seed), guide=guide)
    res = []
    for b, r in enumerate(refs):
        net_kp, _, turns, shifts = nets[b]
        rel = unturn_hands((m.destandardize(out.z0[b]) + ref_rel[b]).float().numpy(), turns, shifts)
        xy = savgol_smooth(denormalize(rel, net_kp), s.savgol)
        sc = np.where(r[None, :, 2] > RELIABLE, out.scores[b].float().numpy(), 0.0)
        xy[0], sc[0] = r[:, :2], r[:, 2]
        res.append(np.concatenate([xy, sc[..., None]], -1).astype(np.float32))
    return res


def classifier_scores(models, pipe, kp: np.ndarray, ref: np.ndarray, wav) -> dict:
    """Mean sync probability s of a (T, 133, 3) clip under each classifier at t = 0."""
    import torch

    from audio2pose.classifier_train import pose_state
    from csg.features import audio_features

    z = pose_state(pipe.model, kp, ref)[0][None]
    a = torch.from_numpy(audio_features(wav, SR, pipe.fps, kp.shape[0], pipe.features))[None]
    out, W = {}, 100
    with torch.no_grad():
        for name, m in models.items():
            ss = [torch.sigmoid(m.masked_logits(z[:, s:s + W], torch.zeros(1, dtype=torch.long),
                                                a[:, s:s + W])).item()
                  for s in range(0, max(kp.shape[0] - W, 0) + 1, W // 2)]
            out[f"s_{name}"] = float(np.mean(ss))
    return out


def mean_rows(rows: list[dict]) -> dict:
    """Mean of each metric over seeds, plus its standard deviation over seeds as ``<k>_sd``."""
    out = {}
    for k in rows[0]:
        v = np.array([r[k] for r in rows if r.get(k) is not None], np.float64)
        out[k] = float(v.mean()) if v.size else None
        if len(rows) > 1 and v.size:
            out[f"{k}_sd"] = float(v.std(ddof=1))
    return out


def change(preds: list[np.ndarray], base: list[np.ndarray]) -> float:
    """Mean |Δxy| of preds vs base in torso units (0 for identical outputs)."""
    from eval import pose_metrics as PM

    return float(np.mean([np.abs(p[..., :2] - b[..., :2]).mean() / PM.clip_torso(b[..., :2])
                          for p, b in zip(preds, base)]))


def score_set(name, preds, sets, models, pipe, ae, base) -> dict:
    """All metrics of one setting on one clip set (synth: with ground truth)."""
    from eval.pose_eval import evaluate_pose_sets

    keys = sets["keys"]
    pd = dict(zip(keys, preds))
    rep = evaluate_pose_sets(pd, {k: pipe.fps for k in keys}, gts=sets.get("gts"),
                             audios=dict(zip(keys, sets["wavs"])), autoencoder=ae)["summary"]
    sc = [classifier_scores(models, pipe, p, r, w)
          for p, r, w in zip(preds, sets["refs"], sets["wavs"])]
    row = {k: rep.get(k) for k in ("lipsync_r", "lipsync_r_shift", "bas", "bas_shift", "jitter",
                                   "l1", "fgd", "diversity")}
    row.update({k: float(np.mean([s[k] for s in sc])) for k in sc[0]})
    row["change"] = 0.0 if base is None else change(preds, base)
    return row


# --- data ----------------------------------------------------------------------------------------
def synth_set(args, pipe) -> dict:
    from csg.data.manifest import load_clip, read_manifest, select

    recs = select(read_manifest(args.data), args.split)[:args.clips]
    clips = [load_clip(args.data, r) for r in recs]
    n = min(len(c.audio) for c in clips)
    return {"keys": [r.id for r in recs], "wavs": [c.audio[:n] for c in clips],
            "refs": [np.asarray(c.ref, np.float32) for c in clips],
            "gts": {r.id: c.poses for r, c in zip(recs, clips)}}


def real_set(args) -> dict | None:
    from csg.audio import load_audio
    from csg.extract import extract_pose
    from csg.image import load_image

    if not args.real_audio:
        return None
    files = sorted(f for f in Path(args.real_audio).iterdir()
                   if f.suffix.lower() in (".wav", ".flac"))
    n = int(args.real_seconds * SR)
    wavs = [load_audio(f, SR)[:n] for f in files]
    n = min(len(w) for w in wavs)
    ref = np.asarray(extract_pose(load_image(args.real_ref)).keypoints[0], np.float32)
    return {"keys": [f.stem for f in files], "wavs": [w[:n] for w in wavs],
            "refs": [ref] * len(files)}


# --- sweep ---------------------------------------------------------------------------------------
def settings(args) -> list[dict]:
    out = [{"name": "none", "mode": "none", "form": "literal", "scale": 0.0, "r": 0.0}]
    for mode in args.modes.split(","):
        base, form = (mode.split("-") + ["literal"])[:2]
        for r in [float(x) for x in args.fractions.split(",")]:
            for sc in [float(x) for x in args.scales.split(",")]:
                out.append({"name": f"{mode} x{sc:g} r={r:g}", "mode": base, "form": form,
                            "scale": sc, "r": r})
    return out


def run_sweep(args, pipe, ckdir, sets: dict) -> dict:
    from audio2pose.classifier import load_classifier, load_guide

    try:
        from eval.pose_autoencoder import load_pose_autoencoder

        ae = load_pose_autoencoder()
    except Exception as e:  # noqa: BLE001 - FGD/diversity are then skipped, and say so
        log.warning("no pose autoencoder (%s): no FGD / diversity", e)
        ae = None
    models = {r: load_classifier(Path(ckdir) / f"classifier_{r}") for r in ("face", "nonface")}
    table, base = {}, {}
    seeds = range(args.seed, args.seed + args.seeds)
    for st in settings(args):
        guide = load_guide(st["mode"], ckdir, lambda_nonface=args.lambda_nonface * st["scale"],
                           lambda_face=args.lambda_face * st["scale"],
                           lambda_diff=args.lambda_diff, guided_fraction=st["r"],
                           dg_form=st["form"])
        row = dict(st)
        for set_name, data in sets.items():
            per_seed = []
            for seed in seeds:
                t0 = time.perf_counter()
                preds = generate_batch(pipe, data["wavs"], data["refs"], steps=args.steps,
                                       seed=seed, guide=guide)
                secs = (time.perf_counter() - t0) / len(preds)
                if st["mode"] == "none":
                    base[(set_name, seed)] = preds
                m = score_set(set_name, preds, data, models, pipe, ae, base.get((set_name, seed)))
                per_seed.append({**m, "sec_per_clip": secs})
            row[set_name] = mean_rows(per_seed)
        log.info("%s: %s", st["name"], {k: round(v, 3) for k, v in row["synth"].items()
                                        if isinstance(v, float)})
        table[st["name"]] = row
    return table


def classifier_accuracy(pipe, args, ckdir) -> dict:
    """Held-out accuracy per t/T and per pair kind of both classifiers on ``args.split``."""
    import math

    import torch

    from audio2pose import classifier_train as CT
    from csg.diffusion import schedule as D
    from audio2pose.classifier import load_classifier

    cfg = CT.ClassifierTrainConfig(eval_items=64)
    bank = CT.build_bank(args.data, args.split, cfg.data_window, pipe)
    pool = CT.build_pool(pipe, bank, 64, cfg.pool_steps, torch.Generator().manual_seed(77))
    ac = D.cosine_alphas_cumprod(pipe.model.config.num_train_timesteps).float()
    min_shift = math.ceil(cfg.min_shift_s * pipe.fps)
    return {r: CT.evaluate(load_classifier(Path(ckdir) / f"classifier_{r}"), bank, pool, cfg, ac,
                           min_shift) for r in ("face", "nonface")}


# --- output --------------------------------------------------------------------------------------
def _f(v, nd=3) -> str:
    return f"{v:.{nd}f}" if isinstance(v, float) and np.isfinite(v) else "-"


def print_tables(result: dict) -> None:
    if "classifier_acc" in result:
        print(f"\nclassifier held-out accuracy ({result['settings']['split']} split, balanced; "
              "per kind: share correct)")
        print("| classifier | t/T | acc | pos | self | shift | swap |\n|" + " --- |" * 7)
        for r, rows in result["classifier_acc"].items():
            for k, v in rows.items():
                print(f"| {r} | {k[4:]} | " + " | ".join(
                    _f(v[c]) for c in ("acc", "pos", "self", "shift", "swap")) + " |")
    syn = ["lipsync_r", "lipsync_r_shift", "bas", "bas_shift", "fgd", "diversity", "jitter",
           "change", "s_face", "s_nonface", "sec_per_clip"]
    rl = ["lipsync_r", "lipsync_r_shift", "bas", "bas_shift", "jitter", "change"]
    has_real = any("real" in row for row in result["modes"].values())
    head = [f"synth {c}" for c in syn] + ([f"real {c}" for c in rl] if has_real else [])
    print("\n| setting | " + " | ".join(head) + " |\n|" + " --- |" * (len(head) + 1))
    sd = result["settings"]["seeds"] > 1
    for name, row in result["modes"].items():
        cells = [_f(row["synth"].get(c), 4 if c in ("jitter", "change") else 3)
                 + (f" ±{row['synth'][c + '_sd']:.3f}" if sd and c in ("lipsync_r", "bas") else "")
                 for c in syn]
        if has_real:
            cells += [_f(row["real"].get(c), 4 if c in ("jitter", "change") else 3)
                      + (f" ±{row['real'][c + '_sd']:.3f}" if sd and c in ("lipsync_r", "bas")
                         else "") for c in rl]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = parse_args(argv)
    import torch

    from audio2pose.pipeline import Audio2PosePipeline, resolve_checkpoint

    torch.set_num_threads(args.threads)

    ck = resolve_checkpoint(args.checkpoint)
    ckdir = args.classifiers or ck
    pipe = Audio2PosePipeline.from_pretrained(ck)
    sets = {"synth": synth_set(args, pipe)}
    real = real_set(args)
    if real is not None:
        sets["real"] = real
    result = {"settings": vars(args), "clips": {k: v["keys"] for k, v in sets.items()},
              "bas_sigma_frames": 3.0}
    t0 = time.time()
    if args.classifier_acc:
        result["classifier_acc"] = classifier_accuracy(pipe, args, ckdir)
    result["modes"] = run_sweep(args, pipe, ckdir, sets)
    result["wall_s"] = time.time() - t0
    print_tables(result)
    print(f"\n{len(result['modes'])} settings, {result['wall_s']:.0f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
