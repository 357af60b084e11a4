"""Speed of the ``warp`` renderer at 512x512 on the CPU.

Usage::

    python bench/bench_warp.py [--frames 200] [--size 512] [--chunk 16] [--image PATH] [--motion PATH]
    python bench/bench_warp.py --against REV [--rounds 3]   # the same, alternating with git REV

Crops the upper body of a real photo to a square, drives it with the real DWPose sequence
(retargeted onto the photo, face stabilised: the whole ``render`` path in windows of ``--chunk``
frames, the renderer's default window as ``csg run`` uses it) and prints per-frame time, fps, the
realtime factor against 25 fps, the CPU time per frame and the peak resident memory. Rig
preparation (segmentation, masks, inpainting; v2 prepare) is timed apart.

``--against REV`` measures the renderer of a git revision (``git archive REV pose2video``, run
in a subprocess with that copy first on the path) and this checkout's, alternating ``--rounds``
times in one run, and prints the median fps of each and their ratio: on a shared machine only
such back-to-back ratios are comparable.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _first(*paths: Path) -> Path:
    for p in paths:
        if p.is_file():
            return p
    raise SystemExit(f"none of these inputs exist: {', '.join(map(str, paths))}")


def measure(args: argparse.Namespace) -> dict:
    import cv2

    from csg.extract import extract_pose
    from csg.image import load_image
    from csg.pose import PoseSequence
    import pose2video
    from pose2video.warp import WarpConfig, WarpRenderer

    image_path = args.image or _first(ROOT / "examples/images/moore_anyone-3.png")
    motion_path = args.motion or _first(ROOT / "examples/motion/echomimicv2_pose01.pose.json")
    img = load_image(image_path)
    side = min(img.shape[0] // 2, img.shape[1])  # the upper half: a half-body square
    x0 = (img.shape[1] - side) // 2
    img = cv2.resize(img[:side, x0:x0 + side], (args.size, args.size), interpolation=cv2.INTER_AREA)
    ref = extract_pose(img)
    renderer = WarpRenderer(WarpConfig())
    drive = renderer.driving_poses(PoseSequence.load(motion_path), ref)  # onto the photo's canvas
    t0 = time.perf_counter()
    state = renderer.prepare(img, ref)  # protocol v2: once per photo
    prep = time.perf_counter() - t0
    n = args.frames
    reps = -(-n // len(drive))
    poses = drive.replace(keypoints=np.concatenate([drive.keypoints] * reps)[:n])
    chunk = args.chunk or renderer.config.window
    for _ in renderer.render(state, poses.slice(0, min(n, 8)), chunk=chunk, progress=False):
        pass  # warm-up (first calls into cv2 / numpy)
    per, c0 = [], time.process_time()
    t = t_start = time.perf_counter()
    for frames in renderer.render(state, poses, chunk=chunk, progress=False):  # the real path
        now = time.perf_counter()
        per += [(now - t) / len(frames)] * len(frames)
        t = now
    wall = time.perf_counter() - t_start
    cpu = time.process_time() - c0
    per = np.array(per)
    return {"renderer": str(Path(pose2video.__file__).parent), "image": image_path.name,
            "motion": motion_path.name, "size": args.size, "frames": n, "chunk": chunk,
            "prepare_s": prep, "ms_mean": 1e3 * wall / n, "ms_median": 1e3 * float(np.median(per)),
            "ms_p95": 1e3 * float(np.percentile(per, 95)), "fps": n / wall,
            "cpu_ms": 1e3 * cpu / n, "load": os.getloadavg()[0],
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def report(r: dict) -> None:
    print(f"warp {r['size']}x{r['size']}, {r['frames']} frames of {r['motion']} on {r['image']} "
          f"(windows of {r['chunk']}; {r['renderer']})")
    print(f"  prepare (segmentation, masks, inpainting; v2 prepare): {r['prepare_s']:.2f} s")
    print(f"  per frame: mean {r['ms_mean']:.1f} ms, median window {r['ms_median']:.1f} ms, "
          f"p95 {r['ms_p95']:.1f} ms; CPU {r['cpu_ms']:.1f} ms")
    print(f"  fps: {r['fps']:.1f}   realtime factor vs 25 fps: {r['fps'] / 25:.2f}x   "
          f"(load average {r['load']:.1f})")
    print(f"  peak RSS: {r['rss_mb']:.0f} MB")


def against(args: argparse.Namespace) -> None:
    """Alternate the renderer of git revision ``args.against`` with this checkout's."""
    with tempfile.TemporaryDirectory() as tmp:
        arch = subprocess.run(["git", "-C", str(ROOT), "archive", args.against, "pose2video"],
                              check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=arch, check=True)
        base = [sys.executable, str(Path(__file__).resolve()), "--json", "--frames",
                str(args.frames), "--size", str(args.size), "--chunk", str(args.chunk or 0)]
        for opt in ("image", "motion"):
            if getattr(args, opt) is not None:
                base += [f"--{opt}", str(getattr(args, opt))]
        runs: dict[str, list[dict]] = {args.against: [], "this checkout": []}
        for _ in range(args.rounds):
            for name, path in ((args.against, tmp), ("this checkout", "")):
                env = dict(os.environ, CSG_BENCH_WARP_PATH=path)
                out = subprocess.run(base, env=env, check=True, capture_output=True, text=True)
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"warp {args.size}x{args.size}, {args.frames} frames, {args.rounds} alternating rounds")
    print("| renderer | fps (median of rounds) | per frame ms | CPU ms per frame | prepare s | load |")
    print("| --- | --- | --- | --- | --- | --- |")
    med = {}
    for name, rs in runs.items():
        med[name] = float(np.median([r["fps"] for r in rs]))
        each = ", ".join(f"{r['fps']:.1f}" for r in rs)
        print(f"| {name} | {med[name]:.1f} ({each}) | "
              f"{np.median([r['ms_mean'] for r in rs]):.1f} | {np.median([r['cpu_ms'] for r in rs]):.1f} | "
              f"{np.median([r['prepare_s'] for r in rs]):.2f} | "
              f"{np.mean([r['load'] for r in rs]):.1f} |")
    print(f"ratio (this checkout / {args.against}): {med['this checkout'] / med[args.against]:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=0, help="frames per render window (0: the "
                    "renderer's default, 16)")
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument("--motion", type=Path, default=None)
    ap.add_argument("--against", default=None, metavar="REV",
                    help="also time the renderer of this git revision, alternating")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON line (for --against)")
    args = ap.parse_args()
    if args.against:
        against(args)
        return
    path = os.environ.get("CSG_BENCH_WARP_PATH")
    if path:  # a git revision's renderer (see --against)
        sys.path.insert(0, path)
    r = measure(args)
    if path and not r["renderer"].startswith(path):
        raise SystemExit(f"expected the renderer from {path}, got {r['renderer']}")
    print(json.dumps(r)) if args.json else report(r)


if __name__ == "__main__":
    main()
