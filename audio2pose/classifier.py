"""Stage-1 sync classifiers D_face / D_nonface (PAHA §4.1.3, Fig. 4) and the sampler guide.

A :class:`SyncClassifier` scores whether a noisy pose window x_t (B, T, 133, 2) (normalised
coordinates, see :mod:`audio2pose.normalize`) moves in sync with clean audio features (B, T, D)
at diffusion timestep t (B,). Tokens: one per pose frame (the 133 x 2 coordinates projected to
``dim``) and one per audio frame, each with a modality embedding and a sinusoidal frame-time
encoding shared by both modalities, plus a [CLS] token; a timestep embedding is added to every
token. A small transformer encoder and an MLP on [CLS] give the sync logit; s = sigmoid(logit).

Regions (keypoint masks (133, 1) that broadcast over (B, T, 133, 2), from :mod:`csg.regions`):

- ``face``: ``mouth_jaw`` (lips + jaw line);
- ``nonface``: body + feet + hands.

:func:`load_guide` turns two trained classifiers into the sampler hook ``guide(f, z, ctx)``
that runs PAHA Algorithm 1 (:mod:`csg.diffusion.guidance`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from csg import keypoints as K
from csg import regions as R
from csg.diffusion.embeddings import sinusoidal
from csg.diffusion.guidance import GuidanceConfig, make_guide, sync_loss_grad
from csg.errors import WeightsNotFoundError

log = logging.getLogger(__name__)

REGIONS = ("face", "nonface")
REGION_OF = {"face": R.MOUTH_JAW, "nonface": R.NONFACE}
"""Classifier region -> :mod:`csg.regions` region."""
CHECKPOINT_SUBDIRS = {"face": "classifier_face", "nonface": "classifier_nonface"}


def region_mask(region: str, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(133, 1) 0/1 mask of ``region`` ("face": mouth + jaw; "nonface": body + feet + hands)."""
    if region not in REGION_OF:
        raise ValueError(f"region {region!r} is not one of {', '.join(REGIONS)}")
    return R.keypoint_mask_tensor(REGION_OF[region], device=device, dtype=dtype)


def _embed(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The classifier's sinusoidal embedding: sin first (as its checkpoints were trained)."""
    return sinusoidal(x, dim, cos_first=False)


class SyncClassifier(ModelMixin, ConfigMixin):
    """Audio-pose sync classifier for one region; forward returns logits (B,)."""

    @register_to_config
    def __init__(self, *, region: str = "face", audio_dim: int = 32,
                 num_keypoints: int = K.NUM_KEYPOINTS, dim: int = 128, layers: int = 2,
                 heads: int = 4, ff_mult: int = 2, dropout: float = 0.1,
                 num_train_timesteps: int = 1000):
        super().__init__()
        if region not in REGIONS:
            raise ValueError(f"region {region!r} is not one of {', '.join(REGIONS)}")
        self.pose_in = nn.Linear(num_keypoints * 2, dim)
        self.audio_in = nn.Linear(audio_dim, dim)
        self.modality = nn.Parameter(torch.zeros(3, dim))  # 0 cls, 1 pose, 2 audio
        self.cls = nn.Parameter(torch.randn(dim) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim * ff_mult, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(),
                                  nn.Linear(dim, 1))
        self.register_buffer("mask", region_mask(region), persistent=False)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """x_t (B, T, 133, 2), t (B,) int timesteps, audio (B, T, D) -> logits (B,).

        The input is used as given: mask the other region (``x_t * region_mask``) before calling,
        as :meth:`masked_logits` does (training masks with probability ``p_mask`` only).
        """
        B, T = x_t.shape[:2]
        dim = self.config.dim
        pos = _embed(torch.arange(T, device=x_t.device), dim)[None]  # (1, T, dim)
        temb = self.time_mlp(_embed(t.reshape(B).to(x_t.device), dim))[:, None]  # (B, 1, dim)
        pose = self.pose_in(x_t.reshape(B, T, -1)) + pos + self.modality[1]
        aud = self.audio_in(audio.to(x_t.dtype)) + pos + self.modality[2]
        cls = (self.cls + self.modality[0]).expand(B, 1, dim)
        h = self.encoder(torch.cat([cls, pose, aud], dim=1) + temb)
        return self.head(h[:, 0]).squeeze(-1)

    def masked_logits(self, x_t: torch.Tensor, t: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Logits with the other region zeroed, as at guidance time. Shapes as :meth:`forward`."""
        return self(x_t * self.mask.to(x_t.dtype), t, audio)

    def loss_grad(self, z: torch.Tensor, t: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """∇_z −log s(z, t, a), like z (B, T, 133, 2); the parameters get no gradient."""
        return sync_loss_grad(lambda x: self.masked_logits(x, t, audio), z)


def load_classifier(path: str | Path, *, device="cpu") -> SyncClassifier:
    """A trained :class:`SyncClassifier` from a ``save_pretrained`` folder, in eval mode."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise WeightsNotFoundError(f"{p}: no sync classifier here (config.json missing); train one "
                                   "with `csg train classifier --region face|nonface --out DIR`")
    model = SyncClassifier.from_pretrained(str(p))
    return model.to(device).eval().requires_grad_(False)


def classifier_guide(cfg: GuidanceConfig, face: SyncClassifier, nonface: SyncClassifier):
    """The sampler hook ``guide(f, z, ctx)`` for ``cfg`` with these classifiers (None for "none").

    ctx: a :class:`csg.diffusion.sampling.StepContext` whose ``cond["audio"]`` holds the clean
    audio features (B, T, D) of the window (stage 1's sampler puts them there). Masks are the two
    regions' (133, 1) masks on the state's device and dtype.
    """
    def grad_fns_for(ctx):
        audio = ctx.cond["audio"]

        def bind(model):
            def grad(z):
                t = torch.full((z.shape[0],), int(ctx.t), dtype=torch.long, device=z.device)
                return model.loss_grad(z, t, audio.to(z.device))
            return grad
        return bind(nonface), bind(face)

    return make_guide(cfg, grad_fns_for, (region_mask("nonface"), region_mask("face")))


def load_guide(mode: str | GuidanceConfig, checkpoint_dir=None, *, device="cpu", **settings):
    """Guide callable for the stage-1 sampler, or None for mode "none".

    mode: a :class:`GuidanceConfig`, or its ``mode`` with the other fields as keyword ``settings``
    (lambda_nonface, lambda_face, lambda_diff, guided_fraction, dg_form; defaults as
    GuidanceConfig). checkpoint_dir: a folder holding ``classifier_face/`` and
    ``classifier_nonface/`` (e.g. the stage-1 checkpoint folder; None: the embedded default).
    Raises :class:`WeightsNotFoundError` when either is missing, ``ValueError`` for an unknown mode
    or setting.
    """
    cfg = mode if isinstance(mode, GuidanceConfig) else GuidanceConfig(mode=mode, **settings)
    if isinstance(mode, GuidanceConfig) and settings:
        raise TypeError("load_guide: pass either a GuidanceConfig or settings, not both")
    if cfg.mode == "none":
        return None
    from .pipeline import resolve_checkpoint

    root = Path(checkpoint_dir) if checkpoint_dir is not None else resolve_checkpoint(None)
    face = load_classifier(root / CHECKPOINT_SUBDIRS["face"], device=device)
    nonface = load_classifier(root / CHECKPOINT_SUBDIRS["nonface"], device=device)
    log.info("PCE guidance %s with %s (%s)", cfg.mode, root, cfg.settings())
    return classifier_guide(cfg, face, nonface)
