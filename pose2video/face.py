"""Mouth interior for the warp: a dark cavity and a band of upper teeth when the lips part.

The mesh already moves the lips and the jaw (all 68 face points are anchors); the pixels between the
parted inner lips are then stretched lip texture. :func:`paint_mouth` covers them with a dark
cavity and a light teeth band under the upper lip, anti-aliased and blended in proportion to how
far the mouth opened beyond the reference. Eyelids need no painting: when the eyelid points meet,
the mesh squashes the eye and stretches the lid over it (a blink).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from csg import keypoints as K

_IN = K.INNER_LIPS.start
UPPER_INNER = np.array([_IN + 0, _IN + 1, _IN + 2, _IN + 3, _IN + 4])  # corner, top, corner
_AA_SHIFT = 3


@dataclass(frozen=True)
class MouthStyle:
    """Colours (RGB float, 0-255) sampled once from the reference photo."""

    cavity: tuple[float, float, float]
    teeth: tuple[float, float, float]
    ref_opening: float  # csg.keypoints.mouth_opening of the reference


def mouth_style(image: np.ndarray, ref: np.ndarray, ref_ok: np.ndarray) -> MouthStyle | None:
    """Sample lip and skin brightness around the reference mouth; None without a mouth."""
    import cv2

    lips = np.arange(K.MOUTH.start, K.MOUTH.stop)
    if not ref_ok[lips].all():
        return None
    m = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(ref[K.OUTER_LIPS]).astype(np.int32)], 1)
    lip = image[m > 0].mean(0) if m.any() else np.array([150.0, 80, 80])
    skin_lum = float(lip.mean())
    light = float(np.clip(skin_lum / 150.0, 0.55, 1.0))
    cavity = tuple(float(v) for v in 0.22 * lip + np.array([18.0, 6, 6]))
    teeth = tuple(float(v) * light for v in (236.0, 230, 218))
    return MouthStyle(cavity, teeth, float(K.mouth_opening(ref)))


def _aa_mask(poly: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Anti-aliased filled polygon over box (y0, y1, x0, x1) as float32 in [0, 1]."""
    import cv2

    y0, y1, x0, x1 = box
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = np.round((poly - [x0, y0]) * (1 << _AA_SHIFT)).astype(np.int32)
    cv2.fillPoly(m, [pts], 255, lineType=cv2.LINE_AA, shift=_AA_SHIFT)
    return m.astype(np.float32) / 255.0


def paint_mouth(frame: np.ndarray, tgt: np.ndarray, tgt_ok: np.ndarray, style: MouthStyle,
                ramp: float = 0.04) -> float:
    """Paint the cavity and the teeth into ``frame`` (H, W, 3) uint8 in place.

    tgt: (133, 2) target keypoints. The blend weight is ``clip((open - ref_open) / ramp, 0, 1)``
    with ``open`` from :func:`csg.keypoints.mouth_opening` (gap over face height). Returns it.
    """
    inner = np.arange(K.INNER_LIPS.start, K.INNER_LIPS.stop)
    if not tgt_ok[inner].all():
        return 0.0
    amount = float(np.clip((K.mouth_opening(tgt) - style.ref_opening) / ramp, 0.0, 1.0))
    if amount <= 0.0:
        return 0.0
    poly = tgt[inner]
    h, w = frame.shape[:2]
    x0, y0 = np.floor(poly.min(0)).astype(int) - 2
    x1, y1 = np.ceil(poly.max(0)).astype(int) + 3
    box = (max(y0, 0), min(y1, h), max(x0, 0), min(x1, w))
    if box[1] <= box[0] or box[3] <= box[2]:
        return 0.0
    cav = _aa_mask(poly, box)
    # teeth: under the upper inner lip, a band of a third of the gap (capped by lip height)
    upper = tgt[UPPER_INNER]
    order = np.argsort(upper[:, 0])
    xs = np.arange(box[2], box[3], dtype=np.float64) + 0.5
    ys = np.arange(box[0], box[1], dtype=np.float64)[:, None] + 0.5
    y_up = np.interp(xs, upper[order, 0], upper[order, 1])[None, :]
    gap = np.linalg.norm(tgt[_IN + 6] - tgt[_IN + 2])
    band = min(0.35 * gap, 0.06 * float(K.face_height(tgt))) + 0.5
    teeth = np.clip(y_up + band - ys, 0.0, 1.0).astype(np.float32) * cav
    half = max((upper[:, 0].max() - upper[:, 0].min()) / 2, 1.0)
    shade = 1.0 - 0.45 * np.clip(np.abs(xs - upper[:, 0].mean()) / half, 0, 1) ** 2
    crop = frame[box[0]:box[1], box[2]:box[3]].astype(np.float32)
    a_cav = (amount * cav)[..., None]
    out = crop * (1 - a_cav) + np.asarray(style.cavity, np.float32) * a_cav
    a_t = (amount * teeth)[..., None]
    teeth_rgb = np.asarray(style.teeth, np.float32) * shade[None, :, None].astype(np.float32)
    out = out * (1 - a_t) + teeth_rgb * a_t
    frame[box[0]:box[1], box[2]:box[3]] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return amount
