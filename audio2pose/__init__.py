"""Stage 1: speech + reference skeleton -> whole-body skeleton sequence (diffusion).

Public API (imported lazily, so ``import audio2pose`` stays light)::

    from audio2pose import Audio2PosePipeline, generate_poses, default_checkpoint_dir
    pipe = Audio2PosePipeline.from_pretrained()          # the embedded default checkpoint
    poses = pipe(wav, 16000, ref, steps=25, cfg_scale=2.0, generator=torch.Generator().manual_seed(0))
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Audio2PosePipeline": "audio2pose.pipeline",
    "generate_poses": "audio2pose.pipeline",
    "default_checkpoint_dir": "audio2pose.pipeline",
    "PoseDenoiser": "audio2pose.model",
    "TrainConfig": "audio2pose.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'audio2pose' has no attribute {name!r}")
