"""The ``vdm`` denoiser: UniVDM (PAHA §4.1.1) as a transformer over latent patches.

One network, no reference network. A window holds ``K`` clean *context* frames (frame 0 the reference
photo's latent, then optionally the frames carried from the previous window) stacked along time with
``T`` noisy frames; all ``F = K + T`` frames are patchified into tokens and denoised jointly.

Conditioning:

- **pose**: the skeleton of every frame drawn as an RGB map (``csg.draw``) goes through a small
  convolutional pose guider whose last layer is zero-initialised; its output is added to the patch
  embeddings (MimicMotion / AnimateAnyone style). A learned null embedding replaces it when the pose
  is dropped (classifier-free guidance).
- **audio**: per-frame features with ``±m`` neighbour frames (PAHA's A(f), ``csg.features``) become
  ``2m + 1`` tokens per frame; each frame's patch tokens cross-attend to its own audio tokens. Learned
  null tokens replace them when the audio is dropped (and for context frames).
- **time**: per-frame AdaLN-zero modulation from the frame's diffusion timestep (context frames use
  t = 0 plus a learned "clean context" embedding).
- **attention**: factorised: spatial self-attention within a frame, temporal self-attention across
  frames at each patch position, both ``torch.nn.functional.scaled_dot_product_attention``; or,
  given a ``sparse`` plan (:mod:`pose2video.vdm.sparse`, IASA's global top-K and local region
  masks), the temporal attention gathers only the selected frames' keys and values.
- **positions**: 2D sine-cosine on *normalised* patch coordinates (``pos_grid`` x fraction of the
  height / width), so a model trained at 256 px runs at 512 px on the same position range; temporal
  sine-cosine on the frame index.

Shapes: ``context`` (B, K, C, h, w), ``noisy`` (B, T, C, h, w), ``timesteps`` (B,) int,
``pose_maps`` (B, K + T, 3, H, W) float in [0, 1] with H = 8h, W = 8w, ``audio`` (B, K + T, 2m + 1,
D_a) float. Output ``sample`` (B, T, C, h, w): the model's prediction (v, eps or x0, see
``prediction_type``) for the noisy frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn


@dataclass
class VdmOutput(BaseOutput):
    sample: torch.Tensor


def sincos(pos: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(...,) float positions -> (..., dim) [sin, cos] features: the shared
    :func:`csg.diffusion.embeddings.sinusoidal` (``cos_first=False``) over any leading shape."""
    from csg.diffusion.embeddings import sinusoidal

    out = sinusoidal(pos.float().reshape(-1), dim, cos_first=False, max_period=max_period)
    return out.reshape(*pos.shape, dim)


def patchify(z: torch.Tensor, p: int) -> torch.Tensor:
    """Latent frames into patch tokens: (B, F, C, h, w) -> (B, F, (h/p)(w/p), C p p)."""
    B, Fr, C, h, w = z.shape
    z = z.reshape(B, Fr, C, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
    return z.reshape(B, Fr, (h // p) * (w // p), C * p * p)


def grid_positions(gh: int, gw: int, dim: int, pos_grid: float, device) -> torch.Tensor:
    """(gh * gw, dim) 2D sine-cosine embedding of patch centres at *normalised* coordinates:
    row i -> (i + 0.5) / gh * pos_grid (same for columns), half the channels each."""
    y = (torch.arange(gh, device=device) + 0.5) / gh * pos_grid
    x = (torch.arange(gw, device=device) + 0.5) / gw * pos_grid
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.cat([sincos(yy.reshape(-1), dim // 2, 100.0),
                      sincos(xx.reshape(-1), dim // 2, 100.0)], -1)


class PoseGuider(nn.Module):
    """Skeleton map (N, 3, H, W) in [0, 1] -> (N, D, H / s, W / s), s = 8 * patch (4 stride-2 convs
    for patch 2). The last 1x1 conv is zero-initialised, so a new model ignores the pose at first."""

    def __init__(self, width: int, downsample: int, channels: int = 16):
        super().__init__()
        n = int(round(math.log2(downsample)))
        if 2 ** n != downsample:
            raise ValueError(f"pose guider downsample must be a power of 2, got {downsample}")
        layers, c_in = [], 3
        for i in range(n):
            c_out = min(channels * 2 ** i, 128)
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.SiLU()]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(c_in, width, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(maps))


class Attention(nn.Module):
    """Multi-head attention (self when ``kv`` is None) through ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, kv: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        kv = x if kv is None else kv
        h = self.heads
        q = self.q(x).view(B, N, h, D // h).transpose(1, 2)
        k, v = self.kv(kv).view(B, kv.shape[1], 2, h, D // h).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v)
        return self.proj(o.transpose(1, 2).reshape(B, N, D))

    def gathered(self, x: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sparse cross-frame self-attention (:mod:`pose2video.vdm.sparse`).

        x: (B, F, N, D) tokens; index: (B, F, S) frames each query frame attends to; mask:
        (B, F, N or 1, S) bool. Token (f, p) attends to the tokens (index[f, s], p) where the mask
        holds: only those S keys and values are gathered, so the work is F x S per position
        (instead of F x F), with no dense score matrix."""
        B, Fr, N, D = x.shape
        h, d = self.heads, D // self.heads
        q = self.q(x).view(B, Fr, N, h, d).permute(0, 2, 3, 1, 4)  # (B, N, h, F, d)
        k, v = self.kv(x).view(B, Fr, N, 2, h, d).permute(3, 0, 2, 4, 1, 5)
        kg = torch.stack([k[i][:, :, index[i]] for i in range(B)])  # (B, N, h, F, S, d)
        vg = torch.stack([v[i][:, :, index[i]] for i in range(B)])
        # (elementwise products: faster on CPU than batched matmuls of 1 x S matrices)
        att = (q.unsqueeze(-2) * kg).sum(-1) * d ** -0.5  # (B, N, h, F, S)
        att = att.masked_fill(~mask.permute(0, 2, 1, 3)[:, :, None], float("-inf")).softmax(-1)
        o = (att.unsqueeze(-1) * vg).sum(-2)  # (B, N, h, F, d)
        return self.proj(o.permute(0, 3, 1, 2, 4).reshape(B, Fr, N, D))


class Block(nn.Module):
    """AdaLN-zero spatial attention, temporal attention, audio cross-attention and MLP.

    x: (B, F, N, D) tokens; c: (B, F, D) per-frame conditioning; audio: (B, F, A, D) tokens.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.spatial = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.temporal = Attention(dim, heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.cross = Attention(dim, heads)
        self.norm4 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden, dim))
        self.ada = nn.Linear(dim, 12 * dim)  # shift, scale, gate for each of the 4 sub-layers
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, audio: torch.Tensor,
                sparse: dict | None = None) -> torch.Tensor:
        B, Fr, N, D = x.shape
        mods = self.ada(F.silu(c))[:, :, None].chunk(12, dim=-1)  # each (B, F, 1, D)

        def mod(norm, i, y):
            return norm(y) * (1 + mods[3 * i + 1]) + mods[3 * i]

        h = mod(self.norm1, 0, x).reshape(B * Fr, N, D)
        x = x + mods[2] * self.spatial(h).view(B, Fr, N, D)
        if sparse is None:
            h = mod(self.norm2, 1, x).transpose(1, 2).reshape(B * N, Fr, D)
            x = x + mods[5] * self.temporal(h).view(B, N, Fr, D).transpose(1, 2)
        else:
            x = x + mods[5] * self.temporal.gathered(mod(self.norm2, 1, x), sparse["index"],
                                                     sparse["mask"])
        h = mod(self.norm3, 2, x).reshape(B * Fr, N, D)
        a = audio.reshape(B * Fr, audio.shape[2], D)
        x = x + mods[8] * self.cross(h, a).view(B, Fr, N, D)
        x = x + mods[11] * self.mlp(mod(self.norm4, 3, x))
        return x


class VdmDenoiser(ModelMixin, ConfigMixin):
    """UniVDM denoiser over latent patches (module doc). Build from a config dict in code for tests."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, *, latent_channels: int = 32, patch_size: int = 2, width: int = 256,
                 depth: int = 6, heads: int = 4, mlp_ratio: float = 4.0, audio_dim: int = 34,
                 audio_context: int = 2, pose_guider_channels: int = 16, pos_grid: float = 16.0,
                 max_frames: int = 64, num_train_timesteps: int = 1000,
                 prediction_type: str = "v_prediction", sample_size: int = 256,
                 attention: str = "dense", attention_topk: int = 2):
        super().__init__()
        if width % heads or width % 4:
            raise ValueError(f"width {width} must be divisible by heads {heads} and by 4")
        from .sparse import check_mode

        check_mode(attention)  # the cross-frame attention the model was trained with
        C, p, D = latent_channels, patch_size, width
        self.gradient_checkpointing = False
        self.patch_embed = nn.Linear(C * p * p, D)
        self.pose_guider = PoseGuider(D, 8 * p, pose_guider_channels)
        self.null_pose = nn.Parameter(torch.zeros(D))
        self.context_embed = nn.Parameter(torch.zeros(D))  # added to the clean context frames' tokens
        self.time_mlp = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.context_time = nn.Parameter(torch.zeros(D))  # per-frame conditioning of context frames
        self.audio_in = nn.Linear(audio_dim, D)
        self.audio_pos = nn.Parameter(torch.randn(2 * audio_context + 1, D) * 0.02)
        self.null_audio = nn.Parameter(torch.randn(2 * audio_context + 1, D) * 0.02)
        self.blocks = nn.ModuleList(Block(D, heads, mlp_ratio) for _ in range(depth))
        self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(D, 2 * D)
        self.out = nn.Linear(D, C * p * p)
        for m in (self.ada_out, self.out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    # --- helpers ----------------------------------------------------------------------------------
    def _unpatchify(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        B, Fr, _, _ = x.shape
        p, C = self.config.patch_size, self.config.latent_channels
        x = x.reshape(B, Fr, h // p, w // p, C, p, p).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(B, Fr, C, h, w)

    def forward(self, context: torch.Tensor, noisy: torch.Tensor, timesteps: torch.Tensor,
                pose_maps: torch.Tensor, audio: torch.Tensor, *,
                drop_pose: torch.Tensor | None = None, drop_audio: torch.Tensor | None = None,
                sparse: dict | None = None, return_dict: bool = True):
        """Predict for ``noisy`` (module doc for shapes). ``drop_pose`` / ``drop_audio``: (B,) bool,
        True replaces that sample's pose maps / audio tokens by the learned null condition.
        ``sparse``: the pose-guided sparse cross-frame attention plan
        (:func:`pose2video.vdm.sparse.plan_tensors`, batch 1 or B); None: dense."""
        cfg = self.config
        B, K = context.shape[:2]
        T = noisy.shape[1]
        Fr = K + T
        h, w = noisy.shape[-2:]
        p = cfg.patch_size
        if h % p or w % p:
            raise ValueError(f"latent size {h}x{w} must be a multiple of the patch size {p}")
        if Fr > cfg.max_frames:
            raise ValueError(f"{Fr} frames exceed max_frames={cfg.max_frames}")
        x = self.patch_embed(patchify(torch.cat([context, noisy], 1), self.config.patch_size))  # (B, F, N, D)
        gh, gw = h // p, w // p
        D = cfg.width
        pos = grid_positions(gh, gw, D, cfg.pos_grid, x.device).to(x.dtype)
        tpos = sincos(torch.arange(Fr, device=x.device), D).to(x.dtype)
        x = x + pos[None, None] + tpos[None, :, None]
        x[:, :K] = x[:, :K] + self.context_embed
        # pose guider on every frame's skeleton map
        pm = pose_maps.reshape(B * Fr, *pose_maps.shape[2:]).to(x.dtype)
        g = self.pose_guider(pm)
        if g.shape[-2:] != (gh, gw):
            raise ValueError(f"pose maps {tuple(pose_maps.shape[-2:])} do not match latents "
                             f"{h}x{w} (need {8 * h}x{8 * w})")
        g = g.flatten(2).transpose(1, 2).reshape(B, Fr, gh * gw, D)
        if drop_pose is not None:
            g = torch.where(drop_pose.view(B, 1, 1, 1), self.null_pose.to(g.dtype), g)
        x = x + g
        # per-frame timestep conditioning (context frames: t = 0 + learned offset)
        t = timesteps.to(x.device).reshape(B, 1).expand(B, T).float()
        temb = self.time_mlp(sincos(t, D).to(x.dtype))
        cemb = self.time_mlp(sincos(torch.zeros(B, K, device=x.device), D).to(x.dtype)) \
            + self.context_time
        c = torch.cat([cemb, temb], 1)  # (B, F, D)
        # audio tokens (context frames and dropped samples: learned null tokens)
        a = self.audio_in(audio.to(x.dtype)) + self.audio_pos
        null = self.null_audio.to(a.dtype).expand_as(a)
        is_null = torch.zeros(B, Fr, dtype=torch.bool, device=x.device)
        is_null[:, :K] = True
        if drop_audio is not None:
            is_null = is_null | drop_audio.view(B, 1).to(x.device)
        a = torch.where(is_null[..., None, None], null, a)
        if sparse is not None:
            idx, msk = sparse["index"].to(x.device), sparse["mask"].to(x.device)
            if idx.shape[1] != Fr or msk.shape[2] not in (1, gh * gw):
                raise ValueError(f"sparse plan for {idx.shape[1]} frames / {msk.shape[2]} tokens, "
                                 f"the window has {Fr} frames / {gh * gw} tokens")
            sparse = {"index": idx.expand(B, *idx.shape[1:]),
                      "mask": msk.expand(B, *msk.shape[1:])}
        for blk in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(blk, x, c, a, sparse, use_reentrant=False)
            else:
                x = blk(x, c, a, sparse)
        shift, scale = self.ada_out(F.silu(c))[:, :, None].chunk(2, -1)
        x = self.out(self.norm_out(x) * (1 + scale) + shift)
        out = self._unpatchify(x[:, K:], h, w)
        return VdmOutput(sample=out) if return_dict else (out,)
