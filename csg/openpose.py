"""OpenPose JSON import/export and DWPose array conversion onto the 133-point layout.

OpenPose writes one JSON per frame::

    {"version": 1.3, "people": [{"pose_keypoints_2d": [x, y, c, ...],
                                 "face_keypoints_2d": [...70 points...],
                                 "hand_left_keypoints_2d": [...21...],
                                 "hand_right_keypoints_2d": [...21...]}],
     "canvas_width": W, "canvas_height": H}

Body is COCO-18 (``0 nose, 1 neck, 2-4 right arm, 5-7 left arm, 8-10 right leg, 11-13 left leg,
14/15 eyes, 16/17 ears``) or BODY_25 (adds mid-hip at 8, so legs shift, plus six foot points).
The face has 70 points: iBUG-68 then the right and left pupils. Pose editors such as
sd-webui-openpose-editor read and write this COCO-18 + 70 + 21 + 21 form.

Conversions keep pixel coordinates as they are; scores are clipped to [0, 1]. The neck is
derived (shoulder midpoint) on export and dropped on import; pupils likewise.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import keypoints as K
from .errors import OutputError, PoseFormatError
from .outputs import atomic_write_text
from .pose import PoseSequence

log = logging.getLogger(__name__)

# COCO-17 index -> OpenPose COCO-18 index (the neck, 1, has no COCO-17 counterpart).
OPENPOSE18_FOR_COCO17 = np.array([0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10])
# COCO-17 index -> BODY_25 index (1 neck and 8 mid-hip are derived points).
BODY25_FOR_COCO17 = np.array([0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11])
# Feet in the layout's order (left big toe, small toe, heel, right ...) -> BODY_25 19..24.
BODY25_FEET = np.arange(19, 25)
NECK = 1
_FACE_POINTS = 70  # iBUG-68 + right pupil + left pupil


def _neck(body: np.ndarray) -> np.ndarray:
    """(..., 17, 3) COCO body -> (..., 3): shoulder midpoint, score min of both shoulders."""
    sh = body[..., [K.LEFT_SHOULDER, K.RIGHT_SHOULDER], :]
    return np.concatenate([sh[..., :2].mean(-2), sh[..., 2].min(-1, keepdims=True)], -1)


def _mid_hip(body: np.ndarray) -> np.ndarray:
    hp = body[..., [K.LEFT_HIP, K.RIGHT_HIP], :]
    return np.concatenate([hp[..., :2].mean(-2), hp[..., 2].min(-1, keepdims=True)], -1)


def _frame_to_person(kp: np.ndarray, body_format: str) -> dict[str, list[float]]:
    """(133, 3) -> one OpenPose ``people`` entry."""
    body = kp[K.BODY]
    if body_format == "coco18":
        op = np.zeros((18, 3), np.float32)
        op[OPENPOSE18_FOR_COCO17] = body
        op[NECK] = _neck(body)
    else:
        op = np.zeros((25, 3), np.float32)
        op[BODY25_FOR_COCO17] = body
        op[NECK] = _neck(body)
        op[8] = _mid_hip(body)
        op[BODY25_FEET] = kp[K.FEET]
    face = kp[K.FACE]
    pupils = []
    for eye in (K.RIGHT_EYE, K.LEFT_EYE):
        pts = kp[eye]
        pupils.append(np.concatenate([pts[:, :2].mean(0), [pts[:, 2].min()]]))
    face70 = np.concatenate([face, np.stack(pupils)], 0)

    def flat(a: np.ndarray) -> list[float]:
        return [float(v) for v in a.astype(np.float32).reshape(-1)]

    return {"pose_keypoints_2d": flat(op), "face_keypoints_2d": flat(face70),
            "hand_left_keypoints_2d": flat(kp[K.LEFT_HAND]),
            "hand_right_keypoints_2d": flat(kp[K.RIGHT_HAND])}


def to_openpose(pose: PoseSequence, out: str | os.PathLike, *, body_format: str = "coco18",
                overwrite: bool = False) -> Path:
    """Write ``pose`` as OpenPose JSON; return the file or folder written.

    A one-frame pose and an ``out`` ending in ``.json`` give one file; otherwise ``out`` is a folder
    of ``frame_000000_keypoints.json`` files (created; refused if it already holds frame files,
    unless ``overwrite``). ``body_format``: ``"coco18"`` (pose editors) or ``"body25"`` (keeps
    the feet).
    """
    if body_format not in ("coco18", "body25"):
        raise ValueError(f"body_format must be 'coco18' or 'body25', got {body_format!r}")
    pose.validate(str(out))
    out = Path(out)

    def doc(kp: np.ndarray) -> str:
        return json.dumps({"version": 1.3, "people": [_frame_to_person(kp, body_format)],
                           "canvas_width": pose.width, "canvas_height": pose.height})

    if out.suffix.lower() == ".json":
        if pose.num_frames != 1:
            raise OutputError(f"{out}: a single .json file holds one frame, the pose has "
                              f"{pose.num_frames}; give a folder path instead")
        if out.exists() and not overwrite:
            raise OutputError(f"{out}: already exists; pass --overwrite to replace it")
        return atomic_write_text(out, doc(pose.keypoints[0]))
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another output path")
    out.mkdir(parents=True, exist_ok=True)
    if any(out.glob("frame_*_keypoints.json")) and not overwrite:
        raise OutputError(f"{out}: already holds frame_*_keypoints.json files; pass --overwrite")
    names = [f"frame_{t:06d}_keypoints.json" for t in range(pose.num_frames)]
    for name, kp in zip(names, pose.keypoints):
        atomic_write_text(out / name, doc(kp))
    for stale in set(f.name for f in out.glob("frame_*_keypoints.json")) - set(names):
        (out / stale).unlink()  # frames of an older, longer sequence (only with overwrite)
    return out


def _points(person: dict, key: str, counts: tuple[int, ...], source: str) -> np.ndarray | None:
    """Parse one flat ``[x, y, c, ...]`` field into (n, 3); None if absent or empty."""
    v = person.get(key)
    if v is None or (isinstance(v, list) and len(v) == 0):
        return None
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise PoseFormatError(f"{source}: people[0].{key}: must be a flat list of "
                              "numbers") from None
    if a.ndim != 1 or a.size % 3 or a.size // 3 not in counts:
        want = " or ".join(str(3 * c) for c in counts)
        raise PoseFormatError(f"{source}: people[0].{key}: has {a.size} numbers, expected {want} "
                              "(x, y, confidence per point)")
    if not np.isfinite(a).all():
        raise PoseFormatError(f"{source}: people[0].{key}: contains NaN or infinity")
    a = a.reshape(-1, 3).astype(np.float32)
    a[:, 2] = np.clip(a[:, 2], 0.0, 1.0)
    return a


def _person_to_frame(person: dict, source: str) -> np.ndarray:
    """One OpenPose ``people`` entry -> (133, 3). Absent groups get score 0 at a sane anchor."""
    if not isinstance(person, dict):
        raise PoseFormatError(f"{source}: people[0] must be a JSON object")
    body = _points(person, "pose_keypoints_2d", (18, 25), source)
    if body is None:
        raise PoseFormatError(f"{source}: people[0].pose_keypoints_2d: missing or empty; the "
                              "body is needed")
    kp = np.zeros((K.NUM_KEYPOINTS, 3), np.float32)
    if len(body) == 18:
        kp[K.BODY] = body[OPENPOSE18_FOR_COCO17]
    else:
        kp[K.BODY] = body[BODY25_FOR_COCO17]
    kp[K.FEET] = body[BODY25_FEET] if len(body) == 25 else 0.0
    if len(body) != 25:  # no feet: place them at the ankles, score 0
        kp[K.FEET, :2] = kp[[K.LEFT_ANKLE] * 3 + [K.RIGHT_ANKLE] * 3, :2]
    face = _points(person, "face_keypoints_2d", (68, 70), source)
    if face is None:
        kp[K.FACE, :2] = kp[K.NOSE, :2]
    else:
        kp[K.FACE] = face[:68]
    for key, group, wrist in (("hand_left_keypoints_2d", K.LEFT_HAND, K.LEFT_WRIST),
                              ("hand_right_keypoints_2d", K.RIGHT_HAND, K.RIGHT_WRIST)):
        hand = _points(person, key, (21,), source)
        if hand is None:
            kp[group, :2] = kp[wrist, :2]
        else:
            kp[group] = hand
    return kp


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PoseFormatError(f"{p}: not valid OpenPose JSON ({e})") from None
    except RecursionError:
        raise PoseFormatError(f"{p}: JSON is nested too deeply to be OpenPose JSON") from None


def from_openpose(path: str | os.PathLike, *, fps: float = 25.0, width: int | None = None,
                  height: int | None = None) -> PoseSequence:
    """Read an OpenPose JSON file, or a folder of per-frame ``*.json`` files (name order).

    Body 18 (COCO) or 25 (BODY_25) points; feet come from BODY_25, else score 0. The canvas comes
    from ``canvas_width`` / ``canvas_height`` in the first file, else from ``width`` / ``height``.
    Only the first person of each frame is read (a warning is logged if there are more); a frame
    with no people is an error. Returns a (T, 133, 3) :class:`PoseSequence`.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() == ".json")
        if not files:
            raise PoseFormatError(f"{p}: folder holds no .json files (expected OpenPose frames)")
    else:
        from .errors import require_file

        files = [require_file(p, "OpenPose JSON file", PoseFormatError)]
    frames, extra = [], 0
    for f in files:
        d = _read_json(f)
        if not isinstance(d, dict) or not isinstance(d.get("people"), list):
            raise PoseFormatError(f"{f}: people: missing; expected an OpenPose object with a "
                                  "'people' list")
        if not d["people"]:
            raise PoseFormatError(f"{f}: people: empty, no person in this frame")
        extra += len(d["people"]) > 1
        if width is None and height is None and f is files[0]:
            width, height = d.get("canvas_width"), d.get("canvas_height")
        frames.append(_person_to_frame(d["people"][0], str(f)))
    if extra:
        log.warning("%s: %d frame(s) hold more than one person; only the first is read", p, extra)
    if not (isinstance(width, (int, float)) and isinstance(height, (int, float))
            and width > 0 and height > 0):
        raise PoseFormatError(f"{files[0]}: canvas_width/canvas_height: missing; pass the image "
                              "size (--width/--height, or width=/height=)")
    return PoseSequence(np.stack(frames), fps=fps, width=int(width), height=int(height),
                        meta={"source": "openpose", "file": str(p)}).validate(str(p))


def from_dwpose_arrays(body_xy: np.ndarray, body_score: np.ndarray, body_subset: np.ndarray,
                       hands_xy: np.ndarray, hands_score: np.ndarray, face_xy: np.ndarray,
                       face_score: np.ndarray, *, width: int, height: int, fps: float,
                       normalized: bool = True, meta: dict | None = None) -> PoseSequence:
    """DWPose / ControlNet-style per-frame arrays (one person) -> (T, 133, 3) :class:`PoseSequence`.

    body_xy (T, 18, 2) in OpenPose-18 order; body_score (T, 18); body_subset (T, 18), -1 where the
    joint is missing (score set to 0); hands_xy (T, 2, 21, 2) with hand 0 the person's left;
    hands_score (T, 2, 21); face_xy (T, 68, 2) iBUG-68; face_score (T, 68). ``normalized``: the
    coordinates are in [0, 1] of the ``width`` x ``height`` canvas (ControlNet's convention) and are
    scaled to pixels. Points at exactly (-1, -1) are ControlNet's "invisible" marker: score 0.
    Feet are not in these arrays: placed at the ankles with score 0. Scores are clipped to [0, 1].
    """
    body_xy, hands_xy, face_xy = (np.asarray(a, np.float32) for a in (body_xy, hands_xy, face_xy))
    T = body_xy.shape[0]
    shapes = {"body_xy": (body_xy, (T, 18, 2)), "body_score": (body_score, (T, 18)),
              "body_subset": (body_subset, (T, 18)), "hands_xy": (hands_xy, (T, 2, 21, 2)),
              "hands_score": (hands_score, (T, 2, 21)), "face_xy": (face_xy, (T, 68, 2)),
              "face_score": (face_score, (T, 68))}
    for name, (a, shape) in shapes.items():
        if np.shape(a) != shape:
            raise PoseFormatError(f"{name}: expected shape {shape}, got {np.shape(a)}")

    scale = np.array([width, height], np.float32) if normalized else np.ones(2, np.float32)

    def pts(xy: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hidden = np.all(xy == -1, axis=-1)
        out = np.concatenate([xy * scale, np.clip(s, 0, 1)[..., None]], -1).astype(np.float32)
        out[hidden, 2] = 0.0
        return out, hidden

    kp = np.zeros((T, K.NUM_KEYPOINTS, 3), np.float32)
    body, _ = pts(body_xy, np.where(np.asarray(body_subset) < 0, 0.0, body_score))
    kp[:, K.BODY] = body[:, OPENPOSE18_FOR_COCO17]
    kp[:, K.FEET, :2] = kp[:, [K.LEFT_ANKLE] * 3 + [K.RIGHT_ANKLE] * 3, :2]
    face, face_hidden = pts(face_xy, face_score)
    hands, hands_hidden = pts(hands_xy, hands_score)
    # Hidden face / hand points move to the nose / wrist so a drawn skeleton stays sane.
    for group, pts_, hidden, anchor in (
            (K.FACE, face, face_hidden, K.NOSE),
            (K.LEFT_HAND, hands[:, 0], hands_hidden[:, 0], K.LEFT_WRIST),
            (K.RIGHT_HAND, hands[:, 1], hands_hidden[:, 1], K.RIGHT_WRIST)):
        pts_[..., :2] = np.where(hidden[..., None], kp[:, anchor, None, :2], pts_[..., :2])
        kp[:, group] = pts_
    return PoseSequence(kp, fps=fps, width=width, height=height, meta=dict(meta or {})).validate()
