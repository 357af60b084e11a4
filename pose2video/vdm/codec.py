"""Latent codecs for the ``vdm`` renderer: frames (RGB in [0, 1]) <-> latents.

Two implementations of one small interface (:class:`LatentCodec`):

- :class:`Taef2Codec`, the embedded default: TAEF2, the tiny autoencoder of the FLUX.2 latent space by
  Ollin Boer Bohan (MIT, ``pose2video/weights/taef2/LICENSE``). 32 latent channels at 1/8 of H and W.
  The module is written here (diffusers' ``AutoencoderTiny`` has no place for its ``pool`` tensors)
  and loads its weights strictly.
- :class:`DiffusersVaeCodec`: diffusers' ``AutoencoderKL`` (e.g. the Stable Diffusion VAE, 4 channels
  at 1/8) from a local folder or a cached hub id, offline; latents are scaled by the VAE's
  ``scaling_factor`` (and shifted by ``shift_factor`` when it has one).

Frames are encoded one by one (there is no video autoencoder here). Shapes: ``encode`` takes
``(N, 3, H, W)`` float in [0, 1] with H, W multiples of 8 and returns ``(N, C, H/8, W/8)``;
``decode`` is the inverse and returns values clamped to [0, 1].
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from csg.errors import WeightsNotFoundError

log = logging.getLogger(__name__)

TAEF2_DIR = Path(__file__).resolve().parent.parent / "weights" / "taef2"
"""The shipped TAEF2 weights (``taef2_{encoder,decoder}.safetensors``) and their MIT licence."""


class LatentCodec(Protocol):
    """frames (N, 3, H, W) in [0, 1] <-> latents (N, latent_channels, H / factor, W / factor)."""

    latent_channels: int
    factor: int

    def encode(self, frames): ...

    def decode(self, latents): ...


# --- TAEF2 -----------------------------------------------------------------------------------------
def _taef2_modules():
    """Build the encoder/decoder ``nn.Sequential`` classes (lazy torch import)."""
    import torch
    from torch import nn

    def conv(n_in, n_out, **kw):
        return nn.Conv2d(n_in, n_out, 3, padding=1, **kw)

    class Clamp(nn.Module):
        def forward(self, x):  # soft clamp to about +-3
            return torch.tanh(x / 3) * 3

    class Block(nn.Module):
        """Three 3x3 convs with ReLUs + identity skip, then ReLU; optional GroupNorm MLP ``pool``
        added to the input first (the FLUX.2 variant's mid blocks)."""

        def __init__(self, n: int, pool: bool = False):
            super().__init__()
            self.conv = nn.Sequential(conv(n, n), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n))
            self.fuse = nn.ReLU()
            self.pool = nn.Sequential(nn.Conv2d(n, 4 * n, 1, bias=False), nn.GroupNorm(4, 4 * n),
                                      nn.ReLU(), nn.Conv2d(4 * n, n, 1, bias=False)) if pool else None

        def forward(self, x):
            if self.pool is not None:
                x = x + self.pool(x)
            return self.fuse(self.conv(x) + x)

    def encoder(c: int = 64, latent: int = 32) -> nn.Sequential:
        down = lambda: conv(c, c, stride=2, bias=False)  # noqa: E731
        return nn.Sequential(conv(3, c), Block(c),
                             down(), Block(c), Block(c), Block(c),
                             down(), Block(c), Block(c), Block(c),
                             down(), Block(c, True), Block(c, True), Block(c, True),
                             conv(c, latent))

    def decoder(c: int = 64, latent: int = 32) -> nn.Sequential:
        up = lambda: nn.Upsample(scale_factor=2)  # noqa: E731
        return nn.Sequential(Clamp(), conv(latent, c), nn.ReLU(),
                             Block(c, True), Block(c, True), Block(c, True), up(),
                             conv(c, c, bias=False), Block(c), Block(c), Block(c), up(),
                             conv(c, c, bias=False), Block(c), Block(c), Block(c), up(),
                             conv(c, c, bias=False), Block(c), conv(c, 3))

    def lite_decoder(channels=LITE_CHANNELS, latent: int = 32) -> nn.Sequential:
        """The distilled small decoder (:class:`Taef2LiteCodec`): one ``Block`` per scale at
        ``channels`` (1/8, 1/4, 1/2 of the frame), nearest 2x upsampling between them, and a last
        conv to 12 channels unshuffled to RGB at full size (no full-resolution conv)."""
        layers = [Clamp(), conv(latent, channels[0]), nn.ReLU(), Block(channels[0])]
        for a, b in zip(channels, channels[1:]):
            layers += [nn.Upsample(scale_factor=2), conv(a, b), nn.ReLU(), Block(b)]
        return nn.Sequential(*layers, conv(channels[-1], 12), nn.PixelShuffle(2))

    return encoder, decoder, lite_decoder


LITE_CHANNELS = (64, 32, 16)
"""Widths of the distilled small decoder at 1/8, 1/4 and 1/2 of the frame."""

TAEF2_LITE_DIR = Path(__file__).resolve().parent.parent / "weights" / "taef2_lite"
"""The shipped small decoder distilled from TAEF2's (``decoder.safetensors`` + ``TRAINING.md``)."""


def _load_strict(module, path: Path, what: str) -> None:
    """Load a safetensors (or torch ``.pth``) state dict into ``module`` with ``strict=True``."""
    import torch

    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: {what} weights not found; reinstall csg (they ship in "
                                   "pose2video/weights/taef2) or pass a folder holding "
                                   "taef2_encoder/decoder.safetensors")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)


class Taef2Codec:
    """TAEF2 tiny autoencoder (32 channels, factor 8), strictly loaded from ``folder``.

    ``folder`` holds ``taef2_encoder.safetensors`` / ``taef2_decoder.safetensors`` (or the original
    ``.pth`` files). ``weights=False`` builds random weights (tests only).
    """

    latent_channels = 32
    factor = 8

    def __init__(self, folder: str | Path | None = None, *, device: str = "cpu", dtype=None,
                 weights: bool = True, _decoder: bool = True):
        import torch

        enc_cls, dec_cls, _ = _taef2_modules()
        self.encoder, self.decoder = enc_cls(), dec_cls() if _decoder else torch.nn.Identity()
        if weights:
            folder = Path(folder) if folder else TAEF2_DIR  # None or "": the shipped one
            parts = (("encoder", self.encoder),) + ((("decoder", self.decoder),) if _decoder else ())
            for name, mod in parts:
                p = folder / f"taef2_{name}.safetensors"
                if not p.is_file() and (folder / f"taef2_{name}.pth").is_file():
                    p = folder / f"taef2_{name}.pth"
                _load_strict(mod, p, f"TAEF2 {name}")
        self.dtype = dtype or torch.float32
        self.device = torch.device(device)
        for m in (self.encoder, self.decoder):
            m.to(self.device, self.dtype).eval().requires_grad_(False)

    def encode(self, frames):
        """(N, 3, H, W) in [0, 1] -> (N, 32, H/8, W/8)."""
        import torch

        _check_frames(frames, self.factor)
        with torch.inference_mode():
            return self.encoder(frames.to(self.device, self.dtype)).float()

    def decode(self, latents):
        """(N, 32, h, w) -> (N, 3, 8h, 8w) in [0, 1]."""
        import torch

        with torch.inference_mode():
            return self.decoder(latents.to(self.device, self.dtype)).float().clamp(0, 1)


class Taef2LiteCodec(Taef2Codec):
    """TAEF2's encoder with a small decoder distilled from TAEF2's (``csg distill decoder``):
    the same latent space, about 30x fewer multiply-adds per decoded frame (IASA's real-time
    budget on CPU: the decoder bounds a one-step student). Encoding is TAEF2's own.

    ``folder`` holds the small decoder's ``decoder.safetensors`` (default: the shipped one,
    ``pose2video/weights/taef2_lite``); ``taef2`` the TAEF2 weights for the encoder.
    """

    def __init__(self, folder: str | Path | None = None, *, taef2: str | Path | None = None,
                 device: str = "cpu", dtype=None, weights: bool = True):
        super().__init__(taef2, device=device, dtype=dtype, weights=weights, _decoder=False)
        import json

        _, _, lite_cls = _taef2_modules()
        folder = Path(folder) if folder else TAEF2_LITE_DIR  # None or "": the shipped one
        note = folder / "decoder.json"
        channels = LITE_CHANNELS
        if weights and note.is_file():
            try:
                channels = tuple(int(c) for c in json.loads(note.read_text())["channels"])
                if len(channels) != 3 or min(channels) < 1:
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                raise WeightsNotFoundError(f"{note}: not a small decoder note (its 'channels' "
                                           "must be three positive widths)") from None
        self.decoder = lite_cls(channels)
        if weights:
            path = folder / "decoder.safetensors"
            if not path.is_file():
                raise WeightsNotFoundError(
                    f"{path}: small decoder weights not found; train them with `csg distill "
                    f"decoder --out {folder}` or use render.codec=taef2")
            _load_strict(self.decoder, path, "small decoder")
        self.decoder.to(self.device, self.dtype).eval().requires_grad_(False)


# --- diffusers AutoencoderKL -----------------------------------------------------------------------
class DiffusersVaeCodec:
    """diffusers ``AutoencoderKL`` from a local folder or a cached hub id (offline).

    Latents are ``(mean - shift) * scaling_factor`` (the posterior mean: deterministic).
    ``vae``: an already built ``AutoencoderKL`` (tests) instead of ``path_or_id``.
    """

    def __init__(self, path_or_id: str | None = None, *, subfolder: str | None = None,
                 device: str = "cpu", dtype=None, vae=None):
        import torch

        if vae is None:
            vae = load_autoencoder_kl(path_or_id, subfolder=subfolder)
        self.vae = vae.to(device, dtype or torch.float32).eval().requires_grad_(False)
        cfg = self.vae.config
        self.latent_channels = int(cfg.latent_channels)
        self.factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.scale = float(getattr(cfg, "scaling_factor", 1.0) or 1.0)
        self.shift = float(getattr(cfg, "shift_factor", 0.0) or 0.0)
        self.device, self.dtype = torch.device(device), dtype or torch.float32

    def encode(self, frames):
        import torch

        _check_frames(frames, self.factor)
        with torch.inference_mode():
            x = frames.to(self.device, self.dtype) * 2 - 1
            mean = self.vae.encode(x).latent_dist.mean
            return ((mean - self.shift) * self.scale).float()

    def decode(self, latents):
        import torch

        with torch.inference_mode():
            z = latents.to(self.device, self.dtype) / self.scale + self.shift
            return ((self.vae.decode(z).sample.float() + 1) / 2).clamp(0, 1)


def load_autoencoder_kl(path_or_id: str | None, *, subfolder: str | None = None):
    """``AutoencoderKL.from_pretrained`` from a local folder or the local hub cache only.

    Raises :class:`WeightsNotFoundError` (one line naming the path and the fix) when it is absent.
    """
    fix = ("give render.codec_path a local AutoencoderKL folder (config.json + weights) or a hub id "
           "already in the Hugging Face cache (e.g. stabilityai/sd-vae-ft-mse)")
    if not path_or_id:
        raise WeightsNotFoundError(f"vdm codec 'autoencoder_kl': no path given; {fix}")
    from diffusers import AutoencoderKL

    local = Path(path_or_id).expanduser()
    try:
        if local.exists():
            return AutoencoderKL.from_pretrained(str(local), subfolder=subfolder)
        return AutoencoderKL.from_pretrained(str(path_or_id), subfolder=subfolder,
                                             local_files_only=True)
    except (OSError, ValueError, EnvironmentError) as e:
        raise WeightsNotFoundError(f"{path_or_id}: AutoencoderKL weights not found or unreadable "
                                   f"({type(e).__name__}); {fix}") from None


def _check_frames(frames, factor: int) -> None:
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (N, 3, H, W), got {tuple(frames.shape)}")
    if frames.shape[2] % factor or frames.shape[3] % factor:
        raise ValueError(f"frame size {frames.shape[2]}x{frames.shape[3]} (H x W) must be a "
                         f"multiple of {factor}")


def build_codec(kind: str = "taef2", path: str | None = None, *, device: str = "cpu", dtype=None):
    """``"taef2"`` (``path``: a weights folder, default the shipped one), ``"taef2_lite"``
    (TAEF2's encoder, the distilled small decoder; ``path``: its folder) or ``"autoencoder_kl"``
    (``path``: local folder or cached hub id)."""
    from csg.errors import ConfigError

    if kind == "taef2":
        return Taef2Codec(path, device=device, dtype=dtype)
    if kind == "taef2_lite":
        return Taef2LiteCodec(path, device=device, dtype=dtype)
    if kind == "autoencoder_kl":
        return DiffusersVaeCodec(path, device=device, dtype=dtype)
    raise ConfigError(f"vdm: unknown codec {kind!r}; use 'taef2', 'taef2_lite' or "
                      "'autoencoder_kl'")
