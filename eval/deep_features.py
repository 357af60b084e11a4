"""Learned-feature metrics (FID, FVD) through a small ``FeatureExtractor`` interface.

csg never downloads these networks. The user passes a TorchScript file they already have:

- FID: an Inception-v3 pool feature network, called as ``net(x)`` with x (B, 3, H, W) float in
  [0, 1] (default 299 x 299), returning (B, D) (or (B, D, 1, 1)).
- FVD: an I3D network, called as ``net(x)`` with x (B, 3, T, H, W) float in [-1, 1]
  (default T = 16, 224 x 224), returning (B, D). (Wrap e.g. StyleGAN-V's ``i3d_torchscript.pt`` so
  its keyword options are baked in.)

Features of generated and real frames/clips are compared with :mod:`eval.frechet`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from csg.errors import InputError, WeightsNotFoundError

logger = logging.getLogger(__name__)


class FeatureExtractor(Protocol):
    """frames (N, H, W, 3) uint8 RGB -> features (M, D) float64 (M = N per frame, or clips)."""

    name: str

    def __call__(self, frames: np.ndarray) -> np.ndarray: ...


def load_torchscript(path: str | Path, what: str):
    """Load a TorchScript module on CPU in eval mode; clear errors when missing or not TorchScript."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise WeightsNotFoundError(f"{p}: {what} weights not found; csg never downloads them, pass "
                                   f"the path of a local TorchScript file")
    try:
        import warnings

        with warnings.catch_warnings():  # torch 2.x FutureWarning about TorchScript deprecation
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(p), map_location="cpu").eval()
    except RuntimeError as e:
        raise InputError(f"{p}: not a TorchScript file ({' '.join(str(e).split())[:120]}); export "
                         f"the {what} network with torch.jit.script/trace and .save()") from None


def _resize(frames: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(f, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
                     for f in frames])


class FrameFeatures:
    """Per-frame features (FID): resize, scale to [0, 1], NCHW, ``net(x)`` in batches."""

    def __init__(self, net, *, name: str = "inception", size_hw=(299, 299), batch_size: int = 16):
        self.net, self.name, self.size_hw, self.batch_size = net, name, tuple(size_hw), batch_size

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for b in range(0, len(frames), self.batch_size):
                x = _resize(frames[b:b + self.batch_size], self.size_hw).astype(np.float32) / 255.0
                y = self.net(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
                out.append(y.reshape(y.shape[0], -1).double().numpy())
        return np.concatenate(out)


class ClipFeatures:
    """Per-clip features (FVD): non-overlapping clips of ``clip_len`` frames, [-1, 1], NCTHW."""

    def __init__(self, net, *, name: str = "i3d", clip_len: int = 16, size_hw=(224, 224)):
        self.net, self.name, self.clip_len, self.size_hw = net, name, clip_len, tuple(size_hw)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch

        n = len(frames) // self.clip_len
        if n == 0:
            raise InputError(f"{self.name}: a video of {len(frames)} frames is shorter than one "
                             f"{self.clip_len}-frame clip")
        out = []
        with torch.no_grad():
            for i in range(n):
                c = _resize(frames[i * self.clip_len:(i + 1) * self.clip_len], self.size_hw)
                x = torch.from_numpy(c.astype(np.float32) / 127.5 - 1.0).permute(3, 0, 1, 2)[None]
                y = self.net(x.contiguous())
                out.append(y.reshape(1, -1).double().numpy())
        return np.concatenate(out)


def fid_extractor(path: str | Path, **kw) -> FrameFeatures:
    return FrameFeatures(load_torchscript(path, "Inception (FID)"), **kw)


def fvd_extractor(path: str | Path, **kw) -> ClipFeatures:
    return ClipFeatures(load_torchscript(path, "I3D (FVD)"), **kw)


def frechet_between(extractor: FeatureExtractor, gen: np.ndarray, real: np.ndarray) -> float:
    """Fréchet distance between the extractor's features of two frame stacks (N, H, W, 3).

    NaN (with a log line) when either side yields fewer than 2 feature rows: a Gaussian cannot be
    fitted, as happens for FVD on a clip shorter than two I3D windows.
    """
    from eval.frechet import frechet_distance_features

    a, b = extractor(gen), extractor(real)
    if len(a) < 2 or len(b) < 2:
        logger.warning("%s: only %d / %d feature rows; Fréchet distance needs >= 2 each",
                       extractor.name, len(a), len(b))
        return float("nan")
    return frechet_distance_features(a, b)
