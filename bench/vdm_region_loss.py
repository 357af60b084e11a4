"""Per-region denoising error of trained ``vdm`` models on the same fixed samples (PAR ablation).

Usage::

    python bench/vdm_region_loss.py MODEL_DIR [MODEL_DIR ...] --cache data/vdm/cache128
        [--window 6] [--carry 2] [--repeats 1] [--seed 123] [--json out.json]

Every window of every clip in the latent cache (``csg train renderer``'s ``cache``: latents, skeleton
and PAR maps, audio) is noised at timesteps drawn from one fixed generator, so every model sees the
same (window, reference frame, t, noise, carried frames) samples; no condition is dropped. Printed
per model: the unweighted MSE of v on the latent grid per area (face, hands, body, rest: the
``metrics.jsonl`` columns of training, ``pose2video.vdm.par.par_loss``) and over the whole grid, as
the mean over samples, with the standard error of the mean. These are the training clips (the
cache of the embedded checkpoint), not held-out data: the figure compares how well each model fits
each region after the same number of steps, not generalisation.
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

AREAS = ("face", "hands", "body", "rest")


def evaluate(model_dir: str, files: list[Path], args) -> dict:
    import torch

    from csg.diffusion import schedule as D
    from csg.diffusion.schedule import NoiseSchedule
    from pose2video.vdm.data import PAR_KEYS, LatentWindowDataset
    from pose2video.vdm.model import VdmDenoiser

    model = VdmDenoiser.from_pretrained(model_dir).float().eval()
    mc = model.config
    schedule = NoiseSchedule.cosine(mc.num_train_timesteps, mc.prediction_type)
    ds = LatentWindowDataset(files, window=args.window, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    per: dict[str, list[float]] = {a: [] for a in (*AREAS, "all")}
    for rep in range(args.repeats):
        ds.set_epoch(rep)
        for i in range(len(ds)):
            b = {k: v[None] for k, v in ds[i].items()}
            k = args.carry if float(torch.rand((), generator=gen)) < 0.5 else 0
            t = torch.randint(0, mc.num_train_timesteps, (1,), generator=gen)
            x0 = b["latents"][:, k:]
            noise = torch.randn(x0.shape, generator=gen)
            x_t = D.q_sample(x0, t, noise, schedule.alphas_cumprod)
            context = torch.cat([b["ref"][:, None], b["latents"][:, :k]], 1)
            audio = torch.cat([torch.zeros_like(b["audio"][:, :1]), b["audio"]], 1)
            off = torch.zeros(1, dtype=torch.bool)
            with torch.no_grad():
                out = model(context, x_t, t, b["maps"], audio, drop_pose=off,
                            drop_audio=off).sample
            target = D.training_target(x0, noise, t, schedule.alphas_cumprod,
                                       schedule.prediction_type)
            se = ((out - target) ** 2).mean(2)[0]  # (T, h, w)
            maps = b["par"][0, k:]
            for j, key in enumerate(PAR_KEYS):
                if key in AREAS and float(maps[:, j].sum()) > 0:
                    per[key].append(float((se * maps[:, j]).sum() / maps[:, j].sum()))
            per["all"].append(float(se.mean()))
    return {a: {"mean": float(np.mean(v)) if v else float("nan"),
                "sem": float(np.std(v) / np.sqrt(len(v))) if v else float("nan"),
                "n": len(v)} for a, v in per.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--cache", default="data/vdm/cache128")
    ap.add_argument("--window", type=int, default=6)
    ap.add_argument("--carry", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="passes over the windows")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    files = sorted(Path(args.cache).glob("*.npz"))
    if not files:
        print(f"{args.cache}: no latent cache files; skipped")
        return 0
    res = {}
    print("| model | " + " | ".join(AREAS) + " | all | s |")
    print("| --- |" + " --- |" * (len(AREAS) + 2))
    for m in args.models:
        t0 = time.time()
        r = evaluate(m, files, args)
        res[m] = r
        cells = [f"{r[a]['mean']:.3f} ±{r[a]['sem']:.3f}" for a in (*AREAS, "all")]
        print(f"| {m} | " + " | ".join(cells) + f" | {time.time() - t0:.0f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "models": res}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
