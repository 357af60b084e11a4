"""CPU seconds of the ``csg run`` stage-1 worker's work, each in a fresh process.

What the forked worker of :mod:`pipeline.worker` does, one after the other, timed with
``time.process_time`` (CPU seconds: less sensitive than wall time on the shared machine):

1. ``load``: ``pipe.audio2pose`` of a ``CoSpeechPipeline.from_config()`` (imports torch and the
   stage-1 code, reads the weights);
2. ``preimport``: the worker's ``PREIMPORT`` modules;
3. ``generate``: ``pipe.generate_poses`` for ``--seconds`` of the JFK speech on a synthetic
   reference skeleton (the run config's checkpoint, steps and CFG).

It prints each round as one JSON line, with the heavy packages that ended up imported. ``--root``
runs another checkout's code (e.g. a ``git worktree`` of an older commit) for a before/after in
one sitting; the checkout's ``configs/default.yaml`` picks the checkpoint.

Usage::

    python bench/bench_stage1_load.py [--rounds 2] [--seconds 4] [--root /tmp/csg_wt_before]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("diffusers", "transformers", "torch._dynamo", "scipy.signal", "scipy.ndimage")


def child(seconds: float) -> None:
    t0 = time.process_time()
    w0 = time.perf_counter()
    from csg.audio import load_audio
    from pipeline.pipeline import CoSpeechPipeline
    from pipeline.worker import PREIMPORT, _preimport
    from tests.helpers import make_reference_pose

    pipe = CoSpeechPipeline.from_config()
    t1 = time.process_time()
    pipe.audio2pose  # noqa: B018 - the load being timed
    t2 = time.process_time()
    _preimport(PREIMPORT)
    t3 = time.process_time()
    wav = load_audio("examples/audio/whisper_jfk.flac", 16000)[:int(seconds * 16000)]
    pipe.generate_poses(wav, 16000, make_reference_pose(), generator=pipe.generators(0)["audio2pose"],
                        guidance=None, progress=False)
    t4 = time.process_time()
    print("RESULT " + json.dumps({
        "checkpoint": pipe.audio2pose.name, "load_cpu": round(t2 - t1, 2),
        "preimport_cpu": round(t3 - t2, 2), "generate_cpu": round(t4 - t3, 2),
        "total_cpu": round(t4 - t0, 2), "wall": round(time.perf_counter() - w0, 2),
        "load_avg": round(os.getloadavg()[0], 1),
        "heavy_imported": [m for m in HEAVY if m in sys.modules]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[1]),
                    help="checkout whose code runs (default: this one)")
    ap.add_argument("--_child", dest="child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        sys.path.insert(0, os.getcwd())
        child(a.seconds)
        return
    for _ in range(a.rounds):
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_child",
                              "--seconds", str(a.seconds)], cwd=a.root, capture_output=True,
                             text=True, check=True)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        print(line[len("RESULT "):], flush=True)


if __name__ == "__main__":
    main()
