"""End-to-end speed and memory of `csg run` on the embedded defaults.

Prints the wall time per stage, the real-time factor (seconds of video per second of wall time) and
the peak RSS. Usage::

    python bench/bench_run.py [--seconds 10] [--photo PATH] [--audio PATH] [--max-side 512]

With --seconds longer than the audio file, the speech is repeated (e.g. --seconds 600 for the
10-minute long-input benchmark).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--photo", default=str(ROOT / "examples/images/moore_anyone-3.png"))
    ap.add_argument("--audio", default=str(ROOT / "examples/audio/whisper_jfk.flac"))
    ap.add_argument("--max-side", type=int, default=512)
    ap.add_argument("--renderer", default="warp")
    ap.add_argument("--square", action="store_true",
                    help="crop the photo to its top square first, so the video is max-side^2")
    args = ap.parse_args()

    from csg.audio import load_audio, save_audio

    wav = load_audio(args.audio, 16000)
    n = int(args.seconds * 16000)
    wav = np.tile(wav, int(np.ceil(n / len(wav))))[:n]
    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(tmp) / "speech.wav"
        save_audio(audio, wav, 16000)
        out = Path(tmp) / "talk.mp4"
        photo = args.photo
        if args.square:
            from csg.image import load_image, save_image

            img = load_image(photo)
            side = min(img.shape[:2])
            photo = str(Path(tmp) / "square.png")
            save_image(photo, img[:side, (img.shape[1] - side) // 2:][:, :side])
        cmd = [sys.executable, "-m", "csg", "run", "--ref", photo, "--audio", str(audio),
               "-o", str(out), "--quiet", "--set", f"render.max_side={args.max_side}",
               "--set", f"limits.max_audio_seconds={max(600.0, args.seconds + 1)}",
               "--renderer", args.renderer]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        record = json.loads(out.with_name("talk.run.json").read_text())
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    t = record["timings"]
    print(f"audio seconds        : {args.seconds:.1f}")
    print(f"video size (H, W)    : {tuple(record['video_size_hw'])}, frames {record['frames']}")
    print(f"process wall time    : {wall:.2f} s (incl. interpreter start and imports)")
    print(f"in-run time          : {t['total']:.2f} s  (extract {t['extract']:.2f}, "
          f"audio2pose {t['audio2pose']:.2f}, render+encode {t['render']:.2f})")
    print(f"real-time factor     : {args.seconds / wall:.2f} (process), "
          f"{record['realtime_factor']:.2f} (in-run)")
    print(f"peak RSS             : {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
