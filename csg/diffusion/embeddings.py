"""Sinusoidal position / timestep embeddings (Vaswani et al. 2017, §3.5; DDPM's timestep input).

One function for both stages and every model here, on top of diffusers' ``get_timestep_embedding``
(frequencies exp(-ln(max_period) · k / (dim/2)), k = 0 .. dim/2 - 1, i.e. ``downscale_freq_shift=0``).
Models differ only in the order of the two halves, which is part of their trained weights:
``cos_first=True`` gives [cos, sin] (the stage-1 ``PoseDenoiser``), ``False`` gives [sin, cos]
(the stage-1 sync classifiers). An odd ``dim`` is zero-padded by one column.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def sinusoidal(x: "torch.Tensor", dim: int, *, cos_first: bool = True,
               max_period: float = 10000.0) -> "torch.Tensor":
    """Embedding of positions / timesteps x (N,) -> float32 (N, dim)."""
    from diffusers.models.embeddings import get_timestep_embedding

    return get_timestep_embedding(x.reshape(-1), dim, flip_sin_to_cos=cos_first,
                                  downscale_freq_shift=0, max_period=max_period)
