"""Stage-2 sync classifiers D_face / D_nonface on noisy ``vdm`` latents + audio (PAHA §4.1.3) and the
renderer's guide.

A :class:`VideoSyncClassifier` scores whether a window of noisy video latents z_t (B, T, C, h, w)
moves in sync with the window's audio tokens (B, T, 2m + 1, D_a) (PAHA's A(f), the same tokens the
``vdm`` denoiser reads) at diffusion timestep t (B,). Its encoder is the ``vdm`` denoiser's own front:
patch embedding, 2D / temporal sine-cosine positions, timestep MLP, audio projection and the first
``depth`` transformer blocks (spatial + temporal attention + per-frame audio cross-attention), copied
from a trained denoiser by :meth:`VideoSyncClassifier.from_denoiser` (PAHA initialises its classifiers
from the generator's encoder). On top: **region pooling** - each frame's patch tokens are averaged
under the region's latent-grid mask (``csg.regions.raster_masks`` of the frame's skeleton, pooled to
the patch grid) - then the pooled visual track and the per-frame audio summary go through a small
temporal convolution, a mean over frames and a linear head -> the sync logit; s = sigmoid(logit).

Regions (:mod:`csg.regions`, drawn on the latent grid from the frame's skeleton, :func:`latent_masks`):

- ``face``: ``mouth_jaw`` (lips + jaw line);
- ``nonface``: ``nonface`` (body rectangle + hands, minus the face).

:func:`video_guide` turns two classifiers into the sampler hook of one ``vdm`` window through the one
PCE implementation, :func:`csg.diffusion.guidance.make_guide` (PAHA Eq. 8-12); the masks are
(1, T, 1, h, w) and broadcast over the latent state (1, T, C, h, w).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from csg import regions as R
from csg.diffusion.guidance import GuidanceConfig, make_guide, sync_loss_grad
from csg.errors import WeightsNotFoundError

from .model import Block, grid_positions, patchify, sincos

log = logging.getLogger(__name__)

REGIONS = ("face", "nonface")
REGION_OF = {"face": R.MOUTH_JAW, "nonface": R.NONFACE}
"""Classifier region -> :mod:`csg.regions` region."""
CHECKPOINT_SUBDIRS = {"face": "classifier_face", "nonface": "classifier_nonface"}
EMBEDDED = Path(__file__).resolve().parent.parent / "weights" / "vdm_classifiers"
"""Default folder of the shipped stage-2 classifiers (``classifier_face/``, ``classifier_nonface/``)."""
TRAIN_HINT = "csg train classifier --stage video --region {region} --out RUN && copy RUN/final to {path}"
MIN_RADIUS_CELLS = 1.0  # a region circle covers at least one latent cell (10 px at 512 is < 1 cell)


def latent_masks(poses: np.ndarray, canvas_hw: tuple[int, int], grid_hw: tuple[int, int], *,
                 threshold: float = 0.3) -> dict[str, np.ndarray]:
    """{"face": (T, h, w), "nonface": (T, h, w)} float32 0/1 latent-grid masks of the classifier
    regions from skeletons ``poses`` (T, 133, 3) in pixels on ``canvas_hw``.

    Drawn by :func:`csg.regions.raster_masks` at the latent grid with the circle radius raised to at
    least :data:`MIN_RADIUS_CELLS` latent cells (PAHA's 10 px at 512 px is a third of a cell at 128 px).
    """
    H, W = canvas_hw
    h, w = grid_hw
    cell = max(H / h, W / w)
    radius = max(R.DEFAULT_RADIUS, MIN_RADIUS_CELLS * cell / max(H, W))
    out = {k: np.zeros((len(poses), h, w), np.float32) for k in REGIONS}
    for i, frame in enumerate(np.asarray(poses, np.float64)):
        m = R.raster_masks(frame, (H, W), (h, w), regions=tuple(REGION_OF.values()),
                           threshold=threshold, radius=radius)
        for k, r in REGION_OF.items():
            out[k][i] = m[r]
    return out


class VideoSyncClassifier(ModelMixin, ConfigMixin):
    """Latent-video / audio sync classifier for one region; forward returns logits (B,)."""

    @register_to_config
    def __init__(self, *, region: str = "face", latent_channels: int = 32, patch_size: int = 2,
                 width: int = 128, depth: int = 2, heads: int = 4, mlp_ratio: float = 4.0,
                 audio_dim: int = 34, audio_context: int = 2, pos_grid: float = 16.0,
                 head_width: int = 64, num_train_timesteps: int = 1000):
        super().__init__()
        if region not in REGIONS:
            raise ValueError(f"region {region!r} is not one of {', '.join(REGIONS)}")
        C, p, D = latent_channels, patch_size, width
        # the denoiser's front (same names, so from_denoiser copies state dicts one to one)
        self.patch_embed = nn.Linear(C * p * p, D)
        self.time_mlp = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.audio_in = nn.Linear(audio_dim, D)
        self.audio_pos = nn.Parameter(torch.randn(2 * audio_context + 1, D) * 0.02)
        self.blocks = nn.ModuleList(Block(D, heads, mlp_ratio) for _ in range(depth))
        # the classifier's own head
        self.norm = nn.LayerNorm(D)
        self.visual = nn.Linear(D, head_width)
        self.audio_sum = nn.Linear(D, head_width)
        self.temporal = nn.Sequential(
            nn.Conv1d(2 * head_width, head_width, 3, padding=1), nn.GELU(),
            nn.Conv1d(head_width, head_width, 3, padding=1), nn.GELU())
        self.head = nn.Linear(head_width, 1)

    @classmethod
    def from_denoiser(cls, denoiser, region: str, *, depth: int = 2, head_width: int = 64,
                      ) -> "VideoSyncClassifier":
        """A classifier whose encoder (patch embedding, timestep MLP, audio projection and the first
        ``depth`` blocks) is copied from a :class:`pose2video.vdm.model.VdmDenoiser`."""
        c = denoiser.config
        if depth > c.depth:
            raise ValueError(f"classifier depth {depth} > the denoiser's {c.depth} blocks")
        model = cls(region=region, latent_channels=c.latent_channels, patch_size=c.patch_size,
                    width=c.width, depth=depth, heads=c.heads, mlp_ratio=c.mlp_ratio,
                    audio_dim=c.audio_dim, audio_context=c.audio_context, pos_grid=c.pos_grid,
                    head_width=head_width, num_train_timesteps=c.num_train_timesteps)
        for name in ("patch_embed", "time_mlp", "audio_in"):
            getattr(model, name).load_state_dict(getattr(denoiser, name).state_dict())
        with torch.no_grad():
            model.audio_pos.copy_(denoiser.audio_pos.float())
        for i in range(depth):
            model.blocks[i].load_state_dict(denoiser.blocks[i].state_dict())
        return model.float()

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, audio: torch.Tensor,
                region_mask: torch.Tensor) -> torch.Tensor:
        """z_t (B, T, C, h, w) noisy latents, t (B,) int timesteps, audio (B, T, 2m + 1, D_a) tokens,
        region_mask (B, T, h, w) latent-grid weights of this classifier's region -> logits (B,).

        The latent is used as given: :meth:`masked_logits` zeroes everything outside the region
        first (training does so with probability ``p_mask``); the mask always selects the pooled
        tokens."""
        cfg = self.config
        B, T, _, h, w = z_t.shape
        p, D = cfg.patch_size, cfg.width
        gh, gw = h // p, w // p
        x = self.patch_embed(patchify(z_t, self.config.patch_size))  # (B, T, N, D)
        x = x + grid_positions(gh, gw, D, cfg.pos_grid, x.device).to(x.dtype)[None, None]
        x = x + sincos(torch.arange(T, device=x.device), D).to(x.dtype)[None, :, None]
        c = self.time_mlp(sincos(t.reshape(B, 1).expand(B, T).float().to(x.device), D)
                          .to(x.dtype))  # (B, T, D)
        a = self.audio_in(audio.to(x.dtype)) + self.audio_pos  # (B, T, A, D)
        for blk in self.blocks:
            x = blk(x, c, a)
        wgt = F.avg_pool2d(region_mask.reshape(B * T, 1, h, w).to(x.dtype), p).reshape(B, T, -1, 1)
        pooled = (self.norm(x) * wgt).sum(2) / (wgt.sum(2) + 1e-6)  # (B, T, D)
        feats = torch.cat([self.visual(pooled), self.audio_sum(a.mean(2))], -1)  # (B, T, 2 Hd)
        hid = self.temporal(feats.transpose(1, 2)).mean(-1)  # (B, Hd)
        return self.head(hid).squeeze(-1)

    def masked_logits(self, z_t: torch.Tensor, t: torch.Tensor, audio: torch.Tensor,
                      region_mask: torch.Tensor) -> torch.Tensor:
        """Logits with everything outside the region zeroed, as at guidance time."""
        return self(z_t * region_mask[:, :, None].to(z_t.dtype), t, audio, region_mask)

    def loss_grad(self, z: torch.Tensor, t: torch.Tensor, audio: torch.Tensor,
                  region_mask: torch.Tensor) -> torch.Tensor:
        """∇_z −log s(z, t, a), like z (B, T, C, h, w); the parameters get no gradient."""
        return sync_loss_grad(lambda x: self.masked_logits(x, t, audio, region_mask), z)


def classifier_folder(root: str | Path | None, region: str) -> Path:
    """``<root>/classifier_<region>`` (root None or "": the embedded :data:`EMBEDDED`)."""
    return Path(root or EMBEDDED) / CHECKPOINT_SUBDIRS[region]


def load_classifier(path: str | Path, *, device="cpu", region: str | None = None
                    ) -> VideoSyncClassifier:
    """A trained :class:`VideoSyncClassifier` from a ``save_pretrained`` folder, in eval mode.

    Raises :class:`WeightsNotFoundError` (one line: the path and the training command)."""
    p = Path(path)
    if not (p / "config.json").is_file() or not any(p.glob("*.safetensors")):
        reg = region or ("nonface" if p.name.endswith("nonface") else "face")
        raise WeightsNotFoundError(
            f"{p}: no stage-2 sync classifier here (config.json + *.safetensors); train it with "
            f"`{TRAIN_HINT.format(region=reg, path=p)}`")
    model = VideoSyncClassifier.from_pretrained(str(p), torch_dtype=torch.float32)
    return model.to(device).eval().requires_grad_(False)


def load_classifiers(root: str | Path | None = None, *, device="cpu"
                     ) -> tuple[VideoSyncClassifier, VideoSyncClassifier]:
    """(face, nonface) from ``<root>/classifier_face`` and ``<root>/classifier_nonface``."""
    return tuple(load_classifier(classifier_folder(root, r), device=device, region=r)
                 for r in REGIONS)  # type: ignore[return-value]


def video_guide(cfg: GuidanceConfig, face: VideoSyncClassifier | None,
                nonface: VideoSyncClassifier | None, audio: torch.Tensor,
                masks: dict[str, np.ndarray] | dict[str, torch.Tensor]):
    """The sampler hook ``guide(f, z, ctx)`` of one ``vdm`` window (None for mode "none").

    audio: (1, T, 2m + 1, D_a) tokens of the window's T sampled frames; masks: {"face", "nonface"}
    (T, h, w) latent-grid masks (:func:`latent_masks`). The state is z (B, T, C, h, w). A classifier
    given as None contributes no gradient (the "without D_face / D_nonface" ablations).
    PAHA Eq. 8-12 run in :func:`csg.diffusion.guidance.make_guide` (the one implementation).
    """
    m = {k: torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v).float()
         for k, v in masks.items()}

    def grad_fns_for(ctx):
        def bind(model, region):
            def grad(z):
                if model is None:
                    return torch.zeros_like(z)
                B = z.shape[0]
                t = torch.full((B,), int(ctx.t), dtype=torch.long, device=z.device)
                rm = m[region].to(z.device, z.dtype)[None].expand(B, -1, -1, -1)
                a = audio.to(z.device, z.dtype).expand(B, -1, -1, -1)
                return model.loss_grad(z, t, a, rm)
            return grad
        return bind(nonface, "nonface"), bind(face, "face")

    # (T, h, w) -> (1, T, 1, h, w): broadcasts over the latent state
    return make_guide(cfg, grad_fns_for, (m["nonface"][None, :, None], m["face"][None, :, None]))


# --- the vdm renderer's hook (render.guidance) -----------------------------------------------------
def renderer_guidance(config, *, device="cpu"):
    """From a :class:`pose2video.vdm.config.VdmRenderConfig`: None for ``guidance: none``, else
    (GuidanceConfig, face, nonface) with both classifiers loaded from ``guidance_weights`` ("" : the
    embedded :data:`EMBEDDED`). A missing classifier raises :class:`WeightsNotFoundError` (one line:
    the path and the training command), before anything is rendered."""
    from csg.errors import ConfigError

    try:
        cfg = GuidanceConfig(mode=config.guidance, lambda_nonface=config.lambda_nonface,
                             lambda_face=config.lambda_face, lambda_diff=config.lambda_diff,
                             guided_fraction=config.guided_fraction, dg_form=config.dg_form)
    except ValueError as e:
        raise ConfigError(f"vdm renderer options: {e}") from None
    if cfg.mode == "none":
        return None
    face, nonface = load_classifiers(config.guidance_weights or None, device=device)
    log.info("vdm: PCE guidance %s with %s (%s)", cfg.mode, config.guidance_weights or EMBEDDED,
             cfg.settings())
    return cfg, face, nonface


def window_guide(guidance, poses: np.ndarray, tokens, work_hw: tuple[int, int],
                 has_audio: bool = True):
    """The guide of one ``vdm`` window (None when guidance is off or there is no audio).

    guidance: :func:`renderer_guidance`'s result; poses (n, 133, 3) the window's sampled frames on
    the working canvas; tokens (n, 2m + 1, D_a) their audio tokens (torch or numpy)."""
    if guidance is None or not has_audio:
        return None
    cfg, face, nonface = guidance
    grid = (work_hw[0] // 8, work_hw[1] // 8)
    masks = latent_masks(poses, work_hw, grid)
    tok = torch.as_tensor(np.asarray(tokens) if not torch.is_tensor(tokens) else tokens).float()
    return video_guide(cfg, face, nonface, tok[None], masks)
