"""The working size: photos are rendered at a bounded size, skeletons scaled to match.

``csg run`` and ``csg render`` both resize the photo so its longer side is at most ``max_side``
(``render.max_side`` / ``--max-side``, 512 by default) before stage 2, and scale the skeletons
(which stay on the photo's own canvas in the JSON files) onto that working canvas.
"""
from __future__ import annotations

import numpy as np

from .pose import PoseSequence


def working_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(H, W) of the photo resized so the longer side is <= ``max_side``, both sides even.

    ``max_side = 0`` keeps the size (rounded down to even, which H.264 needs).
    """
    scale = 1.0 if max_side <= 0 else min(1.0, max_side / max(height, width))
    h = max(2, int(round(height * scale)) // 2 * 2)
    w = max(2, int(round(width * scale)) // 2 * 2)
    return h, w


def resize_to_working(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` (H, W, 3) resized (INTER_AREA) to :func:`working_size`; the same array if it is
    already that size."""
    h, w = working_size(image.shape[0], image.shape[1], max_side)
    if (h, w) == image.shape[:2]:
        return image
    import cv2

    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def rescale_pose(pose: PoseSequence, height: int, width: int) -> PoseSequence:
    """Map keypoints from ``pose``'s canvas onto a ``height`` x ``width`` canvas (scores kept)."""
    if (pose.height, pose.width) == (height, width):
        return pose
    k = pose.keypoints.copy()
    k[..., 0] *= width / pose.width
    k[..., 1] *= height / pose.height
    return pose.replace(keypoints=k, width=width, height=height)
