"""``PoseDenoiser``: a small transformer encoder that denoises whole-body skeleton sequences.

One token per frame plus one reference token. A frame token is the sum of

- the noisy pose z_t (133 x 2: the motion ``rel - ref_rel`` of the reference-relative coordinates of
  :mod:`.normalize`, standardised, see :meth:`PoseDenoiser.standardize`),
- the frame's audio features (or a learned null embedding when the condition is dropped, for
  classifier-free guidance; Ho & Salimans 2022),
- the known-prefix input: clean values of frames given in advance and a learned "given" embedding on
  those frames (so the model knows which frames are fixed: window continuation and frame 0 = ref),
- the reference skeleton embedding, the timestep embedding and a sinusoidal frame position (no
  learned table, so windows longer than the training ones still get positions).

Two heads: the coordinate prediction (x0 or v, per ``prediction_type``) and per-keypoint score logits
(sigmoid -> confidence). The motion is standardised with the statistics held in the ``coord_mean``
(per coordinate) / ``coord_std`` (per region) buffers, saved with the weights. The reference enters
unstandardised (reference-relative coordinates, O(1) by construction; 0 where it is unreliable).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from csg.diffusion.embeddings import sinusoidal as _sinusoidal
from csg.keypoints import NUM_KEYPOINTS


@dataclass
class DenoiserOutput:
    """sample: (B, T, 133, 2) x0 or v prediction; score_logits: (B, T, 133)."""

    sample: torch.Tensor
    score_logits: torch.Tensor


def sinusoidal(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """The denoiser's sinusoidal embedding, cos half first (as its checkpoints were trained);
    :func:`csg.diffusion.embeddings.sinusoidal`. x: (N,) -> (N, dim)."""
    return _sinusoidal(x, dim, cos_first=True, max_period=max_period)


class PoseDenoiser(ModelMixin, ConfigMixin):
    """Audio- and reference-conditioned skeleton denoiser.

    Args (all keyword-only, saved in ``config.json``):
        audio_dim: per-frame audio feature size (``csg.features.feature_dim``).
        dim, depth, heads, ff_mult, dropout: transformer width, layers, heads, MLP ratio, dropout.
        prediction_type: ``"sample"`` (x0) or ``"v_prediction"``.
        num_train_timesteps: length of the cosine schedule the model was trained with.
    """

    @register_to_config
    def __init__(self, *, audio_dim: int = 80, dim: int = 192, depth: int = 4, heads: int = 4,
                 ff_mult: int = 4, dropout: float = 0.0, prediction_type: str = "sample",
                 num_train_timesteps: int = 1000, num_keypoints: int = NUM_KEYPOINTS):
        super().__init__()
        c = num_keypoints * 2
        self.pose_in = nn.Linear(c, dim)
        self.known_in = nn.Linear(c, dim)
        self.ref_in = nn.Linear(c, dim)
        self.audio_in = nn.Sequential(nn.Linear(audio_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.null_audio = nn.Parameter(torch.zeros(dim))
        self.given = nn.Parameter(torch.zeros(dim))
        self.ref_token = nn.Parameter(torch.zeros(dim))
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim * ff_mult, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.coord_out = nn.Linear(dim, c)
        self.score_out = nn.Linear(dim, num_keypoints)
        self.register_buffer("coord_mean", torch.zeros(num_keypoints, 2))
        self.register_buffer("coord_std", torch.ones(num_keypoints, 2))
        nn.init.normal_(self.null_audio, std=0.02)
        nn.init.normal_(self.given, std=0.02)
        nn.init.normal_(self.ref_token, std=0.02)

    # --- coordinate standardisation ------------------------------------------------------------
    def set_coord_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the mean / std (133, 2) of the training motion ``rel - ref_rel``."""
        self.coord_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.coord_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Motion ``rel - ref_rel`` (..., 133, 2) -> diffusion space (zero mean, unit std per region)."""
        return (x - self.coord_mean.to(x)) / self.coord_std.to(x)

    def destandardize(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`standardize`."""
        return z * self.coord_std.to(z) + self.coord_mean.to(z)

    # --- forward -------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor, t: torch.Tensor, audio: torch.Tensor, ref: torch.Tensor, *,
                known: torch.Tensor | None = None, known_mask: torch.Tensor | None = None,
                drop_audio: torch.Tensor | None = None) -> DenoiserOutput:
        """Denoise.

        z: (B, T, 133, 2) noisy standardised motion; t: (B,) int timesteps; audio: (B, T, D);
        ref: (B, 133, 2) reference-relative reference skeleton (0 on unreliable points); known: (B, T, 133, 2) clean standardised
        values of the given frames (ignored where ``known_mask`` is False); known_mask: (B, T) bool;
        drop_audio: (B,) bool, True where the audio is replaced by the learned null embedding.
        """
        B, T = z.shape[:2]
        h = self.pose_in(z.reshape(B, T, -1))
        a = self.audio_in(audio)
        if drop_audio is not None:
            a = torch.where(drop_audio[:, None, None], self.null_audio.to(a).expand_as(a), a)
        h = h + a
        if known is not None and known_mask is not None:
            m = known_mask[..., None].to(h)
            h = h + m * (self.known_in(known.reshape(B, T, -1)) + self.given)
        r = self.ref_in(ref.reshape(B, -1))[:, None]
        temb = self.time_mlp(sinusoidal(t.reshape(-1).expand(B) * 1.0, h.shape[-1]))[:, None]
        pos = sinusoidal(torch.arange(T, device=z.device), h.shape[-1]).to(h)[None]
        h = h + r + temb + pos
        head = (self.ref_token + r + temb)
        x = self.encoder(torch.cat([head, h], dim=1))
        x = self.norm(x[:, 1:])
        coords = self.coord_out(x).reshape(B, T, -1, 2)
        return DenoiserOutput(sample=coords, score_logits=self.score_out(x))
