"""The COCO-WholeBody / DWPose 133-keypoint layout: the one place that knows joint indices.

Every other module addresses keypoints through the named slices and index constants here, never
through literal ranges such as ``kps[:, 23:91]``.

| indices | group |
| --- | --- |
| 0-16 | body (COCO-17) |
| 17-22 | feet |
| 23-90 | face, iBUG-68 order |
| 91-111 | left hand (the person's left) |
| 112-132 | right hand |
"""
from __future__ import annotations

import numpy as np

NUM_KEYPOINTS = 133
LAYOUT = "coco_wholebody_133"

# --- groups -------------------------------------------------------------------------------------
BODY = slice(0, 17)
FEET = slice(17, 23)
FACE = slice(23, 91)
LEFT_HAND = slice(91, 112)
RIGHT_HAND = slice(112, 133)
HANDS = slice(91, 133)

_FACE0 = FACE.start
# iBUG-68 sub-groups of the face, as absolute indices into the 133 layout.
JAW = slice(_FACE0 + 0, _FACE0 + 17)
RIGHT_BROW = slice(_FACE0 + 17, _FACE0 + 22)
LEFT_BROW = slice(_FACE0 + 22, _FACE0 + 27)
NOSE_BRIDGE = slice(_FACE0 + 27, _FACE0 + 31)
NOSE_BOTTOM = slice(_FACE0 + 31, _FACE0 + 36)
RIGHT_EYE = slice(_FACE0 + 36, _FACE0 + 42)
LEFT_EYE = slice(_FACE0 + 42, _FACE0 + 48)
OUTER_LIPS = slice(_FACE0 + 48, _FACE0 + 60)
INNER_LIPS = slice(_FACE0 + 60, _FACE0 + 68)
MOUTH = slice(_FACE0 + 48, _FACE0 + 68)

# --- named body joints (COCO-17) --------------------------------------------------------------
NOSE, LEFT_EYE_C, RIGHT_EYE_C, LEFT_EAR, RIGHT_EAR = 0, 1, 2, 3, 4
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW = 5, 6, 7, 8
LEFT_WRIST, RIGHT_WRIST, LEFT_HIP, RIGHT_HIP = 9, 10, 11, 12
LEFT_KNEE, RIGHT_KNEE, LEFT_ANKLE, RIGHT_ANKLE = 13, 14, 15, 16
# feet
LEFT_BIG_TOE, LEFT_SMALL_TOE, LEFT_HEEL = 17, 18, 19
RIGHT_BIG_TOE, RIGHT_SMALL_TOE, RIGHT_HEEL = 20, 21, 22
# face landmarks used as anchors
CHIN = _FACE0 + 8
NOSE_TIP = _FACE0 + 30
UPPER_INNER_LIP = _FACE0 + 62  # iBUG 62: inner lip, top centre
LOWER_INNER_LIP = _FACE0 + 66  # iBUG 66: inner lip, bottom centre
UPPER_OUTER_LIP = _FACE0 + 51
LOWER_OUTER_LIP = _FACE0 + 57
RIGHT_EYE_UPPER = (_FACE0 + 37, _FACE0 + 38)
RIGHT_EYE_LOWER = (_FACE0 + 41, _FACE0 + 40)
LEFT_EYE_UPPER = (_FACE0 + 43, _FACE0 + 44)
LEFT_EYE_LOWER = (_FACE0 + 47, _FACE0 + 46)
# hands: the wrist is point 0 of each 21-point hand
HAND_SIZE = 21
LEFT_HAND_ROOT = LEFT_HAND.start
RIGHT_HAND_ROOT = RIGHT_HAND.start

_BODY_NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
]
_FEET_NAMES = ["left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe",
               "right_heel"]
_HAND_NAMES = ["wrist"] + [f"{f}_{j}" for f in ("thumb", "index", "middle", "ring", "pinky")
                           for j in range(1, 5)]
KEYPOINT_NAMES: list[str] = (
    _BODY_NAMES + _FEET_NAMES + [f"face_{i}" for i in range(68)]
    + [f"left_hand_{n}" for n in _HAND_NAMES] + [f"right_hand_{n}" for n in _HAND_NAMES]
)
assert len(KEYPOINT_NAMES) == NUM_KEYPOINTS

# --- skeleton edges (for drawing and bone-length checks) --------------------------------------
BODY_EDGES: list[tuple[int, int]] = [
    (LEFT_SHOULDER, RIGHT_SHOULDER), (LEFT_SHOULDER, LEFT_ELBOW), (LEFT_ELBOW, LEFT_WRIST),
    (RIGHT_SHOULDER, RIGHT_ELBOW), (RIGHT_ELBOW, RIGHT_WRIST), (LEFT_SHOULDER, LEFT_HIP),
    (RIGHT_SHOULDER, RIGHT_HIP), (LEFT_HIP, RIGHT_HIP), (LEFT_HIP, LEFT_KNEE),
    (LEFT_KNEE, LEFT_ANKLE), (RIGHT_HIP, RIGHT_KNEE), (RIGHT_KNEE, RIGHT_ANKLE),
    (NOSE, LEFT_EYE_C), (NOSE, RIGHT_EYE_C), (LEFT_EYE_C, LEFT_EAR), (RIGHT_EYE_C, RIGHT_EAR),
]
FEET_EDGES: list[tuple[int, int]] = [
    (LEFT_ANKLE, LEFT_HEEL), (LEFT_HEEL, LEFT_BIG_TOE), (LEFT_BIG_TOE, LEFT_SMALL_TOE),
    (RIGHT_ANKLE, RIGHT_HEEL), (RIGHT_HEEL, RIGHT_BIG_TOE), (RIGHT_BIG_TOE, RIGHT_SMALL_TOE),
]
# 21-point hand edges, relative to the hand's root index.
HAND_EDGES: list[tuple[int, int]] = [
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11),
    (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
]

# Regions (body / face / mouth + jaw / hands / non-face / background) live in csg.regions.


def indices(*groups: slice) -> np.ndarray:
    """Concatenate named slices into one sorted index array, e.g. ``indices(BODY, HANDS)``."""
    out = np.concatenate([np.arange(NUM_KEYPOINTS)[g] for g in groups])
    return np.unique(out)


def group_mask(*groups: slice) -> np.ndarray:
    """(133,) bool mask that is True on the given groups."""
    m = np.zeros(NUM_KEYPOINTS, dtype=bool)
    for g in groups:
        m[g] = True
    return m


def face_height(xy: np.ndarray) -> np.ndarray:
    """Face height in pixels: the brow-to-chin distance.

    xy: (..., 133, 2) pixel coordinates. Returns (...,). Uses the mean brow point to the chin.
    """
    brows = np.concatenate([xy[..., RIGHT_BROW, :], xy[..., LEFT_BROW, :]], axis=-2).mean(axis=-2)
    return np.linalg.norm(xy[..., CHIN, :] - brows, axis=-1)


def mouth_opening(xy: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Inner-lip gap over face height, a scale-free mouth opening in [0, ~0.5].

    xy: (..., 133, 2). Returns (...,). Mean vertical gap of the three inner-lip pairs (61/67, 62/66,
    63/65 in iBUG numbering) divided by :func:`face_height`.
    """
    top = xy[..., [INNER_LIPS.start + 1, INNER_LIPS.start + 2, INNER_LIPS.start + 3], :]
    bottom = xy[..., [INNER_LIPS.start + 7, INNER_LIPS.start + 6, INNER_LIPS.start + 5], :]
    gap = np.linalg.norm(bottom - top, axis=-1).mean(axis=-1)
    return gap / np.maximum(face_height(xy), eps)


def torso_size(xy: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Torso scale in pixels: shoulder width, or shoulder-to-hip height if larger. (...,)."""
    sw = np.linalg.norm(xy[..., LEFT_SHOULDER, :] - xy[..., RIGHT_SHOULDER, :], axis=-1)
    sh = (xy[..., [LEFT_SHOULDER, RIGHT_SHOULDER], :].mean(axis=-2)
          - xy[..., [LEFT_HIP, RIGHT_HIP], :].mean(axis=-2))
    return np.maximum(np.maximum(sw, np.linalg.norm(sh, axis=-1)), eps)
