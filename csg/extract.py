"""Reference skeleton from a photo (and per-frame skeletons from video) on the 133-point layout.

Backends:

- ``mediapipe`` (default): MediaPipe Holistic 0.10.14, ``model_complexity=1`` (the only model
  shipped in the wheel; 0 and 2 download at run time), no refined face. Its 33 pose, 468 face-mesh and
  2 x 21 hand landmarks are mapped onto COCO-WholeBody-133 by the tables below.
- ``dwpose``: DWPose through ``controlnet_aux.DWposeDetector`` (needs mmpose / mmdet / mmcv),
  weights from a local folder or a cached Hugging Face hub id; never downloads.

Scores: body and feet from MediaPipe ``visibility`` clipped to [0, 1]; face ``FACE_SCORE`` when a
face is found; hands ``HAND_SCORE`` when found; 0 for anything missing (placed at the nose or the
wrist so the skeleton stays drawable) and for points outside the image. MediaPipe has no small toe:
it is derived (see :func:`small_toe`) and scored at half the foot's weaker point.

MediaPipe's "left" landmarks (pose 11/13/15, ``left_hand_landmarks``) are the person's left, the
layout's convention: checked on ``examples/images/moore_anyone-3.png``, where the left hand's root
lies 10 px from the left body wrist and 169 px from the right one.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from . import keypoints as K
from .errors import CsgError, ImageError, InputError, NoPersonError, WeightsNotFoundError
from .pose import PoseSequence

log = logging.getLogger(__name__)

BACKENDS = ("mediapipe", "dwpose")
FACE_SCORE = 0.95  # MediaPipe gives no per-landmark face confidence: a presence score
HAND_SCORE = 0.9
MIN_SHOULDER_SCORE = 0.3  # below this the upper body is not reliably visible

# MediaPipe pose-33 index for each COCO-17 joint.
POSE33_FOR_COCO17 = np.array([0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28])
_MP_LEFT_HEEL, _MP_RIGHT_HEEL, _MP_LEFT_TOE, _MP_RIGHT_TOE = 29, 30, 31, 32

# Face mesh 468 -> iBUG-68 (the widely used table). Checked: the jaw runs from the person's right
# (image left on a frontal photo) to their left; each eye starts at its corner nearer the image
# left (outer right-eye corner 33, inner left-eye corner 362); the inner lips start at the right
# mouth corner (78), 62 is the top centre (13) and 66 the bottom centre (14).
FACE468_FOR_IBUG68 = np.array([
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,  # jaw 0-16
    71, 63, 105, 66, 107,  # right brow 17-21
    336, 296, 334, 293, 301,  # left brow 22-26
    168, 197, 5, 4,  # nose bridge 27-30
    75, 97, 2, 326, 305,  # nose bottom 31-35
    33, 160, 158, 133, 153, 144,  # right eye 36-41
    362, 385, 387, 263, 373, 380,  # left eye 42-47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60-67
])


def _check_image(image: Any, source: str) -> np.ndarray:
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
            and image.dtype == np.uint8):
        got = (f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray)
               else type(image).__name__)
        raise ImageError(f"{source}: expected an (H, W, 3) uint8 RGB image, got {got}")
    return np.ascontiguousarray(image)


def small_toe(toe: np.ndarray, heel: np.ndarray, ankle: np.ndarray,
              other_ankle: np.ndarray) -> np.ndarray:
    """Estimate the small toe, which MediaPipe lacks: (2,) pixels.

    Steps back 15 % of the heel->toe vector from the big toe and out 30 % of its length
    perpendicular to it, on the side away from the other ankle (the outside of the foot).
    """
    d = toe - heel
    n = np.array([-d[1], d[0]])
    if np.dot(n, ankle - other_ankle) < 0:
        n = -n
    return toe - 0.15 * d + 0.3 * n


def holistic_to_keypoints(pose33: np.ndarray, face468: np.ndarray | None,
                          left_hand: np.ndarray | None, right_hand: np.ndarray | None,
                          size_hw: tuple[int, int]) -> np.ndarray:
    """Map MediaPipe Holistic landmarks (pixels) onto the 133 layout: (133, 3) float32.

    pose33: (33, 3) ``x, y, visibility``; face468: (468, 2) or None; left_hand / right_hand:
    (21, 2) or None, the person's left / right. ``size_hw``: (H, W) of the image; points outside
    it get score 0.
    """
    kp = np.zeros((K.NUM_KEYPOINTS, 3), np.float32)
    vis = np.clip(pose33[:, 2], 0.0, 1.0)
    kp[K.BODY, :2] = pose33[POSE33_FOR_COCO17, :2]
    kp[K.BODY, 2] = vis[POSE33_FOR_COCO17]
    for (big, small, heel), toe_i, heel_i, ank, other in (
            ((K.LEFT_BIG_TOE, K.LEFT_SMALL_TOE, K.LEFT_HEEL), _MP_LEFT_TOE, _MP_LEFT_HEEL,
             K.LEFT_ANKLE, K.RIGHT_ANKLE),
            ((K.RIGHT_BIG_TOE, K.RIGHT_SMALL_TOE, K.RIGHT_HEEL), _MP_RIGHT_TOE, _MP_RIGHT_HEEL,
             K.RIGHT_ANKLE, K.LEFT_ANKLE)):
        kp[big] = (*pose33[toe_i, :2], vis[toe_i])
        kp[heel] = (*pose33[heel_i, :2], vis[heel_i])
        kp[small, :2] = small_toe(pose33[toe_i, :2], pose33[heel_i, :2], kp[ank, :2], kp[other, :2])
        kp[small, 2] = 0.5 * min(vis[toe_i], vis[heel_i])
    if face468 is not None:
        kp[K.FACE] = np.concatenate([face468[FACE468_FOR_IBUG68, :2],
                                     np.full((68, 1), FACE_SCORE)], 1)
    else:
        kp[K.FACE, :2] = kp[K.NOSE, :2]
    for hand, group, wrist in ((left_hand, K.LEFT_HAND, K.LEFT_WRIST),
                               (right_hand, K.RIGHT_HAND, K.RIGHT_WRIST)):
        if hand is not None:
            kp[group] = np.concatenate([hand[:, :2], np.full((21, 1), HAND_SCORE)], 1)
        else:
            kp[group, :2] = kp[wrist, :2]
    h, w = size_hw
    outside = (kp[:, 0] < 0) | (kp[:, 0] > w) | (kp[:, 1] < 0) | (kp[:, 1] > h)
    kp[outside, 2] = 0.0
    return kp


def dwpose_to_keypoints(xy: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Map one DWPose person onto the 133 layout: (133, 3) float32.

    xy: (134, 2) or (133, 2) pixels; scores: matching (134,) / (133,). 134 is controlnet_aux's
    ``Wholebody`` output: OpenPose-18 body (neck inserted at 1) then COCO-WholeBody 17..132.
    133 is plain COCO-WholeBody order. Scores are clipped to [0, 1].
    """
    from .openpose import OPENPOSE18_FOR_COCO17

    xy, scores = np.asarray(xy, np.float32), np.asarray(scores, np.float32)
    kp = np.concatenate([xy, np.clip(scores, 0.0, 1.0)[:, None]], 1)
    if len(kp) == K.NUM_KEYPOINTS:
        return kp
    if len(kp) != K.NUM_KEYPOINTS + 1:
        raise ValueError(f"DWPose output must have 133 or 134 points, got {len(kp)}")
    return np.concatenate([kp[OPENPOSE18_FOR_COCO17], kp[18:]], 0)


def upper_body_visible(kp: np.ndarray, min_score: float = MIN_SHOULDER_SCORE) -> bool:
    """True if both shoulders of a (133, 3) skeleton score at least ``min_score``."""
    return bool(kp[[K.LEFT_SHOULDER, K.RIGHT_SHOULDER], 2].min() >= min_score)


def _landmarks(lm: Any, size_hw: tuple[int, int],
               with_visibility: bool = False) -> np.ndarray | None:
    """MediaPipe NormalizedLandmarkList -> (n, 2|3) pixels (+ visibility), or None."""
    if lm is None:
        return None
    h, w = size_hw
    rows = [(p.x * w, p.y * h, p.visibility) if with_visibility else (p.x * w, p.y * h)
            for p in lm.landmark]
    return np.asarray(rows, np.float64)


_DRAWING = ("mediapipe.python.solutions.drawing_styles", "mediapipe.python.solutions.drawing_utils")


class _OnFirstUse(type(sys)):
    """Stands in for a module until one of its attributes is used; then the real module is
    imported, replaces it in ``sys.modules`` and on its package, and answers."""

    def __getattr__(self, attr: str):
        import importlib

        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)
        parent, _, child = name.rpartition(".")
        setattr(sys.modules[parent], child, real)
        return getattr(real, attr)


def import_mediapipe():
    """``import mediapipe``, without importing its drawing helpers until they are used.

    MediaPipe 0.10.14's ``solutions`` package imports ``drawing_styles`` and ``drawing_utils``,
    and with them ``matplotlib.pyplot``: about half of MediaPipe's import time (0.5 s of CPU at
    every ``csg run``; ``python -X importtime``, docs/benchmarks.md). csg never draws with them,
    so they enter as :class:`_OnFirstUse` stand-ins: ``mp.solutions.drawing_utils.X`` still works
    (the real module is imported then). Only done when MediaPipe is not imported yet."""
    if "mediapipe" not in sys.modules:
        stand_ins = {name: _OnFirstUse(name) for name in _DRAWING if name not in sys.modules}
        sys.modules.update(stand_ins)
        try:
            import mediapipe
        except BaseException:
            for name, mod in stand_ins.items():
                if sys.modules.get(name) is mod:
                    del sys.modules[name]
            raise
        solutions = sys.modules["mediapipe.python.solutions"]
        for name, mod in stand_ins.items():
            if sys.modules.get(name) is mod:
                setattr(solutions, name.rpartition(".")[2], mod)
    import mediapipe

    return mediapipe


@contextlib.contextmanager
def quiet_mediapipe():
    """Silence fd 2 while MediaPipe's C++ graph starts and runs (its glog/TFLite chatter would
    break the CLI's one-line errors). Python exceptions still propagate after the block. With
    DEBUG logging on for this module nothing is silenced."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. an embedded interpreter)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def resolve_dwpose_weights(path_or_id: str | None) -> tuple[Path, Path]:
    """Find ``(detector .pth, pose .pth)`` in a local folder or a cached hub repo; never downloads.

    The folder (or hub snapshot) must hold a YOLOX detector checkpoint (``yolox*.pth``) and the
    DWPose checkpoint (``dw-ll_ucoco*.pth`` or ``*dwpose*.pth``).
    """
    fix = ("put yolox_l_8x8_300e_coco.pth and dw-ll_ucoco_384.pth in a folder and pass "
           "--dwpose FOLDER, or use --backend mediapipe")
    if not path_or_id:
        raise WeightsNotFoundError(f"dwpose: no weights given; {fix}")
    folder = Path(path_or_id).expanduser()
    if not folder.is_dir():
        if folder.exists() or str(path_or_id).count("/") != 1:
            raise WeightsNotFoundError(f"{path_or_id}: DWPose weights folder not found; {fix}")
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(path_or_id), local_files_only=True))
        except Exception:  # noqa: BLE001 - any hub/cache failure means "not available offline"
            raise WeightsNotFoundError(f"{path_or_id}: not a local folder and not in the Hugging "
                                       f"Face cache (csg never downloads); {fix}") from None
    found = {}
    for role, patterns in (("detector", ("yolox*.pth",)),
                           ("pose", ("dw-ll_ucoco*.pth", "*dwpose*.pth"))):
        hits = sorted(h for pat in patterns for h in folder.rglob(pat))
        if not hits:
            raise WeightsNotFoundError(f"{folder}: no {role} checkpoint ({' or '.join(patterns)}); "
                                       f"{fix}")
        found[role] = hits[0]
    return found["detector"], found["pose"]


class PoseExtractor:
    """Per-frame 133-point skeletons from RGB frames, keeping one detector alive between calls.

    ``with PoseExtractor() as ex: kp = ex(frame)`` gives a (133, 3) float32 array, or None when no
    person with visible shoulders is found. ``video=True`` (default) lets MediaPipe track between
    frames (``static_image_mode=False``); use ``video=False`` for unrelated photos.
    """

    def __init__(self, *, backend: str = "mediapipe", video: bool = True,
                 dwpose: str | None = None, min_shoulder_score: float = MIN_SHOULDER_SCORE):
        if backend not in BACKENDS:
            raise InputError(f"backend: unknown {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.backend, self.video, self.min_shoulder_score = backend, video, min_shoulder_score
        self._model: Any = None
        if backend == "mediapipe":
            with quiet_mediapipe():
                mp = import_mediapipe()
                self._model = mp.solutions.holistic.Holistic(
                    static_image_mode=not video, model_complexity=1, smooth_landmarks=video,
                    refine_face_landmarks=False, enable_segmentation=False)
        else:
            det, pose = resolve_dwpose_weights(dwpose)
            try:
                from controlnet_aux import DWposeDetector
                import mmpose  # noqa: F401 - DWposeDetector needs it; fail here, clearly

                self._model = DWposeDetector(det_ckpt=str(det), pose_ckpt=str(pose))
            except ImportError as e:
                raise CsgError(f"dwpose backend: missing package {e.name!r}; install mmcv, "
                               "mmdet and mmpose (see controlnet_aux), or use --backend "
                               "mediapipe") from None

    def __call__(self, frame: np.ndarray, source: str = "frame") -> np.ndarray | None:
        """frame: (H, W, 3) uint8 RGB -> (133, 3) float32 pixel keypoints, or None."""
        if self._model is None:
            raise RuntimeError("PoseExtractor is closed")
        frame = _check_image(frame, source)
        size_hw = frame.shape[:2]
        if self.backend == "mediapipe":
            with quiet_mediapipe():
                r = self._model.process(frame)
            if r.pose_landmarks is None:
                return None
            kp = holistic_to_keypoints(
                _landmarks(r.pose_landmarks, size_hw, True), _landmarks(r.face_landmarks, size_hw),
                _landmarks(r.left_hand_landmarks, size_hw),
                _landmarks(r.right_hand_landmarks, size_hw), size_hw)
        else:
            import cv2

            xy, scores = self._model.pose_estimation(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            if len(xy) == 0:
                return None
            best = int(np.argmax(np.asarray(scores)[:, :18].mean(1)))  # the clearest person
            kp = dwpose_to_keypoints(xy[best], scores[best])
        return kp if upper_body_visible(kp, self.min_shoulder_score) else None

    def close(self) -> None:
        if self._model is not None and hasattr(self._model, "close"):
            self._model.close()
        self._model = None

    def __enter__(self) -> "PoseExtractor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


FACE_DETECT_SCORE = 0.6
"""Face detections below this score are not counted as people (:func:`count_faces`)."""
FACE_SIZE_RATIO = 0.5
"""A second face counts as another person when its box is at least this wide relative to the
widest face: a small face in the background (audience, a poster) does not."""


def count_faces(image: np.ndarray) -> list[float]:
    """Horizontal centres (fractions of the width) of the people's faces in a photo, widest first.

    MediaPipe's full-range face detector (bundled, no download); faces scoring under
    :data:`FACE_DETECT_SCORE`, or narrower than :data:`FACE_SIZE_RATIO` x the widest, are left out."""
    with quiet_mediapipe():
        mp = import_mediapipe()
        with mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                       min_detection_confidence=FACE_DETECT_SCORE) as fd:
            dets = fd.process(image).detections or []
    boxes = [d.location_data.relative_bounding_box for d in dets if d.score[0] >= FACE_DETECT_SCORE]
    if not boxes:
        return []
    widest = max(b.width for b in boxes)
    keep = sorted((b for b in boxes if b.width >= FACE_SIZE_RATIO * widest),
                  key=lambda b: -b.width)
    return [float(b.xmin + b.width / 2) for b in keep]


def extract_pose(image: np.ndarray, *, backend: str = "mediapipe", source: str = "image",
                 dwpose: str | None = None) -> PoseSequence:
    """Reference skeleton of the one person in a photo: a T=1 :class:`PoseSequence` at 25 fps.

    image: (H, W, 3) uint8 RGB; the canvas is W x H pixels. ``source`` names the photo in errors.
    Raises :class:`NoPersonError` when no body, or no reliably visible shoulders, are found, and
    :class:`InputError` when the photo shows more than one person (:func:`count_faces`).
    """
    image = _check_image(image, source)
    faces = count_faces(image)
    if len(faces) > 1:
        where = ", ".join(f"{100 * x:.0f} %" for x in sorted(faces))
        raise InputError(f"{source}: {len(faces)} people in the photo (faces at {where} of the "
                         "width); csg animates one person: crop the photo to the one to animate")
    with PoseExtractor(backend=backend, video=False, dwpose=dwpose) as ex:
        kp = ex(image, source)
    if kp is None:
        raise NoPersonError(f"{source}: no person found in the photo; use a photo of one person "
                            "with the head and both shoulders visible (arms move only where the "
                            "photo shows them)")
    h, w = image.shape[:2]
    return PoseSequence(kp[None], fps=25.0, width=w, height=h,
                        meta={"backend": backend, "source": str(source)}).validate(str(source))
