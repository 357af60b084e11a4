"""Windowed torch Datasets over the dataset format of :mod:`csg.data.manifest`.

Windows are a fixed list of ``(clip, start)`` computed at construction, so an index always means the
same frames. Pose frame ``i`` and audio samples ``frame_bounds(T, 16000, fps)[i:i+1]`` line up exactly.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import keypoints as K
from ..errors import ConfigError, DataError
from .manifest import Clip, load_clip, read_manifest, select

log = logging.getLogger(__name__)


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """Start frames of the full windows of ``window`` frames every ``stride`` frames."""
    return list(range(0, num_frames - window + 1, stride))


def _load_split(root, split: str, window: int, what: str) -> list[Clip]:
    recs = select(read_manifest(root), split)
    if not recs:
        raise DataError(f"{Path(root) / 'manifest.jsonl'}: no clips in split {split!r}")
    clips = []
    for rec in recs:
        clip = load_clip(root, rec)
        T = clip.poses.shape[0]
        if T < window:
            raise DataError(f"clip {rec.id}: {T} frames is shorter than the {what} window of "
                            f"{window} frames; use a smaller window or drop the clip")
        clips.append(clip)
    return clips


ANCHOR_POINTS = np.array([K.LEFT_SHOULDER, K.RIGHT_SHOULDER, K.LEFT_HIP, K.RIGHT_HIP])
"""Shoulders and hips: what stage 1 anchors its coordinates on."""


def _same_anchors(frame: np.ndarray, ref: np.ndarray, reliable: float = 0.3) -> bool:
    """Whether ``frame`` (133, 3) has reliable shoulders and the reference's reliable hips
    (``reliable``: stage 1's anchor threshold, ``audio2pose.normalize.RELIABLE``)."""
    a = ANCHOR_POINTS
    return bool((frame[a[:2], 2] > reliable).all()
                and ((frame[a, 2] > reliable) == (ref[a, 2] > reliable)).all())


def _mid_reference(frame: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(133, 3) the window's first ``frame`` as a reference, with the clip reference's face moved
    onto it (by the nose tip): the body and hands mid-gesture, the face at rest - a frame mid-word
    has an open mouth, and the mouth is read relative to the reference's."""
    out = np.array(frame, np.float32, copy=True)
    out[K.FACE, :2] = ref[K.FACE, :2] + (frame[K.NOSE_TIP, :2] - ref[K.NOSE_TIP, :2])
    out[K.FACE, 2] = ref[K.FACE, 2]
    return out


class PoseWindowDataset(Dataset):
    """Audio-feature / pose windows for stage 1.

    Items: ``audio`` (W, D) float32 features (csg.features.audio_features with ``feature_cfg``, over
    the whole clip, then sliced), ``poses`` (W, 133, 3) float32 pixels + score, ``ref`` (133, 3),
    ``loss_mask`` (133,) float32 (1: the keypoint's losses count; a clip's ``loss_mask`` npz array,
    see :mod:`csg.data.mix`, else all ones), ``clip_id`` str, ``start`` int. ``stride`` defaults to ``window // 2``. With ``augment`` the
    clip's audio is augmented (:func:`csg.data.augment.augment_audio`) with a generator seeded by
    ``(seed, epoch, index)`` before the features are computed (``set_epoch`` changes the draw).

    ``ref_start``: the share of windows (starting after frame 0) whose ``ref`` is their own first
    frame instead of the clip's reference, drawn from ``(seed, epoch, index)``: the corpus starts
    every clip at rest, while a real photo is often mid-gesture, and a model that only ever saw
    rest references adds the corpus's rise to any photo (docs/audio2pose.md, "Hand height"). The
    face stays the clip reference's, moved onto the frame (:func:`_mid_reference`). Only frames
    whose shoulders and hips are as reliable as the reference's qualify (the same anchors then
    normalise the window).
    """

    def __init__(self, root, split: str = "train", *, window: int = 80, stride: int | None = None,
                 feature_cfg=None, augment: bool = False, seed: int = 0, ref_start: float = 0.0):
        from ..features import AudioFeatureConfig

        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.root, self.split, self.window = Path(root), split, int(window)
        self.stride = int(stride or max(1, window // 2))
        self.feature_cfg = feature_cfg or AudioFeatureConfig()
        self.augment, self.seed, self.epoch = augment, int(seed), 0
        if not 0.0 <= ref_start <= 1.0:
            raise ConfigError(f"ref_start must be in [0, 1], got {ref_start}")
        self.ref_start = float(ref_start)
        self.clips = _load_split(root, split, self.window, "pose")
        from .mix import load_loss_mask

        # (133,) per clip: 1 where the clip's keypoint losses count (csg.data.mix; default all)
        self.loss_masks = [m if (m := load_loss_mask(self.root / c.record.npz)) is not None
                           else np.ones(c.poses.shape[1], np.float32) for c in self.clips]
        self._features: dict[int, np.ndarray] = {}
        self.windows = [(c, s) for c, clip in enumerate(self.clips)
                        for s in window_starts(clip.poses.shape[0], self.window, self.stride)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.windows)

    def features(self, c: int, wav: np.ndarray | None = None) -> np.ndarray:
        """(T, D) features of clip ``c`` (cached unless ``wav`` replaces its audio)."""
        from ..features import audio_features

        clip = self.clips[c]
        if wav is None and c in self._features:
            return self._features[c]
        f = audio_features(clip.audio if wav is None else wav, 16000, clip.fps,
                           clip.poses.shape[0], self.feature_cfg).astype(np.float32)
        if wav is None:
            self._features[c] = f
        return f

    def __getitem__(self, index: int) -> dict:
        c, s = self.windows[index]
        clip = self.clips[c]
        if self.augment:
            from .augment import augment_audio

            g = np.random.default_rng([self.seed, self.epoch, index])
            feats = self.features(c, augment_audio(clip.audio, 16000, g))
        else:
            feats = self.features(c)
        w = slice(s, s + self.window)
        ref = clip.ref
        if s > 0 and self.ref_start > 0 and \
                np.random.default_rng([self.seed, self.epoch, index, 1]).random() < self.ref_start \
                and _same_anchors(clip.poses[s], clip.ref):
            ref = _mid_reference(clip.poses[s], clip.ref)
        return {"audio": torch.from_numpy(np.ascontiguousarray(feats[w])),
                "poses": torch.from_numpy(np.ascontiguousarray(clip.poses[w])),
                "ref": torch.from_numpy(ref.copy()),
                "loss_mask": torch.from_numpy(self.loss_masks[c].copy()),
                "clip_id": clip.record.id, "start": s}


class VideoWindowDataset(Dataset):
    """Frame / pose / audio windows for stage 2 (clips that have a video).

    Items: ``frames`` (W, 3, H, W) float32 in [-1, 1] (channel-first), ``poses`` (W, 133, 3) in the
    pixels of the returned frames, ``audio`` (W, D) features, ``ref_frame`` (3, H, W) the clip's first
    frame, ``ref_pose`` (133, 3) its pose, ``clip_id``, ``start``. ``size`` (H, W) resizes frames and
    scales pose x/y. ``stride`` defaults to ``window``.
    """

    def __init__(self, root, split: str = "train", *, window: int = 16, size=None,
                 stride: int | None = None, feature_cfg=None):
        from ..features import AudioFeatureConfig
        from ..video import probe_video

        self.root, self.window = Path(root), int(window)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.stride = int(stride or window)
        self.feature_cfg = feature_cfg or AudioFeatureConfig()
        clips = _load_split(root, split, self.window, "video")
        self.clips = []
        for clip in clips:
            if clip.record.video is None:
                continue
            path = self.root / clip.record.video
            if not path.is_file():
                raise DataError(f"clip {clip.record.id}: video {path} not found")
            n = probe_video(path)["num_frames"]
            if n != clip.poses.shape[0]:
                raise DataError(f"clip {clip.record.id}: {path.name} has {n} frames but the npz "
                                f"has {clip.poses.shape[0]} poses; re-make the clip")
            self.clips.append(clip)
        if not self.clips:
            raise DataError(f"{self.root}: no clip of split {split!r} has a video; make the "
                            "dataset with frames (csg data synth --frames)")
        self._features: dict[int, np.ndarray] = {}
        self.windows = [(c, s) for c, clip in enumerate(self.clips)
                        for s in window_starts(clip.poses.shape[0], self.window, self.stride)]

    def __len__(self) -> int:
        return len(self.windows)

    def _frames(self, clip: Clip, idx: list[int]) -> np.ndarray:
        import cv2

        from ..video import read_video

        want, out = set(idx), {}
        for i, f in enumerate(read_video(self.root / clip.record.video, max_frames=max(idx) + 1)):
            if i in want:
                if self.size is not None and f.shape[:2] != self.size:
                    f = cv2.resize(f, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
                out[i] = f
        return np.stack([out[i] for i in idx])

    def __getitem__(self, index: int) -> dict:
        from ..features import audio_features

        c, s = self.windows[index]
        clip = self.clips[c]
        if c not in self._features:
            self._features[c] = audio_features(clip.audio, 16000, clip.fps, clip.poses.shape[0],
                                               self.feature_cfg).astype(np.float32)
        idx = list(range(s, s + self.window))
        frames = self._frames(clip, [0] + idx)
        poses = clip.poses[[0] + idx].copy()
        if self.size is not None:
            poses[..., 0] *= self.size[1] / clip.width
            poses[..., 1] *= self.size[0] / clip.height
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return {"frames": x[1:], "poses": torch.from_numpy(poses[1:]),
                "audio": torch.from_numpy(self._features[c][s:s + self.window].copy()),
                "ref_frame": x[0], "ref_pose": torch.from_numpy(poses[0]),
                "clip_id": clip.record.id, "start": s}
