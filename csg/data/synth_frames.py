"""A simple textured avatar drawn from the skeleton: stage-2 training frames for the synthetic corpus.

Filled, outlined and shaded limbs and torso, a head ellipse with hair, eyes (that blink), a mouth
cavity inside the lips, and hands, over a static textured background (gradient + smooth noise).
Drawn with OpenCV at the canvas resolution, about a millisecond a frame at 192 px.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import keypoints as K


@dataclass(frozen=True)
class Look:
    """Colours (RGB uint8 tuples) and background of one avatar."""

    skin: tuple
    shirt: tuple
    trousers: tuple
    hair: tuple
    background: np.ndarray  # (H, W, 3) uint8


def _rgb(v) -> tuple:
    return tuple(int(c) for c in np.clip(v, 0, 255))


def background(generator: np.random.Generator, size_hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8: a two-colour gradient at a random angle plus smooth noise texture."""
    import cv2

    g = generator
    H, W = size_hw
    c0, c1 = g.uniform(20, 235, 3), g.uniform(20, 235, 3)
    ang = g.uniform(0, np.pi)
    yy, xx = np.mgrid[0:H, 0:W]
    u = (np.cos(ang) * xx / W + np.sin(ang) * yy / H)
    u = (u - u.min()) / max(np.ptp(u), 1e-6)
    img = c0 + u[..., None] * (c1 - c0)
    cells = int(g.integers(3, 12))
    noise = cv2.resize(g.normal(0, 1, (cells, cells, 3)).astype(np.float32), (W, H),
                       interpolation=cv2.INTER_CUBIC)
    fine = g.normal(0, 1, (H, W, 1)) * g.uniform(0, 6)
    img = img + noise * g.uniform(5, 30) + fine
    return np.clip(img, 0, 255).astype(np.uint8)


def sample_look(generator: np.random.Generator, size_hw: tuple[int, int]) -> Look:
    g = generator
    tone = g.uniform(0.25, 1.0)
    skin = _rgb(np.array([90, 55, 35]) + tone * np.array([150, 140, 125]))
    return Look(skin=skin, shirt=_rgb(g.uniform(20, 230, 3)), trousers=_rgb(g.uniform(20, 120, 3)),
                hair=_rgb(g.uniform(10, 120) * np.array([1.0, 0.8, 0.6])),
                background=background(g, size_hw))


def _shade(c, f) -> tuple:
    return _rgb(np.asarray(c, float) * f)


def _pt(p) -> tuple:
    return int(round(p[0] * 16)), int(round(p[1] * 16))


def _limb(img, a, b, width, color):
    import cv2

    w = max(1, int(round(width)))
    cv2.line(img, _pt(a), _pt(b), _shade(color, 0.6), w + 2, cv2.LINE_AA, 4)
    cv2.line(img, _pt(a), _pt(b), color, w, cv2.LINE_AA, 4)
    cv2.line(img, _pt(a + [w * 0.15, -w * 0.15]), _pt(b + [w * 0.15, -w * 0.15]),
             _shade(color, 1.15), max(1, w // 3), cv2.LINE_AA, 4)


def _poly(img, pts, color, outline=None):
    import cv2

    p = (np.asarray(pts) * 16).round().astype(np.int32)[None]
    cv2.fillPoly(img, p, color, cv2.LINE_AA, 4)
    if outline is not None:
        cv2.polylines(img, p, True, outline, 1, cv2.LINE_AA, 4)


def draw_avatar(kps: np.ndarray, look: Look) -> np.ndarray:
    """(H, W, 3) uint8 RGB avatar for one skeleton ``kps`` (133, 2 or 3) in pixels."""
    import cv2

    xy = np.asarray(kps, np.float64)[:, :2]
    img = look.background.copy()
    face = xy[K.FACE]
    s = max(float(K.face_height(xy)) / 0.72, 2.0)      # head unit, pixels
    ls, rs, lh, rh = (xy[j] for j in (K.LEFT_SHOULDER, K.RIGHT_SHOULDER, K.LEFT_HIP, K.RIGHT_HIP))
    for hip, knee, ank in ((K.LEFT_HIP, K.LEFT_KNEE, K.LEFT_ANKLE),
                           (K.RIGHT_HIP, K.RIGHT_KNEE, K.RIGHT_ANKLE)):
        _limb(img, xy[hip], xy[knee], 0.55 * s, look.trousers)
        _limb(img, xy[knee], xy[ank], 0.45 * s, look.trousers)
    chin = xy[K.CHIN]
    neck = (ls + rs) / 2
    _limb(img, neck, chin, 0.4 * s, look.skin)
    torso = [ls + [0.1 * s, 0], rs - [0.1 * s, 0], rh - [0.05 * s, 0], lh + [0.05 * s, 0]]
    _poly(img, torso, look.shirt, _shade(look.shirt, 0.6))
    inner = np.asarray(torso) * 0.75 + np.mean(torso, 0) * 0.25
    _poly(img, inner - [0.08 * s, 0.05 * s], _shade(look.shirt, 1.08))
    for sh, el, wr, hand in ((K.LEFT_SHOULDER, K.LEFT_ELBOW, K.LEFT_WRIST, K.LEFT_HAND),
                             (K.RIGHT_SHOULDER, K.RIGHT_ELBOW, K.RIGHT_WRIST, K.RIGHT_HAND)):
        _limb(img, xy[sh], xy[el], 0.42 * s, look.shirt)
        _limb(img, xy[el], xy[wr], 0.34 * s, _shade(look.shirt, 0.95))
        h = xy[hand]
        hull = cv2.convexHull((h[[0, 1, 2, 5, 9, 13, 17]] * 16).round().astype(np.int32))
        cv2.fillConvexPoly(img, hull, look.skin, cv2.LINE_AA, 4)
        for a, b in K.HAND_EDGES:
            cv2.line(img, _pt(h[a]), _pt(h[b]), _shade(look.skin, 0.85), max(1, int(0.09 * s)),
                     cv2.LINE_AA, 4)
    _draw_head(img, xy, face, s, look)
    return img


def _draw_head(img, xy, face, s, look):
    import cv2

    c = face[[0, 16, 8, 19, 24]].mean(0) * 0.5 + face[27:31].mean(0) * 0.5
    half_w = np.linalg.norm(face[16] - face[0]) / 2 * 1.05
    top = (face[17:27].mean(0) - face[8]) * 1.45 + face[8]
    half_h = np.linalg.norm(face[8] - top) / 2
    ang = np.degrees(np.arctan2(face[16, 1] - face[0, 1], face[16, 0] - face[0, 0]))
    centre = (face[8] + top) / 2
    axes = (int(half_w * 16), int(half_h * 16))
    cv2.ellipse(img, _pt(centre), axes, ang, 0, 360, _shade(look.skin, 0.65), 2, cv2.LINE_AA, 4)
    cv2.ellipse(img, _pt(centre), axes, ang, 0, 360, look.skin, -1, cv2.LINE_AA, 4)
    cv2.ellipse(img, _pt(centre), axes, ang, 180, 360, look.hair, -1, cv2.LINE_AA, 4)
    cv2.ellipse(img, _pt(c), (int(half_w * 14), int(half_h * 9)), ang, 180, 360, look.skin, -1,
                cv2.LINE_AA, 4)
    for eye in (face[36:42], face[42:48]):
        _poly(img, eye, (245, 245, 245), _shade(look.skin, 0.5))
        open_ = np.linalg.norm(eye[[1, 2]] - eye[[5, 4]], axis=-1).mean()
        if open_ > 0.02 * s:
            cv2.circle(img, _pt(eye.mean(0)), max(1, int(open_ * 0.45 * 16)), (40, 30, 20), -1,
                       cv2.LINE_AA, 4)
    cv2.polylines(img, [(face[27:31] * 16).round().astype(np.int32)], False,
                  _shade(look.skin, 0.7), 1, cv2.LINE_AA, 4)
    _poly(img, face[48:60], (170, 70, 70))
    _poly(img, face[60:68], (60, 15, 20))
    for brow in (face[17:22], face[22:27]):
        cv2.polylines(img, [(brow * 16).round().astype(np.int32)], False, look.hair,
                      max(1, int(0.06 * s)), cv2.LINE_AA, 4)
