"""Small builders shared by tests (not fixtures, so they take arguments)."""
from __future__ import annotations

import numpy as np

from csg import keypoints as K
from csg.pose import PoseSequence


def make_reference_keypoints(height: int = 480, width: int = 640) -> np.ndarray:
    """(133, 3) upright frontal skeleton centred on a height x width canvas, all scores 0.95."""
    cx, s = width / 2, height / 10.0  # s: about a head height
    kp = np.zeros((K.NUM_KEYPOINTS, 3), np.float32)
    body = {
        K.NOSE: (0, 1.2), K.LEFT_EYE_C: (0.25, 1.0), K.RIGHT_EYE_C: (-0.25, 1.0),
        K.LEFT_EAR: (0.5, 1.1), K.RIGHT_EAR: (-0.5, 1.1), K.LEFT_SHOULDER: (1.0, 2.2),
        K.RIGHT_SHOULDER: (-1.0, 2.2), K.LEFT_ELBOW: (1.3, 3.5), K.RIGHT_ELBOW: (-1.3, 3.5),
        K.LEFT_WRIST: (1.2, 4.7), K.RIGHT_WRIST: (-1.2, 4.7), K.LEFT_HIP: (0.6, 5.0),
        K.RIGHT_HIP: (-0.6, 5.0), K.LEFT_KNEE: (0.6, 6.8), K.RIGHT_KNEE: (-0.6, 6.8),
        K.LEFT_ANKLE: (0.6, 8.5), K.RIGHT_ANKLE: (-0.6, 8.5),
    }
    for j, (dx, dy) in body.items():
        kp[j, :2] = (cx + dx * s, dy * s)
    for j, (ank, sgn) in zip(range(K.FEET.start, K.FEET.stop),
                             [(K.LEFT_ANKLE, 1)] * 3 + [(K.RIGHT_ANKLE, -1)] * 3):
        kp[j, :2] = kp[ank, :2] + (sgn * 0.2 * s * (j % 3), 0.3 * s)
    # face: an ellipse of 68 points around the nose, with an inner-lip gap
    ang = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    face = np.stack([cx + 0.5 * s * np.cos(ang), 1.1 * s + 0.6 * s * np.sin(ang)], -1)
    kp[K.FACE, :2] = face
    kp[K.CHIN, :2] = (cx, 1.8 * s)
    kp[K.RIGHT_BROW, :2] = np.stack([np.linspace(cx - 0.45 * s, cx - 0.1 * s, 5),
                                     np.full(5, 0.75 * s)], -1)
    kp[K.LEFT_BROW, :2] = np.stack([np.linspace(cx + 0.1 * s, cx + 0.45 * s, 5),
                                    np.full(5, 0.75 * s)], -1)
    inner = np.stack([cx + 0.15 * s * np.cos(np.linspace(np.pi, 3 * np.pi, 8, endpoint=False)),
                      1.5 * s + 0.02 * s * np.sin(np.linspace(np.pi, 3 * np.pi, 8, endpoint=False))],
                     -1)
    kp[K.INNER_LIPS, :2] = inner
    for root, wrist in ((K.LEFT_HAND_ROOT, K.LEFT_WRIST), (K.RIGHT_HAND_ROOT, K.RIGHT_WRIST)):
        for i in range(K.HAND_SIZE):
            finger, joint = (i - 1) // 4, (i - 1) % 4
            off = (0.0, 0.0) if i == 0 else ((finger - 2) * 0.08 * s, (joint + 1) * 0.1 * s)
            kp[root + i, :2] = kp[wrist, :2] + off
    kp[:, 2] = 0.95
    return kp


def make_reference_pose(height: int = 480, width: int = 640, fps: float = 25.0) -> PoseSequence:
    return PoseSequence(make_reference_keypoints(height, width)[None], fps=fps, width=width,
                        height=height)


def make_moving_pose(num_frames: int = 16, height: int = 480, width: int = 640,
                     fps: float = 25.0, seed: int = 0) -> PoseSequence:
    """A short sequence: the reference with a waving right wrist and an opening mouth."""
    rng = np.random.default_rng(seed)
    base = make_reference_keypoints(height, width)
    kps = np.repeat(base[None], num_frames, axis=0)
    t = np.arange(num_frames) / fps
    wave = np.sin(2 * np.pi * 1.5 * t)[:, None] * height * 0.03
    kps[:, K.RIGHT_HAND, 1] += wave
    kps[:, K.RIGHT_WRIST, 1] += wave[:, 0]
    kps[:, K.INNER_LIPS.start + 5:K.INNER_LIPS.stop - 0, 1] += np.abs(wave) * 0.3
    kps[..., :2] += rng.normal(0, 0.2, kps[..., :2].shape)
    return PoseSequence(kps.astype(np.float32), fps=fps, width=width, height=height)


def speech_like(seconds: float, sr: int = 16000) -> np.ndarray:
    """A voiced-sounding test signal: a 160 Hz tone gated at 2.5 Hz (syllable-like bursts)."""
    t = np.arange(int(seconds * sr)) / sr
    env = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None)
    return (0.3 * env * np.sin(2 * np.pi * 160 * t)).astype(np.float32)


def save_tiny_stage1(folder):
    """A tiny Audio2PosePipeline (random weights, 2 steps) saved with save_pretrained to ``folder``.

    Small motion statistics keep the random model's skeletons near the reference, as a trained
    model's are (the warp renderer refuses a person far off the photo)."""
    import torch

    from audio2pose.config import SamplingConfig
    from audio2pose.model import PoseDenoiser
    from audio2pose.pipeline import Audio2PosePipeline
    from csg.features import AudioFeatureConfig, feature_dim

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # test-only: fixes the random init of the tiny model
        feats = AudioFeatureConfig(n_mels=8, context=1)
        model = PoseDenoiser(audio_dim=feature_dim(feats), dim=32, depth=1, heads=2, ff_mult=2)
    model.set_coord_stats(torch.zeros(133, 2), torch.full((133, 2), 0.05))
    pipe = Audio2PosePipeline(model, feats, 25.0, SamplingConfig(window=16, overlap=4, steps=2))
    return pipe.save_pretrained(folder)


def tiny_corpus(root, *, clips: int, seconds: float = 2.0, frames: bool = False,
                size_hw: tuple = (96, 128)):
    """A small procedural corpus (``csg data synth`` without espeak, one process) written to
    ``root``; returns ``root``. ``frames`` also writes the avatar videos (the vdm renderer's data)."""
    from csg.data.synth import SynthConfig, make_corpus

    make_corpus(root, SynthConfig(clips=clips, seconds=seconds, frames=frames, espeak=False,
                                  size_hw=size_hw), workers=1, progress=False)
    return root
