"""Person segmentation for the warp's arm masks (MediaPipe Pose, bundled weights, lazy import)."""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def person_mask(image: np.ndarray) -> np.ndarray | None:
    """(H, W) float32 person probability in [0, 1] for an (H, W, 3) uint8 RGB photo.

    Uses MediaPipe Pose (model_complexity=1) with segmentation; its model ships inside the
    mediapipe wheel, so this works offline. Returns None (and logs why) when MediaPipe is not
    usable or finds nobody; callers then fall back to skeleton-only masks.
    """
    from csg.extract import import_mediapipe, quiet_mediapipe

    try:
        mp = import_mediapipe()
    except ImportError as e:  # pragma: no cover - mediapipe is a dependency
        log.warning("person segmentation unavailable (%s); using skeleton-only masks", e)
        return None

    img = np.ascontiguousarray(image)
    with quiet_mediapipe(), mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                                   enable_segmentation=True) as pose:
        res = pose.process(img)
    if res.segmentation_mask is None:
        log.warning("person segmentation found nobody; using skeleton-only masks")
        return None
    return np.clip(np.asarray(res.segmentation_mask, np.float32), 0.0, 1.0)
