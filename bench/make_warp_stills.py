"""Regenerate the ``warp`` stills in ``docs/figures/warp_*.png``.

Usage: ``python bench/make_warp_stills.py [--out docs/figures] [--motion PATH]``

Drives the example photos with the real DWPose sequence (``examples/motion/echomimicv2_pose01``),
retargeted onto each photo, and picks frames by the retargeted skeleton: the most raised hand (the
wrist highest relative to its shoulder) and the widest mouth opening. Writes:

- ``warp_raised_hand.png``: photo | most raised hand (upper 60 % of the body);
- ``warp_moore_frames.png``: three frames on ``moore_anyone-3.png``;
- ``warp_open_mouth.png``: face crops, photo | widest mouth;
- ``warp_mimicmotion_frames.png``: three frames on ``mimicmotion_demo1.jpg`` (hands hidden).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _resize(img: np.ndarray, height: int) -> np.ndarray:
    import cv2

    w = int(round(img.shape[1] * height / img.shape[0]))
    return cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA)


def _setup(image_path: Path, motion_path: Path, long_side: int):
    """(photo, reference, retargeted poses, warp state, renderer) for one photo, downsized to
    ``long_side``."""
    import cv2

    from csg.extract import extract_pose
    from csg.image import load_image
    from csg.pose import PoseSequence
    from pose2video.warp import WarpConfig, WarpRenderer

    img = load_image(image_path)
    f = min(1.0, long_side / max(img.shape[:2]))
    if f < 1.0:
        img = cv2.resize(img, (int(img.shape[1] * f), int(img.shape[0] * f)),
                         interpolation=cv2.INTER_AREA)
    ref = extract_pose(img)
    renderer = WarpRenderer(WarpConfig())
    poses = renderer.driving_poses(PoseSequence.load(motion_path), ref)
    return img, ref, poses, renderer.prepare(img, ref), renderer


def _frame(setup, t: int) -> np.ndarray:
    img, _, poses, state, renderer = setup  # protocol v2: prepare once, render frame t
    return next(iter(renderer.render(state, poses.slice(t, t + 1), progress=False)))[0]


def raised_frame(poses) -> int:
    """The frame whose higher wrist is highest above its shoulder, in torso sizes."""
    from csg import keypoints as K

    xy, ts = poses.xy, K.torso_size(poses.xy)
    lift = np.maximum(xy[:, K.RIGHT_SHOULDER, 1] - xy[:, K.RIGHT_WRIST, 1],
                      xy[:, K.LEFT_SHOULDER, 1] - xy[:, K.LEFT_WRIST, 1]) / ts
    return int(np.argmax(lift))


def open_frame(poses) -> int:
    from csg import keypoints as K

    return int(np.argmax(K.mouth_opening(poses.xy)))


def _face_box(ref, img: np.ndarray) -> tuple[int, int, int, int]:
    from csg import keypoints as K

    face = ref.xy[0, K.FACE]
    c, half = face.mean(0), 1.1 * (face.max(0) - face.min(0)).max()
    y0, x0 = int(max(c[1] - half, 0)), int(max(c[0] - half, 0))
    return y0, int(min(c[1] + half, img.shape[0])), x0, int(min(c[0] + half, img.shape[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs/figures")
    ap.add_argument("--motion", type=Path,
                    default=ROOT / "examples/motion/echomimicv2_pose01.pose.json")
    args = ap.parse_args()
    from csg.image import save_image

    args.out.mkdir(parents=True, exist_ok=True)
    moore = _setup(ROOT / "examples/images/moore_anyone-3.png", args.motion, 922)
    img, ref, poses = moore[:3]
    up, op = raised_frame(poses), open_frame(poses)
    print(f"moore: raised hand at frame {up}, widest mouth at frame {op}")
    raised = _frame(moore, up)
    cut = int(0.6 * img.shape[0])
    save_image(args.out / "warp_raised_hand.png", np.hstack([img[:cut], raised[:cut]]))
    picks = [int(t) for t in np.linspace(0, len(poses) - 1, 4)[1:3]] + [up]
    save_image(args.out / "warp_moore_frames.png",
               np.hstack([_resize(_frame(moore, t), 507) for t in picks]))
    y0, y1, x0, x1 = _face_box(ref, img)
    save_image(args.out / "warp_open_mouth.png",
               np.hstack([_resize(img[y0:y1, x0:x1], 320), _resize(_frame(moore, op)[y0:y1, x0:x1],
                                                                    320)]))
    mimic = _setup(ROOT / "examples/images/mimicmotion_demo1.jpg", args.motion, 960)
    picks = [open_frame(mimic[2]), raised_frame(mimic[2]), len(mimic[2]) // 2]
    save_image(args.out / "warp_mimicmotion_frames.png",
               np.hstack([_resize(_frame(mimic, t), 432) for t in picks]))
    print(f"wrote 4 stills to {args.out}")


if __name__ == "__main__":
    main()
