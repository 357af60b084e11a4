"""Speed of the ``vdm`` renderer, denoiser and decoder apart.

    python bench/bench_vdm.py [--frames 24] [--size 0] [--steps 12] [--weights DIR] [--threads 2]
                              [--config tiny|cpu|base --device cuda]

Renders ``--frames`` frames of a moving test skeleton on a 512x512 photo canvas and prints seconds
per frame for the denoiser (all DDIM steps and CFG passes of all windows), for the TAEF2 decoder,
and for ``prepare`` (the reference encode), with peak RSS. ``--config`` times an untrained model of
that training config instead of the checkpoint (the ``base`` config at 512 px is meant for a GPU).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=0, help="working long side (0: checkpoint's)")
    ap.add_argument("--steps", type=int, default=0, help="0: the checkpoint's (12 for the teacher)")
    ap.add_argument("--attention", default="", help="dense | global | global+local")
    ap.add_argument("--weights", default="")
    ap.add_argument("--config", default="", help="time an untrained model of this config")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"),
                    help="render.dtype (denoiser and decoder); default: float32")
    args = ap.parse_args()

    import numpy as np
    import torch

    from pose2video.vdm.renderer import vdm_factory
    from tests.helpers import make_moving_pose, make_reference_pose

    torch.set_num_threads(args.threads)
    parts = {}
    if args.config:
        from dataclasses import asdict

        from csg.config import find_config, load_config
        from csg.features import feature_dim
        from pose2video.vdm.config import VdmTrainConfig
        from pose2video.vdm.model import VdmDenoiser

        cfg = load_config(VdmTrainConfig, find_config(f"configs/pose2video/vdm_{args.config}.yaml"))
        dim = feature_dim(cfg.features) // (2 * cfg.features.context + 1)
        parts["model"] = VdmDenoiser(**asdict(cfg.model), audio_dim=dim, sample_size=cfg.size)
        parts["note"] = {"codec": cfg.codec, "size": cfg.size, "window": cfg.window,
                         "carry": cfg.carry, "features": asdict(cfg.features)}
    r = vdm_factory(weights=args.weights, size=args.size, steps=args.steps, device=args.device,
                    attention=args.attention, dtype=args.dtype, **parts)
    H = W = 512
    photo = np.full((H, W, 3), 200, np.uint8)
    t0 = time.perf_counter()
    state = r.prepare(photo, make_reference_pose(H, W))
    t_prep = time.perf_counter() - t0
    timing = {"denoise": 0.0, "decode": 0.0}
    sample, decode = r._sample, r._decode

    def timed(name, fn):
        def f(*a, **k):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            out = fn(*a, **k)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            timing[name] += time.perf_counter() - t
            return out
        return f

    r._sample, r._decode = timed("denoise", sample), timed("decode", decode)
    poses = make_moving_pose(args.frames, H, W)
    t0 = time.perf_counter()
    n = sum(len(c) for c in r.render(state, poses, progress=False))
    wall = time.perf_counter() - t0
    params = sum(p.numel() for p in r.model.parameters()) / 1e6
    print(f"model                : {args.config or 'checkpoint'} ({params:.2f} M params), working "
          f"size {state.work_hw}, window {r.window} / overlap {r.overlap}, {r.steps} steps, "
          f"CFG pose {r.cfg_pose}, attention {r.attention}")
    print(f"device / threads     : {args.device} / {torch.get_num_threads()}, "
          f"{args.dtype or 'float32'}")
    print(f"prepare (encode ref) : {t_prep:.2f} s")
    print(f"denoiser             : {timing['denoise'] / n:.3f} s per frame")
    print(f"decoder              : {timing['decode'] / n:.3f} s per frame (incl. resize to {H}x{W})")
    print(f"render total         : {wall / n:.3f} s per frame, {n} frames")
    print(f"peak RSS             : {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
