"""Data of the stage-2 sync-classifier training (PAHA §4.1.3): configuration, latent banks from the
``vdm`` latent cache, the self-distillation pool, and the pure pieces that make (latent window, audio
window, region mask) pairs.

Pairs, each of a random length from ``window_lengths`` (frames; the ``vdm`` samples 4-6 new frames
per window):

- positives: a real clip's latents with its own audio tokens;
- negatives, mixed by ``neg_mix``: (a) the ``vdm``'s own samples drawn for one clip's skeletons with
  another clip's audio (PAHA self-distillation; a pool generated once with ``pool_steps`` DDIM steps,
  cached), (b) the same clip's audio shifted by >= ``min_shift`` frames, (c) another clip's audio.

Latents are noised to a uniform random t with the ``vdm``'s cosine schedule; everything outside the
region is zeroed with probability ``p_mask`` (PAHA p = 0.8). Region masks come from each frame's
skeleton on the latent grid (:func:`pose2video.vdm.classifier.latent_masks`). Clips are split into
train / held-out by clip (every ``val_every``-th clip in name order is held out), never by window.
Only permissive data belongs in ``data`` (the project's synthetic corpus and
``../shared/data/video/face``); the validation clips are measure-only.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from csg.errors import ConfigError, DataError
from csg.training import check_classifier_config, crop

from .classifier import REGIONS, latent_masks

log = logging.getLogger(__name__)

NEG_KINDS = ("self", "shift", "swap")


@dataclass(frozen=True)
class VideoClassifierModelConfig:
    depth: int = 2  # denoiser blocks copied into the encoder (the embedded vdm has 4)
    head_width: int = 64  # width of the pooled temporal head


@dataclass(frozen=True)
class VideoClassifierTrainConfig:
    region: str = "face"  # "face" (mouth + jaw) | "nonface" (body + hands); --region
    cache: str = "runs/vcls/cache48"  # vdm latent cache folder (csg train renderer's latents/)
    data: tuple = ("data/vdm/synth128", "data/vdm/face128")  # prepared roots, encoded into cache
    frames_per_clip: int = 48  # frames encoded per clip when the cache is built
    generator: str = ""  # vdm folder ("": the embedded checkpoint); encoder init + pool
    out: str = "runs/classifier_video"  # output folder; --out overrides
    model: VideoClassifierModelConfig = field(default_factory=VideoClassifierModelConfig)
    init: str = ""  # continue from this classifier folder ("": the vdm's encoder + a fresh head)
    window_lengths: tuple = (4, 6, 8)  # frames per pair (vdm windows: 6 frames, 4 new)
    min_shift: int = 8  # shortest audio shift of a shifted negative, frames (0.32 s at 25 fps)
    p_mask: float = 0.8  # p of zeroing everything outside the region (PAHA)
    neg_fraction: float = 0.5  # share of negatives in a batch
    neg_mix: tuple = (1.0, 1.0, 1.0)  # weights of self / shift / swap negatives
    pool_size: int = 32  # self-distillation pool: vdm-sampled windows (0: none)
    pool_frames: int = 8  # frames per pool window (>= the longest length)
    pool_steps: int = 6  # DDIM steps of the pool samples
    pool_cache: str = ""  # pool file ("": <out>/pool.pt); reused when it matches
    val_every: int = 6  # every n-th clip (name order) is held out
    batch_size: int = 16  # pairs per step
    lr: float = 2e-4  # AdamW peak learning rate
    encoder_lr_scale: float = 0.3  # the copied encoder learns at lr x this
    weight_decay: float = 0.01
    warmup: int = 50  # linear warm-up steps, then cosine decay
    max_steps: int = 1500  # optimiser steps
    max_minutes: float = 12.0  # stop (and save) after this wall time; 0: no limit
    eval_every: int = 250  # steps between held-out evaluations
    eval_t_fracs: tuple = (0.0, 0.25, 0.5, 0.75, 1.0)  # noise levels t/T reported
    eval_items: int = 48  # held-out pairs per length and noise level
    log_every: int = 50
    seed: int = 0
    threads: int = 1  # torch threads (shared CPU)

    def __post_init__(self) -> None:
        check_classifier_config(self.region, self.neg_mix, REGIONS, NEG_KINDS)
        if self.pool_size and self.pool_frames < max(self.window_lengths):
            raise ConfigError("classifier config: pool_frames must be >= the longest window length")


@dataclass
class LatentBank:
    """Equal-length clips in memory. z (N, W, C, h, w) latents; audio (N, W, A, D) tokens;
    masks (N, W, h, w) of the region; poses (N, W, 133, 3) on the cache canvas; clip (N,) ids."""

    z: torch.Tensor
    audio: torch.Tensor
    masks: torch.Tensor
    poses: np.ndarray
    clip: torch.Tensor
    names: list


def load_bank(files, region: str, frames: int) -> LatentBank:
    """The first ``frames`` frames of every cache file holding at least that many."""
    zs, auds, ms, ps, names = [], [], [], [], []
    for f in files:
        with np.load(f, allow_pickle=False) as d:
            if len(d["latents"]) < frames:
                log.warning("%s: %d frames < %d; skipped", f, len(d["latents"]), frames)
                continue
            lat = d["latents"][:frames].astype(np.float32)
            poses = d["poses"][:frames].astype(np.float32)
            size = int(d["maps"].shape[-1]) if "maps" in d.files else 8 * lat.shape[-1]
            zs.append(lat)
            auds.append(d["audio"][:frames].astype(np.float32))
            ps.append(poses)
            ms.append(latent_masks(poses, (size, size), lat.shape[-2:])[region])
            names.append(Path(f).stem)
    if not zs:
        raise DataError(f"no cached clip has {frames} frames; rebuild the cache with more "
                        "frames_per_clip")
    return LatentBank(torch.from_numpy(np.stack(zs)), torch.from_numpy(np.stack(auds)),
                      torch.from_numpy(np.stack(ms)), np.stack(ps),
                      torch.arange(len(zs)), names)


def split_files(files, val_every: int) -> tuple[list, list]:
    """(train, held-out): every ``val_every``-th file in name order is held out."""
    files = sorted(files, key=lambda p: Path(p).name)
    val = [f for i, f in enumerate(files) if i % val_every == val_every // 2]
    return [f for f in files if f not in val], val


# --- pure pieces ----------------------------------------------------------------------------------
def shift_starts(W: int, length: int, min_shift: int, g: torch.Generator, batch: int):
    """(pose starts, audio starts) (B,), (B,) with |a - b| >= min_shift, windows inside [0, W).

    A gap d is drawn uniformly in [min_shift, W - length], then a start in [0, W - length - d]
    and a random order, so every pair is valid (no rejection)."""
    room = W - length
    if room < min_shift:
        raise ValueError(f"clip of {W} frames too short for length {length} + shift {min_shift}")
    d = torch.randint(min_shift, room + 1, (batch,), generator=g)
    lo = (torch.rand(batch, generator=g) * (room - d + 1)).floor().long()
    swap = torch.rand(batch, generator=g) < 0.5
    return torch.where(swap, lo + d, lo), torch.where(swap, lo, lo + d)


def random_region_zero(z: torch.Tensor, masks: torch.Tensor, p: float,
                       g: torch.Generator) -> torch.Tensor:
    """Zero everything outside the region of each item with probability p.
    z (B, T, C, h, w), masks (B, T, h, w)."""
    keep = (torch.rand(z.shape[0], generator=g) < p).to(z)[:, None, None, None, None]
    m = masks[:, :, None].to(z)
    return z * (keep * m + (1 - keep))


def make_pairs(real: LatentBank, pool: LatentBank | None, cfg: VideoClassifierTrainConfig,
               length: int, g: torch.Generator, batch: int | None = None):
    """One batch of clean pairs: (z0 (B, L, C, h, w), audio (B, L, A, D), masks (B, L, h, w),
    label (B,), kind (B,)); kind -1 positive, else the index into :data:`NEG_KINDS`."""
    B = batch or cfg.batch_size
    N, W = real.z.shape[:2]
    n_neg = int(round(B * cfg.neg_fraction))
    w = torch.tensor(cfg.neg_mix, dtype=torch.float64)
    if pool is None:
        w[0] = 0.0
    if N < 2:
        w[2] = 0.0
    kind = torch.full((B,), -1, dtype=torch.long)
    kind[:n_neg] = torch.multinomial(w, n_neg, replacement=True, generator=g)
    idx = torch.randint(0, N, (B,), generator=g)
    s_pose, s_aud = shift_starts(W, length, cfg.min_shift, g, B)
    same = torch.randint(0, W - length + 1, (B,), generator=g)
    s_aud = torch.where(kind == 1, s_aud, same)
    s_pose = torch.where(kind == 1, s_pose, same)
    other = (idx + torch.randint(1, max(N, 2), (B,), generator=g)) % N  # always another clip
    a_src = torch.where((kind == 2)[:, None, None, None], real.audio[other], real.audio[idx])
    z = crop(real.z[idx], s_pose, length)
    m = crop(real.masks[idx], s_pose, length)
    a = crop(a_src, s_aud, length)
    if pool is not None and bool((kind == 0).any()):
        sel = torch.nonzero(kind == 0).flatten()
        pi = torch.randint(0, pool.z.shape[0], (len(sel),), generator=g)
        ps = torch.randint(0, pool.z.shape[1] - length + 1, (len(sel),), generator=g)
        z[sel] = crop(pool.z[pi], ps, length)
        m[sel] = crop(pool.masks[pi], ps, length)
        a[sel] = crop(pool.audio[pi], ps, length)
    return z, a, m, (kind < 0).float(), kind


# --- the self-distillation pool -------------------------------------------------------------------
@torch.no_grad()
def build_pool(renderer, real: LatentBank, size: int, frames: int, region: str,
               g: torch.Generator, canvas: int) -> LatentBank:
    """PAHA self-distillation negatives: the ``vdm``'s samples for one clip's skeletons (and first
    frame as the reference) with another clip's audio, paired with that audio.

    renderer: a :class:`pose2video.vdm.renderer.VdmRenderer` (its sampler and settings)."""
    from .data import pose_maps

    N, W = real.z.shape[:2]
    zs, auds, ms, ps = [], [], [], []
    for _ in range(size):
        c = int(torch.randint(0, N, (1,), generator=g))
        o = (c + int(torch.randint(1, max(N, 2), (1,), generator=g))) % N
        s = int(torch.randint(0, W - frames + 1, (1,), generator=g))
        poses = real.poses[c, s:s + frames]
        ref = real.z[c, 0][None, None]  # (1, 1, C, h, w): the clip's frame 0 as the photo
        maps = torch.cat([pose_maps(real.poses[c, :1], (canvas, canvas)),
                          pose_maps(poses, (canvas, canvas))])[None]
        aud = real.audio[o, s:s + frames]
        tok = torch.cat([torch.zeros_like(aud[:1]), aud])[None]
        z = renderer._sample(ref, maps, tok, frames, True, g)[0].float()
        zs.append(z)
        auds.append(aud)
        ps.append(poses)
        ms.append(torch.from_numpy(latent_masks(poses, (canvas, canvas), z.shape[-2:])[region]))
    return LatentBank(torch.stack(zs), torch.stack(auds), torch.stack(ms), np.stack(ps),
                      torch.full((size,), -1), [])
