"""A parametric 2D whole-body skeleton (133 COCO-WholeBody points) for the synthetic corpus.

Everything is built in "head units" ``s`` (pixels, about one head height) around the neck point
(the mid-shoulder), then placed on the ``(H, W)`` canvas. Person-left is image-right (a frontal
speaker). The face is a pseudo-3D iBUG-68 template so yaw/pitch/roll, jaw opening and blinks move
the right points. All functions are vectorised over T frames.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .. import keypoints as K

# --- iBUG-68 template in face units (x right, y down, z toward camera), origin mid-face ------------
_i = np.arange(17)
_JAW = np.stack([-0.48 * np.cos(np.pi * _i / 16), -0.06 + 0.51 * np.sin(np.pi * _i / 16)], -1)
_BROW_R = np.stack([np.linspace(-0.38, -0.08, 5), -0.26 - 0.04 * np.sin(np.linspace(0, np.pi, 5))], -1)
_BROW_L = _BROW_R[::-1] * [-1, 1]
_NOSE_BRIDGE = np.stack([np.zeros(4), np.linspace(-0.17, 0.07, 4)], -1)
_NOSE_BOTTOM = np.stack([np.linspace(-0.1, 0.1, 5), 0.12 + 0.025 * np.cos(np.linspace(-1.2, 1.2, 5))], -1)
_EYE_R = np.array([[-0.29, -0.12], [-0.24, -0.15], [-0.17, -0.15], [-0.12, -0.12],
                   [-0.17, -0.095], [-0.24, -0.095]])
_EYE_L = np.array([[0.12, -0.12], [0.17, -0.15], [0.24, -0.15], [0.29, -0.12],
                   [0.24, -0.095], [0.17, -0.095]])
_a12 = np.linspace(np.pi, 3 * np.pi, 12, endpoint=False)
_OUTER_LIPS = np.stack([0.16 * np.cos(_a12), 0.275 + 0.045 * np.sin(_a12)], -1)
_a8 = np.linspace(np.pi, 3 * np.pi, 8, endpoint=False)
_INNER_LIPS = np.stack([0.11 * np.cos(_a8), 0.275 + 0.008 * np.sin(_a8)], -1)
FACE_TEMPLATE = np.concatenate([_JAW, _BROW_R, _BROW_L, _NOSE_BRIDGE, _NOSE_BOTTOM, _EYE_R, _EYE_L,
                                _OUTER_LIPS, _INNER_LIPS]).astype(np.float64)
"""(68, 2) neutral face in face units (about 0.75 brow-to-chin)."""
_Z = 0.32 * (1 - (FACE_TEMPLATE[:, 0] / 0.5) ** 2)
_Z[27:36] += np.array([0.05, 0.1, 0.15, 0.22, 0.12, 0.14, 0.16, 0.14, 0.12])
# How much each face point follows the jaw opening (lower lips fully, chin fully, cheeks a little).
_JAW_W = np.zeros(68)
_JAW_W[0:17] = np.sin(np.pi * _i / 16) ** 2
_JAW_W[[55, 56, 57, 58, 59]] = 1.0
_JAW_W[[65, 66, 67]] = 1.0
_JAW_W[[48, 54, 60, 64]] = 0.5
JAW_WEIGHTS = _JAW_W
"""(68,) how much each iBUG face point follows the jaw opening (public for stage 1's mouth scale)."""
_UPPER_LID = [37, 38, 43, 44]
_LOWER_LID = [41, 40, 47, 46]


@dataclass(frozen=True)
class BodyShape:
    """Proportions (head units), framing on the canvas and habits of one synthetic speaker."""

    height: int
    width: int
    s: float                 # head unit in pixels
    neck: tuple              # (x, y) neck point on the canvas, pixels
    shoulder: float = 2.0    # shoulder width
    torso: float = 3.0       # neck to hip height
    hip: float = 1.25        # hip width
    upper_arm: float = 1.45
    forearm: float = 1.3
    thigh: float = 2.0
    shin: float = 1.9
    neck_len: float = 0.75   # neck point to face centre
    face: float = 1.0        # face scale
    hand: float = 0.95       # hand scale
    handed: int = 1          # +1 right-handed, -1 left-handed
    rest: str = "sides"      # "sides" (arms hanging), "clasped" (hands together in front of the
    #                          belly) or "front" (seated / at a desk: forearms forward, hands apart)
    rest_x: float = 0.5      # "front": each wrist's distance from the body midline, head units
    rest_y: float = 1.2      # "front": wrists below the neck point, head units


def sample_shape(generator: np.random.Generator, size_hw: tuple[int, int]) -> BodyShape:
    """A random speaker: proportions +-10 %, head unit 8-15 % of H, neck at 22-38 % of H.

    Rest posture: "front" 55 % (wrists 0.3-1.7 head units below the neck, 0.25-0.9 from the
    midline: the seated, desk and lectern postures of real half-body speakers, whose hands rest
    0.1-0.55 shoulder widths below the shoulders in ``../shared/data/validation``), "sides" 25 %,
    "clasped" 20 %.
    """
    g = generator
    H, W = size_hw
    s = float(H * g.uniform(0.08, 0.15))
    neck = (float(W / 2 + g.uniform(-0.12, 0.12) * W), float(H * g.uniform(0.22, 0.38)))

    def j(v):
        return float(v * g.uniform(0.9, 1.1))

    return BodyShape(H, W, s, neck, shoulder=j(2.0), torso=j(3.0), hip=j(1.25),
                     upper_arm=j(1.45), forearm=j(1.3), thigh=j(2.0), shin=j(1.9),
                     neck_len=j(0.75), face=j(1.0), hand=j(0.95),
                     handed=1 if g.random() < 0.85 else -1,
                     rest=str(g.choice(["front", "sides", "clasped"], p=[0.55, 0.25, 0.2])),
                     rest_x=float(g.uniform(0.25, 0.9)), rest_y=float(g.uniform(0.3, 1.7)))


def shape_from_reference(ref_xy: np.ndarray, size_hw: tuple[int, int]) -> BodyShape:
    """The mean-proportion shape whose neck and torso scale match a reference skeleton (133, 2)."""
    neck = ref_xy[[K.LEFT_SHOULDER, K.RIGHT_SHOULDER]].mean(0)
    canon = BodyShape(size_hw[0], size_hw[1], 1.0, (0.0, 0.0))
    s = float(K.torso_size(ref_xy) / K.torso_size(neutral_xy(canon)))
    return replace(canon, s=s, neck=(float(neck[0]), float(neck[1])))


def rest_wrists(b: BodyShape) -> np.ndarray:
    """(2, 2) resting wrist offsets from the neck in head units: [person-left, person-right]."""
    if b.rest == "front":
        return np.array([[b.rest_x, b.rest_y], [-b.rest_x, b.rest_y]])
    if b.rest == "clasped":
        y = min(b.torso * 0.85, b.upper_arm + b.forearm * 0.6)
        return np.array([[0.35, y], [-0.35, y]])
    y = b.upper_arm + b.forearm * 0.92
    return np.array([[b.shoulder / 2 + 0.35, y], [-b.shoulder / 2 - 0.35, y]])


def neutral_state(T: int) -> dict:
    """The per-frame state of a still, neutral speaker (see :func:`pose_frames`)."""
    z = np.zeros(T)
    return dict(head=np.zeros((T, 2)), roll=z, yaw=z, pitch=z, mouth=z, blink=z,
                shoulder_lift=z, trunk=np.zeros((T, 2)), wrists=None, curl=np.full((T, 2), 0.6))


def neutral_xy(b: BodyShape) -> np.ndarray:
    """(133, 2) rest pose of the shape."""
    return pose_frames(b, neutral_state(1))[0]


def _ik(shoulder, wrist, a, c, out_sign):
    """Two-bone IK in 2D. shoulder, wrist: (T, 2). Returns (elbow, reachable wrist), both (T, 2)."""
    d_vec = wrist - shoulder
    d = np.linalg.norm(d_vec, axis=-1, keepdims=True).clip(1e-6)
    u = d_vec / d
    d = d.clip(abs(a - c) + 1e-3, a + c - 1e-3)
    cos_al = ((a ** 2 + d ** 2 - c ** 2) / (2 * a * d)).clip(-1, 1)
    sin_al = np.sqrt(1 - cos_al ** 2)
    perp = np.stack([-u[:, 1], u[:, 0]], -1) * out_sign
    elbow = shoulder + a * (cos_al * u + sin_al * perp)
    return elbow, shoulder + d * u


def _hand(wrist, elbow, curl, side, s):
    """(T, 21, 2) hand points from wrist/elbow (T, 2), curl (T,) in [0, 1]; side +1 left, -1 right."""
    u = wrist - elbow
    u = u / np.linalg.norm(u, axis=-1, keepdims=True).clip(1e-6)
    v = np.stack([-u[:, 1], u[:, 0]], -1) * side
    pts = [wrist]
    # thumb then index..pinky: base offset (along u, along v) and segment length
    bases = [(0.12, 0.14), (0.42, 0.12), (0.44, 0.03), (0.42, -0.06), (0.38, -0.14)]
    lengths = [0.12, 0.13, 0.14, 0.13, 0.1]
    for f, ((bu, bv), ln) in enumerate(zip(bases, lengths)):
        p = wrist + s * (bu * u + bv * v)
        ang = np.zeros(len(wrist)) + (0.6 if f == 0 else 0.08 * (1.5 - f))
        for _ in range(4):  # MCP, PIP, DIP, tip (thumb: CMC, MCP, IP, tip)
            pts.append(p)
            c, sn = np.cos(ang)[:, None], np.sin(ang)[:, None]
            d = c * u + sn * v
            p = p + s * ln * (1.0 - 0.35 * curl[:, None]) * d
            ang = ang + (1.1 * curl if f else 0.5 * curl) * side
    return np.stack(pts, 1)


def pose_frames(b: BodyShape, st: dict) -> np.ndarray:
    """(T, 133, 2) pixel coordinates from a per-frame state (head units unless noted).

    state keys: head (T,2) offset; roll/yaw/pitch (T,) radians; mouth (T,) jaw opening; blink (T,)
    in [0,1]; shoulder_lift (T,); trunk (T,2) neck offset; wrists (T,2,2) offsets from the neck
    [left, right] or None for rest; curl (T,2) finger curl.
    """
    T = len(st["mouth"])
    s = b.s
    neck = np.asarray(b.neck) + s * st["trunk"]                                   # (T, 2)
    xy = np.zeros((T, K.NUM_KEYPOINTS, 2))
    lift = st["shoulder_lift"][:, None] * [0, -1]
    ls = neck + s * (np.array([b.shoulder / 2, 0.05]) + lift)
    rs = neck + s * (np.array([-b.shoulder / 2, 0.05]) + lift)
    hips = np.asarray(b.neck) + s * (np.array([[b.hip / 2, b.torso], [-b.hip / 2, b.torso]]))
    xy[:, K.LEFT_SHOULDER], xy[:, K.RIGHT_SHOULDER] = ls, rs
    xy[:, K.LEFT_HIP], xy[:, K.RIGHT_HIP] = hips[0], hips[1]
    for hip_i, knee_i, ank_i, side in ((K.LEFT_HIP, K.LEFT_KNEE, K.LEFT_ANKLE, 1),
                                       (K.RIGHT_HIP, K.RIGHT_KNEE, K.RIGHT_ANKLE, -1)):
        xy[:, knee_i] = xy[:, hip_i] + s * np.array([0.05 * side, b.thigh])
        xy[:, ank_i] = xy[:, knee_i] + s * np.array([0.0, b.shin])
    feet = [(K.LEFT_ANKLE, 1, (K.LEFT_BIG_TOE, K.LEFT_SMALL_TOE, K.LEFT_HEEL)),
            (K.RIGHT_ANKLE, -1, (K.RIGHT_BIG_TOE, K.RIGHT_SMALL_TOE, K.RIGHT_HEEL))]
    for ank, side, (big, small, heel) in feet:
        xy[:, big] = xy[:, ank] + s * np.array([0.1 * side, 0.35])
        xy[:, small] = xy[:, ank] + s * np.array([0.3 * side, 0.3])
        xy[:, heel] = xy[:, ank] + s * np.array([-0.05 * side, 0.15])
    # arms
    wr = rest_wrists(b)[None].repeat(T, 0) if st["wrists"] is None else st["wrists"]
    fore = 1.0
    if b.rest == "front":  # forearms toward the camera: foreshortened so the rest elbow bends ~90°
        d0 = float(np.linalg.norm(rest_wrists(b)[0] - [b.shoulder / 2, 0.05]))
        fore = min(1.0, 1.45 * d0 / (b.upper_arm + b.forearm))
    for sh, el_i, wr_i, root, k, side in ((ls, K.LEFT_ELBOW, K.LEFT_WRIST, K.LEFT_HAND_ROOT, 0, 1),
                                          (rs, K.RIGHT_ELBOW, K.RIGHT_WRIST, K.RIGHT_HAND_ROOT, 1,
                                           -1)):
        target = np.asarray(b.neck) + s * wr[:, k]
        elbow, wrist = _ik(sh, target, s * b.upper_arm * fore, s * b.forearm * fore, -side)
        xy[:, el_i], xy[:, wr_i] = elbow, wrist
        xy[:, root:root + K.HAND_SIZE] = _hand(wrist, elbow, st["curl"][:, k], side, s * b.hand)
    _place_face(b, st, neck, xy)
    return xy


def _place_face(b: BodyShape, st: dict, neck: np.ndarray, xy: np.ndarray) -> None:
    s, f = b.s, b.face
    face = np.repeat(FACE_TEMPLATE[None], len(neck), 0).copy()
    face[:, :, 1] += st["mouth"][:, None] * _JAW_W
    face[:, [62, 61, 63], 1] -= 0.08 * st["mouth"][:, None]
    lid = st["blink"][:, None]
    face[:, _UPPER_LID, 1] += lid * (face[:, _LOWER_LID, 1] - face[:, _UPPER_LID, 1]) * 0.9
    z = np.repeat(_Z[None], len(neck), 0)
    yaw, pitch, roll = st["yaw"][:, None], st["pitch"][:, None], st["roll"][:, None]
    x = face[..., 0] * np.cos(yaw) + z * np.sin(yaw)
    y = face[..., 1] * np.cos(pitch) + z * np.sin(pitch)
    xr = x * np.cos(roll) - y * np.sin(roll)
    yr = x * np.sin(roll) + y * np.cos(roll)
    centre = neck + s * (st["head"] + np.array([0.0, -b.neck_len]))
    pts = centre[:, None] + s * f * np.stack([xr, yr], -1)
    xy[:, K.FACE] = pts
    xy[:, K.NOSE] = pts[:, 30]
    xy[:, K.RIGHT_EYE_C] = pts[:, 36:42].mean(1)
    xy[:, K.LEFT_EYE_C] = pts[:, 42:48].mean(1)
    for idx, sx in ((K.LEFT_EAR, 0.5), (K.RIGHT_EAR, -0.5)):
        ex = sx * np.cos(yaw[:, 0]) - 0.25 * np.sin(yaw[:, 0])
        ey = -0.08 * np.cos(pitch[:, 0]) - 0.2 * np.sin(pitch[:, 0])
        xy[:, idx] = centre + s * f * np.stack([ex * np.cos(roll[:, 0]) - ey * np.sin(roll[:, 0]),
                                                ex * np.sin(roll[:, 0]) + ey * np.cos(roll[:, 0])],
                                               -1)
