"""CPU time of stage 1 at default settings: 10 s of audio -> skeleton sequence.

    python bench/bench_audio2pose.py [--checkpoint DIR] [--seconds 10] [--steps N] [--repeat 3]

Prints wall seconds (best of --repeat, after one warm-up), the realtime factor (audio seconds /
generation seconds) and the peak RSS of the process.
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--audio", default=str(ROOT / "examples/audio/whisper_jfk.flac"))
    ap.add_argument("--photo", default=str(ROOT / "examples/images/moore_anyone-3.png"))
    a = ap.parse_args()
    from audio2pose.pipeline import Audio2PosePipeline
    from csg.audio import SAMPLE_RATE, load_audio
    from csg.extract import extract_pose
    from csg.image import load_image

    t0 = time.perf_counter()
    pipe = Audio2PosePipeline.from_pretrained(a.checkpoint)
    load_s = time.perf_counter() - t0
    wav = load_audio(a.audio)
    n = int(a.seconds * SAMPLE_RATE)
    wav = np.resize(wav, n).astype(np.float32)  # the speech repeated to the asked length
    ref = extract_pose(load_image(a.photo))
    run = lambda: pipe(wav, SAMPLE_RATE, ref, steps=a.steps,  # noqa: E731
                       generator=torch.Generator().manual_seed(0), progress=False)
    run()
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        p = run()
        times.append(time.perf_counter() - t0)
    best = min(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steps = a.steps or pipe.sampling.steps
    print(f"audio2pose: {a.seconds:g} s audio, {p.num_frames} frames, {steps} DDIM steps, "
          f"cfg {pipe.sampling.cfg_scale:g}, window {pipe.sampling.window}, "
          f"threads {torch.get_num_threads()}")
    print(f"load {load_s:.2f} s | generate best {best:.2f} s (runs: "
          f"{', '.join(f'{x:.2f}' for x in times)}) | realtime factor {a.seconds / best:.2f}x | "
          f"peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
