"""Sinusoidal position / timestep embeddings (Vaswani et al. 2017, §3.5; DDPM's timestep input).

One function for both stages and every model here: frequencies exp(-ln(max_period) · k / (dim/2)),
k = 0 .. dim/2 - 1, the convention of diffusers' ``get_timestep_embedding`` with
``downscale_freq_shift=0``, computed with the same torch operations in the same order (the same bits,
``tests/test_audio2pose_fastload.py``) but without importing diffusers, whose embeddings module
pulls in torch._dynamo (~3 CPU s on every ``csg run``). Models differ only in the order of the two
halves, which is part of their trained weights: ``cos_first=True`` gives [cos, sin] (the stage-1
denoiser), ``False`` gives [sin, cos] (the stage-1 sync classifiers, the vdm positions). An odd
``dim`` is zero-padded by one column.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def sinusoidal(x: "torch.Tensor", dim: int, *, cos_first: bool = True,
               max_period: float = 10000.0) -> "torch.Tensor":
    """Embedding of positions / timesteps x (any shape, flattened to N) -> float32 (N, dim)."""
    import torch

    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=x.device)
    freqs = torch.exp(exponent / half)
    emb = x.reshape(-1)[:, None].float() * freqs[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if cos_first:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1, 0, 0))
    return emb
