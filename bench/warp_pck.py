"""Does the ``warp`` render show the pose it was asked for? PCK by MediaPipe re-detection.

Usage: ``python bench/warp_pck.py [--every 4] [--alpha 0.1] [--image PATH] [--motion PATH]``

Renders the real DWPose sequence (retargeted onto the photo) with the ``warp`` renderer, re-detects
the skeleton on every ``--every``-th frame with MediaPipe (``csg.extract.extract_pose``) and prints
PCK@alpha of the re-detected against the driving keypoints, per region: a point counts when both
score >= 0.3, and is correct within ``alpha`` x the driving torso size (the ``eval`` convention).
Hands count only where MediaPipe found the hand ("where detected").
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def pck(pred: np.ndarray, gt: np.ndarray, alpha: float, idx: np.ndarray,
        threshold: float = 0.3) -> tuple[int, int]:
    """(correct, counted) over keypoints ``idx`` of (133, 3) ``pred`` against ``gt``."""
    from csg import keypoints as K

    ok = (pred[idx, 2] >= threshold) & (gt[idx, 2] >= threshold)
    d = np.linalg.norm(pred[idx, :2] - gt[idx, :2], axis=-1)
    tol = alpha * float(K.torso_size(gt[None, :, :2])[0])
    return int((ok & (d <= tol)).sum()), int(ok.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--image", type=Path, default=ROOT / "examples/images/moore_anyone-3.png")
    ap.add_argument("--motion", type=Path,
                    default=ROOT / "examples/motion/echomimicv2_pose01.pose.json")
    args = ap.parse_args()

    from csg import keypoints as K
    from csg.errors import NoPersonError
    from csg.extract import extract_pose
    from csg.image import load_image
    from csg.pose import PoseSequence
    from pose2video.warp import WarpConfig, WarpRenderer

    img = load_image(args.image)
    ref = extract_pose(img)
    renderer = WarpRenderer(WarpConfig())
    poses = renderer.driving_poses(PoseSequence.load(args.motion), ref)
    state = renderer.prepare(img, ref)  # protocol v2: once per photo
    regions = {"body": np.arange(K.BODY.start, K.BODY.stop),
               "hands": np.arange(K.HANDS.start, K.HANDS.stop),
               "face": np.arange(K.FACE.start, K.FACE.stop)}
    tally = {name: [0, 0] for name in regions}
    t0, missed = time.perf_counter(), 0
    frames = range(0, len(poses), args.every)
    for t in frames:
        gt = poses.keypoints[t]
        out = next(iter(renderer.render(state, poses.slice(t, t + 1), progress=False)))[0]
        try:
            pred = extract_pose(out).keypoints[0]
        except NoPersonError:
            missed += 1
            continue
        for name, idx in regions.items():
            c, n = pck(pred, gt, args.alpha, idx)
            tally[name][0] += c
            tally[name][1] += n
    print(f"warp PCK@{args.alpha} on {args.image.name}, {len(frames)} frames of {args.motion.name} "
          f"({missed} without a person, {time.perf_counter() - t0:.0f} s)")
    for name, (c, n) in tally.items():
        print(f"  {name:6s} {c / max(n, 1):.3f}  ({c}/{n} keypoints)")


if __name__ == "__main__":
    main()
