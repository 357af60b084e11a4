"""Speed of the ``warp`` renderer at 512x512 on the CPU.

Usage: ``python bench/bench_warp.py [--frames 200] [--size 512] [--image PATH] [--motion PATH]``

Crops the upper body of a real photo to a square, drives it with the real DWPose sequence
(retargeted onto the photo, face stabilised: the whole ``render`` path, one frame per chunk) and
prints per-frame time, fps, the realtime factor against 25 fps and the peak resident memory. Rig
preparation (segmentation, masks, inpainting; v2 prepare) is timed apart.
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _first(*paths: Path) -> Path:
    for p in paths:
        if p.is_file():
            return p
    raise SystemExit(f"none of these inputs exist: {', '.join(map(str, paths))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument("--motion", type=Path, default=None)
    args = ap.parse_args()

    import cv2

    from csg.extract import extract_pose
    from csg.image import load_image
    from csg.pose import PoseSequence
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
    times = []
    t = time.perf_counter()
    for _ in renderer.render(state, poses, chunk=1, progress=False):  # the real path
        now = time.perf_counter()
        times.append(now - t)
        t = now
    times = np.array(times[5:]) if n > 10 else np.array(times)
    fps = 1.0 / times.mean()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB on Linux
    print(f"warp {args.size}x{args.size}, {n} frames of {motion_path.name} on {image_path.name}")
    print(f"  prepare (segmentation, masks, inpainting; v2 prepare): {prep:.2f} s")
    print(f"  per frame: mean {1e3 * times.mean():.1f} ms, median {1e3 * np.median(times):.1f} ms, "
          f"p95 {1e3 * np.percentile(times, 95):.1f} ms")
    print(f"  fps: {fps:.1f}   realtime factor vs 25 fps: {fps / 25:.2f}x")
    print(f"  peak RSS: {rss:.0f} MB")


if __name__ == "__main__":
    main()
