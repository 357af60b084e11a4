"""Time writing and reading the skeleton JSON (``csg.pose``) of a long clip.

    python bench/bench_pose_json.py [--seconds 120] [--repeat 3]

A sequence of ``--seconds`` at 25 fps (random float32 coordinates on a 1280x720 canvas and scores
in [0, 1], the digits a generated skeleton has) is saved and loaded ``--repeat`` times; the same
text is also produced one value at a time with numpy's Dragon4 (``format_float_positional``, the
writer before the vectorised one) for the ratio, and the two texts are checked equal.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from csg.pose import PoseSequence


def dragon4_text(kp: np.ndarray) -> str:
    f = lambda v: np.format_float_positional(v, unique=True, trim="-")  # noqa: E731
    return ",\n".join("[" + ", ".join("[" + ", ".join(f(v) for v in pt) + "]" for pt in fr) + "]"
                      for fr in kp)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    T = int(round(a.seconds * 25))
    g = np.random.default_rng(0)
    kp = np.empty((T, 133, 3), np.float32)
    kp[..., 0] = g.uniform(0, 1280, (T, 133))
    kp[..., 1] = g.uniform(0, 720, (T, 133))
    kp[..., 2] = g.uniform(0, 1, (T, 133))
    pose = PoseSequence(kp, 25.0, 1280, 720)
    saves, loads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pose.json"
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            pose.save(path)
            t1 = time.perf_counter()
            back = PoseSequence.load(path)
            loads.append(time.perf_counter() - t1)
            saves.append(t1 - t0)
        assert back.keypoints.tobytes() == kp.tobytes()
        size = path.stat().st_size
        text = path.read_text()
    t0 = time.perf_counter()
    ref = dragon4_text(kp)
    dragon = time.perf_counter() - t0
    same = ref in text
    print(f"{a.seconds:g} s at 25 fps = {T} frames, {size / 2**20:.1f} MiB JSON")
    print(f"save best {min(saves):.2f} s (runs {', '.join(f'{x:.2f}' for x in saves)}) | "
          f"load best {min(loads):.2f} s (runs {', '.join(f'{x:.2f}' for x in loads)})")
    print(f"the frames' text one value at a time (Dragon4): {dragon:.2f} s = "
          f"{dragon / min(saves):.1f}x the whole save; same text: {same}")


if __name__ == "__main__":
    main()
