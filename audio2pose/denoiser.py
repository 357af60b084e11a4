"""The stage-1 denoiser's network without diffusers: layers, forward and a strict loader.

:class:`DenoiserCore` builds the layers and holds ``forward``; both
:class:`audio2pose.model.PoseDenoiser` (``ModelMixin`` + ``ConfigMixin``: training, saving,
``from_pretrained``) and :class:`PoseDenoiserNet` (a plain ``torch.nn.Module``: inference) are built
from it, so the same state-dict keys load into both and they compute the same numbers
(``tests/test_audio2pose_fastload.py``).

Why: importing diffusers pulls in ``torch._dynamo`` and ``transformers`` (3-5 CPU seconds of a
cold ``csg run``, docs/benchmarks.md "Start-up and overlap"), while reading the weights takes
0.05 s. :func:`load_denoiser` reads a ``PoseDenoiser.save_pretrained`` folder (``config.json`` +
``diffusion_pytorch_model.safetensors``) with ``safetensors.torch.load_file`` alone, strictly: a
missing or unexpected key, a wrong shape or an unknown config field is one
:class:`csg.errors.WeightsNotFoundError` line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from csg.diffusion.embeddings import sinusoidal as _sinusoidal
from csg.errors import WeightsNotFoundError
from csg.keypoints import NUM_KEYPOINTS

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"


@dataclass
class DenoiserOutput:
    """sample: (B, T, 133, 2) x0 or v prediction; score_logits: (B, T, 133)."""

    sample: torch.Tensor
    score_logits: torch.Tensor


@dataclass(frozen=True)
class DenoiserConfig:
    """The fields of ``PoseDenoiser``'s ``config.json`` (see :class:`audio2pose.model.PoseDenoiser`)."""

    audio_dim: int = 80
    dim: int = 192
    depth: int = 4
    heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.0
    prediction_type: str = "sample"
    num_train_timesteps: int = 1000
    num_keypoints: int = NUM_KEYPOINTS


def sinusoidal(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """The denoiser's embedding: :func:`csg.diffusion.embeddings.sinusoidal`, cos half first (as
    its checkpoints were trained). x: (N,) -> float32 (N, dim)."""
    return _sinusoidal(x, dim, cos_first=True, max_period=max_period)


class DenoiserCore:
    """Layers (:meth:`_build`), standardisation and ``forward`` of the skeleton denoiser; mixed
    into an ``nn.Module`` subclass (listed before it, so this ``forward`` is the one used)."""

    def _build(self, *, audio_dim: int, dim: int, depth: int, heads: int, ff_mult: int,
               dropout: float, num_keypoints: int, **_unused) -> None:
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
        if self.null_audio.device.type != "meta":
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


class PoseDenoiserNet(DenoiserCore, nn.Module):
    """The denoiser as a plain ``nn.Module`` for inference: same layers, state-dict keys and
    forward as :class:`audio2pose.model.PoseDenoiser`; ``config`` is a :class:`DenoiserConfig`.
    Saving goes through ``PoseDenoiser`` (:meth:`audio2pose.model.PoseDenoiser.from_net`)."""

    def __init__(self, config: DenoiserConfig = DenoiserConfig()):
        nn.Module.__init__(self)
        self.config = config
        self._build(**{f.name: getattr(config, f.name) for f in fields(config)})


def read_config(folder: str | Path) -> DenoiserConfig:
    """``folder/config.json`` -> :class:`DenoiserConfig`; diffusers' ``_``-prefixed keys ignored,
    any other unknown key is an error."""
    path = Path(folder) / CONFIG_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsNotFoundError(f"{path}: unreadable denoiser config ({e})") from None
    if not isinstance(raw, dict):
        raise WeightsNotFoundError(f"{path}: the denoiser config must be a JSON object")
    known = {f.name for f in fields(DenoiserConfig)}
    unknown = sorted(k for k in raw if not k.startswith("_") and k not in known)
    if unknown:
        raise WeightsNotFoundError(f"{path}: unknown denoiser config field(s) {', '.join(unknown)}"
                                   f"; expected {', '.join(sorted(known))}")
    return DenoiserConfig(**{k: v for k, v in raw.items() if k in known})


def load_denoiser(folder: str | Path, *, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> PoseDenoiserNet:
    """Load a ``PoseDenoiser.save_pretrained`` folder as a :class:`PoseDenoiserNet` in eval mode,
    without diffusers: every key of the safetensors file must match the network's (names and
    shapes), else one :class:`~csg.errors.WeightsNotFoundError` line naming the file."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = read_config(folder)
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: denoiser weights not found; pass the folder written "
                                   "by 'csg train audio2pose' (model/ holds config.json + "
                                   f"{WEIGHTS_NAME})")
    try:
        state = load_file(str(path), device="cpu")
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file
        raise WeightsNotFoundError(f"{path}: unreadable safetensors file ({e})") from None
    with torch.device("meta"):  # no random init (and no global RNG draws): the file sets all
        net = PoseDenoiserNet(cfg)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                parts.append(f"{what} key(s) {', '.join(keys[:4])}"
                             + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else ""))
        raise WeightsNotFoundError(f"{path}: does not match {folder / CONFIG_NAME}: "
                                   + "; ".join(parts))
    net.load_state_dict(state, strict=True, assign=True)
    return net.to(device=device, dtype=dtype).eval()
