"""CPU time of stage 1 at default settings: 10 s of audio -> skeleton sequence.

    python bench/bench_audio2pose.py [--checkpoint DIR] [--seconds 10] [--steps N] [--repeat 3]
    python bench/bench_audio2pose.py --cold [--checkpoint DIR] [--seconds 10 120] [--repeat 3]

Warm (default): prints wall seconds (best of --repeat, after one warm-up), the realtime factor
(audio seconds / generation seconds) and the peak RSS of the process: the model part of a
long-lived process, not what a user of the CLI waits for.

``--cold``: what a user waits for. For each length, writes the speech (``--audio`` repeated) as a
WAV and the reference skeleton of ``--photo`` as JSON once, then runs ``csg pose generate --audio
A --ref REF.json -o OUT.json --quiet [--checkpoint C]`` as a fresh process ``--repeat`` times and
prints the wall time of each (interpreter start, imports, model load, features, sampling, output),
and the realtime factor including that start-up. The model part alone is the warm figure
(``--seconds 10`` / ``--seconds 120`` without ``--cold``).
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
    ap.add_argument("--cold", action="store_true",
                    help="time `csg pose generate` as fresh processes (what a user waits for)")
    ap.add_argument("--lengths", type=float, nargs="+", default=[10.0, 120.0],
                    help="--cold: seconds of speech")
    a = ap.parse_args()
    if a.cold:
        return cold(a)
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
    times, cpu = [], []
    for _ in range(a.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        p = run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    best = min(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steps = a.steps or pipe.sampling.steps
    print(f"audio2pose: {a.seconds:g} s audio, {p.num_frames} frames, {steps} DDIM steps, "
          f"cfg {pipe.sampling.cfg_scale:g}, window {pipe.sampling.window}, "
          f"threads {torch.get_num_threads()}")
    print(f"load {load_s:.2f} s | generate best {best:.2f} s (runs: "
          f"{', '.join(f'{x:.2f}' for x in times)}) | realtime factor {a.seconds / best:.2f}x | "
          f"peak RSS {rss:.0f} MiB")
    # CPU seconds of this process per call: close to the quiet-machine wall time with one thread
    # when other jobs share the cores (wall time then measures the queue, not the work)
    print(f"cpu time best {min(cpu):.2f} s (threads {torch.get_num_threads()}) | "
          f"realtime factor by cpu time {a.seconds / min(cpu):.2f}x")


def cold(a) -> None:
    """``csg pose generate`` from the shell, fresh processes (module doc)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    from csg.audio import SAMPLE_RATE, load_audio, save_audio
    from csg.extract import extract_pose
    from csg.image import load_image

    csg = shutil.which("csg") or str(Path(sys.executable).parent / "csg")
    wav = load_audio(a.audio)
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref.json"
        extract_pose(load_image(a.photo)).save(ref)
        print(f"csg pose generate, fresh processes; checkpoint {a.checkpoint or 'default'}; "
              f"reference {Path(a.photo).name} as JSON")
        for sec in a.lengths:
            wpath = Path(tmp) / f"speech_{sec:g}s.wav"
            save_audio(wpath, np.resize(wav, int(sec * SAMPLE_RATE)).astype(np.float32), SAMPLE_RATE)
            cmd = [csg, "pose", "generate", "--audio", str(wpath), "--ref", str(ref), "-o",
                   str(Path(tmp) / "out.json"), "--quiet", "--overwrite"]
            if a.checkpoint:
                cmd += ["--checkpoint", a.checkpoint]
            if a.steps:
                cmd += ["--steps", str(a.steps)]
            walls, cpus = [], []
            for _ in range(a.repeat):
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                walls.append(time.perf_counter() - t0)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
            best = min(walls)
            print(f"{sec:g} s speech: wall best {best:.2f} s (runs: "
                  f"{', '.join(f'{x:.2f}' for x in walls)}) | realtime factor {sec / best:.2f}x "
                  f"(including start-up) | child cpu time best {min(cpus):.2f} s")


if __name__ == "__main__":
    main()
