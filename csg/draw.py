"""Skeleton images in the DWPose / OpenPose look, the conditioning format pose2video models expect.

- body: the OpenPose-18 limbs (neck = shoulder midpoint) as filled ellipses in OpenPose's 18
  colours at 60 % brightness, joints as dots in full colour;
- feet: ankle-heel-toe lines in the colour of their leg;
- hands: 20 edges coloured along the HSV rainbow, blue joint dots;
- face: 68 white dots.

A limb or point is drawn only when its (minimum) score reaches ``threshold``; below full confidence
it is blended in with alpha = score, so uncertain parts look faint. Sizes scale with the canvas
(DWPose's 4 px sticks at 512 px).
"""
from __future__ import annotations

import colorsys
import math
from typing import Iterator

import numpy as np

from . import keypoints as K

# OpenPose-18 joints as COCO-WholeBody indices; -1 is the neck (shoulder midpoint).
_NECK = -1
OP18 = [K.NOSE, _NECK, K.RIGHT_SHOULDER, K.RIGHT_ELBOW, K.RIGHT_WRIST, K.LEFT_SHOULDER,
        K.LEFT_ELBOW, K.LEFT_WRIST, K.RIGHT_HIP, K.RIGHT_KNEE, K.RIGHT_ANKLE, K.LEFT_HIP,
        K.LEFT_KNEE, K.LEFT_ANKLE, K.RIGHT_EYE_C, K.LEFT_EYE_C, K.RIGHT_EAR, K.LEFT_EAR]
# OpenPose limb sequence over OP18 indices (0-based), in OpenPose's colour order.
OP18_LIMBS = [(1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
              (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17)]
OP18_COLORS = [(255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0),
               (85, 255, 0), (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255),
               (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255), (170, 0, 255),
               (255, 0, 255), (255, 0, 170), (255, 0, 85)]  # RGB
HAND_COLORS = [tuple(int(c * 255) for c in colorsys.hsv_to_rgb(i / len(K.HAND_EDGES), 1.0, 1.0))
               for i in range(len(K.HAND_EDGES))]
HAND_POINT_COLOR = (0, 0, 255)
FACE_COLOR = (255, 255, 255)
# feet edges take the colour of the leg limb they continue (OP18_LIMBS index 11: left lower leg,
# index 8: right lower leg)
_FEET_COLORS = [OP18_COLORS[11]] * 3 + [OP18_COLORS[8]] * 3


def sizes_for(size_hw: tuple[int, int], stickwidth: float | None = None) -> dict[str, int]:
    """Pixel sizes scaled from DWPose's at 512 px: stick half-width 4, body dot 4, hand line 2,
    hand dot 4, face dot 3; never below 1."""
    s = min(size_hw) / 512.0
    stick = stickwidth if stickwidth is not None else 4 * s
    return dict(stick=max(1, round(stick)), body_dot=max(1, round(4 * s)),
                hand_line=max(1, round(2 * s)), hand_dot=max(1, round(4 * s)),
                face_dot=max(1, round(3 * s)))


def op18(keypoints: np.ndarray) -> np.ndarray:
    """(133, 3) -> (18, 3) OpenPose-18 joints; the neck is the shoulder midpoint with the lower
    shoulder score."""
    kp = np.asarray(keypoints, dtype=np.float32)
    out = np.empty((18, 3), np.float32)
    for i, j in enumerate(OP18):
        if j == _NECK:
            sh = kp[[K.LEFT_SHOULDER, K.RIGHT_SHOULDER]]
            out[i, :2] = sh[:, :2].mean(0)
            out[i, 2] = sh[:, 2].min()
        else:
            out[i] = kp[j]
    return out


def draw_pose(keypoints: np.ndarray, size_hw: tuple[int, int], *, canvas: np.ndarray | None = None,
              threshold: float = 0.3, stickwidth: float | None = None) -> np.ndarray:
    """Draw one (133, 3) skeleton in pixel coordinates onto a black ``size_hw`` canvas (or a copy
    of ``canvas``, (H, W, 3) uint8 RGB). Returns ``(H, W, 3)`` uint8 RGB."""
    h, w = (int(v) for v in size_hw)
    if canvas is None:
        img = np.zeros((h, w, 3), np.uint8)
    else:
        if canvas.shape != (h, w, 3) or canvas.dtype != np.uint8:
            raise ValueError(f"canvas must be ({h}, {w}, 3) uint8, got {canvas.shape} "
                             f"{canvas.dtype}")
        img = canvas.copy()
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.shape != (K.NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must be ({K.NUM_KEYPOINTS}, 3), got {kp.shape}")
    sz = sizes_for((h, w), stickwidth)
    _draw_body(img, op18(kp), sz, threshold)
    _draw_feet(img, kp, sz, threshold)
    for hand in (K.LEFT_HAND, K.RIGHT_HAND):
        _draw_hand(img, kp[hand], sz, threshold)
    _draw_points(img, kp[K.FACE], FACE_COLOR, sz["face_dot"], threshold)
    return img


def draw_sequence(pose, size_hw: tuple[int, int] | None = None, **kwargs) -> Iterator[np.ndarray]:
    """Yield one ``(H, W, 3)`` uint8 frame per frame of a :class:`csg.pose.PoseSequence`.

    ``size_hw`` defaults to the pose's canvas; another size rescales the coordinates to it.
    ``kwargs`` go to :func:`draw_pose`.
    """
    h, w = size_hw if size_hw is not None else pose.size_hw
    scale = np.array([w / pose.width, h / pose.height, 1.0], np.float32)
    for frame in pose.keypoints:
        yield draw_pose(frame * scale, (h, w), **kwargs)


# --- primitives -----------------------------------------------------------------------------------
FAR = 1e6
"""Points with a coordinate beyond +-FAR pixels are not drawn (OpenCV takes int32 coordinates)."""


def _ok(p: np.ndarray) -> bool:
    return bool((np.abs(p[:2]) < FAR).all())  # (False for NaN and inf too)


def _alpha(score: float, threshold: float) -> float:
    return 0.0 if not score >= threshold else float(min(score, 1.0))


def _blend(img: np.ndarray, pts: np.ndarray, pad: int, alpha: float, draw) -> None:
    """Run ``draw(region, offset_xy)`` on a copy of the region around ``pts`` (N, 2) and blend it
    back with ``alpha`` (in place). Alpha 1 draws directly."""
    if alpha >= 0.999:
        draw(img, np.zeros(2))
        return
    h, w = img.shape[:2]
    xs, ys = pts[:, 0].tolist(), pts[:, 1].tolist()  # (Python scalars: this runs per primitive)
    x0, y0 = max(math.floor(min(xs)) - pad - 1, 0), max(math.floor(min(ys)) - pad - 1, 0)
    x1, y1 = min(math.ceil(max(xs)) + pad + 2, w), min(math.ceil(max(ys)) + pad + 2, h)
    if x0 >= x1 or y0 >= y1:
        return
    roi = img[y0:y1, x0:x1]
    layer = roi.copy()
    draw(layer, np.array([x0, y0], np.float64))
    roi[:] = (roi.astype(np.float32) * (1 - alpha) + layer.astype(np.float32) * alpha + 0.5
              ).astype(np.uint8)


def _limb(img, a, b, color, half_width, alpha):
    import cv2

    pts = np.stack([a[:2], b[:2]]).astype(np.float64)

    def draw(canvas, off):
        (xa, ya), (xb, yb) = pts - off
        length = float(np.hypot(xa - xb, ya - yb))
        angle = float(np.degrees(np.arctan2(ya - yb, xa - xb)))
        poly = cv2.ellipse2Poly((int(round((xa + xb) / 2)), int(round((ya + yb) / 2))),
                                (int(round(length / 2)), int(half_width)), int(round(angle)), 0,
                                360, 1)
        cv2.fillConvexPoly(canvas, poly, color, lineType=cv2.LINE_AA)

    _blend(img, pts, int(half_width), alpha, draw)


def _line(img, a, b, color, thickness, alpha):
    import cv2

    pts = np.stack([a[:2], b[:2]]).astype(np.float64)

    def draw(canvas, off):
        p, q = np.round(pts - off).astype(int)
        cv2.line(canvas, tuple(map(int, p)), tuple(map(int, q)), color, thickness,
                 lineType=cv2.LINE_AA)

    _blend(img, pts, thickness, alpha, draw)


def _dot(img, x: float, y: float, color, radius: int, alpha: float) -> None:
    """An anti-aliased dot at (``x``, ``y``) blended in with ``alpha``, as :func:`_blend` does,
    written out on Python scalars (a skeleton has ~130 dots; per-dot numpy overhead was most of
    the drawing). A dot wholly outside the image (or at NaN) draws nothing."""
    import cv2

    h, w = img.shape[:2]
    if not (-radius - 2 <= x <= w + radius + 2 and -radius - 2 <= y <= h + radius + 2):
        return
    if alpha >= 0.999:
        cv2.circle(img, (int(round(x)), int(round(y))), radius, color, thickness=-1,
                   lineType=cv2.LINE_AA)
        return
    x0, y0 = max(math.floor(x) - radius - 1, 0), max(math.floor(y) - radius - 1, 0)
    x1, y1 = min(math.ceil(x) + radius + 2, w), min(math.ceil(y) + radius + 2, h)
    if x0 >= x1 or y0 >= y1:
        return
    roi = img[y0:y1, x0:x1]
    layer = roi.copy()
    cv2.circle(layer, (int(round(x - x0)), int(round(y - y0))), radius, color, thickness=-1,
               lineType=cv2.LINE_AA)
    roi[:] = (roi.astype(np.float32) * (1 - alpha) + layer.astype(np.float32) * alpha + 0.5
              ).astype(np.uint8)


def _draw_body(img, body18, sz, threshold):
    for (i, j), color in zip(OP18_LIMBS, OP18_COLORS):
        a, b = body18[i], body18[j]
        alpha = _alpha(min(a[2], b[2]), threshold)
        if alpha > 0 and _ok(a) and _ok(b):
            _limb(img, a, b, tuple(int(c * 0.6) for c in color), sz["stick"], alpha)
    for p, color in zip(body18, OP18_COLORS):
        alpha = _alpha(p[2], threshold)
        if alpha > 0 and _ok(p):
            _dot(img, float(p[0]), float(p[1]), color, sz["body_dot"], alpha)


def _draw_edges(img, pts, edges, colors, width, threshold):
    """Thin lines between ``pts[i]`` and ``pts[j]``, faded by the lower of the two scores."""
    for (i, j), color in zip(edges, colors):
        a, b = pts[i], pts[j]
        alpha = _alpha(min(a[2], b[2]), threshold)
        if alpha > 0 and _ok(a) and _ok(b):
            _line(img, a, b, color, width, alpha)


def _draw_feet(img, kp, sz, threshold):
    _draw_edges(img, kp, K.FEET_EDGES, _FEET_COLORS, sz["hand_line"], threshold)


def _draw_hand(img, hand, sz, threshold):
    _draw_edges(img, hand, K.HAND_EDGES, HAND_COLORS, sz["hand_line"], threshold)
    _draw_points(img, hand, HAND_POINT_COLOR, sz["hand_dot"], threshold)


def _draw_points(img, pts, color, radius, threshold):
    """Dots at ``pts`` (N, 3) in order, each blended in with its score's alpha."""
    for x, y, score in pts.tolist():
        alpha = _alpha(score, threshold)
        if alpha > 0:
            _dot(img, x, y, color, radius, alpha)  # (NaN and far-off points draw nothing)
