"""One user seed, one generator per stage.

Stage 1 (speech -> skeleton) draws its noise from ``torch.Generator().manual_seed(seed)``, so
``csg pose generate --seed S`` and ``csg run --seed S`` give the same skeleton. Stage 2 (skeleton ->
frames) draws from its own generator seeded with :func:`stage_seed` ``(S, "render")``, so
re-rendering a skeleton (edited or not) with ``csg render --seed S`` or ``csg run --pose ... --seed S``
uses the same stage-2 noise as the run that produced it, however many numbers stage 1 consumed.
"""
from __future__ import annotations

import hashlib

STAGES = ("audio2pose", "render")


def stage_seed(seed: int, stage: str) -> int:
    """The 64-bit seed of ``stage`` derived from the user's ``seed``.

    ``audio2pose`` keeps ``seed`` itself; any other stage gets the first 8 bytes (little endian) of
    ``sha256(f"csg:{stage}:{seed}")``, so the stages' streams are unrelated and fixed by ``seed``.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    seed = int(seed)
    if stage == "audio2pose":
        return seed
    return int.from_bytes(hashlib.sha256(f"csg:{stage}:{seed}".encode()).digest()[:8], "little")


def stage_generator(seed: int, stage: str, device: str = "cpu"):
    """A ``torch.Generator`` on ``device`` seeded with :func:`stage_seed` ``(seed, stage)``."""
    import torch

    dev = "cpu" if str(device).startswith("cpu") else str(device)
    return torch.Generator(dev).manual_seed(stage_seed(seed, stage))
