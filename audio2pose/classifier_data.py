"""Data of the stage-1 sync-classifier training (PAHA §4.1.3): configuration, pose/audio banks,
the self-distillation pool, and the pure pieces that make (pose window, audio window) pairs.

Pairs, each of a random length from ``window_lengths``:

- positives: real pairs from the dataset;
- negatives, mixed by ``neg_mix``: (a) the generator's own samples on randomly paired audio and
  reference (PAHA self-distillation; a pool generated once with few DDIM steps, cached to disk),
  (b) time-shifted audio from the same clip (|shift| >= ``min_shift_s``), (c) audio of another clip.

Poses are in the generator's diffusion space (reference-relative, then standardised with the
generator's statistics) and noised to a uniform random t with its cosine schedule
(:mod:`csg.diffusion.schedule`); the other region is zeroed with probability ``p_mask``
(:mod:`csg.regions` via :func:`audio2pose.classifier.region_mask`). The loop is in
:mod:`audio2pose.classifier_train`.
"""
from __future__ import annotations

import json
import os
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from csg.errors import DataError
from csg.training import check_classifier_config, crop

from .classifier import REGIONS, region_mask

log = logging.getLogger(__name__)

NEG_KINDS = ("self", "shift", "swap")


@dataclass(frozen=True)
class ClassifierModelConfig:
    dim: int = 64  # transformer width
    layers: int = 2  # encoder layers
    heads: int = 4  # attention heads
    ff_mult: int = 2  # MLP hidden = ff_mult * dim
    dropout: float = 0.1  # dropout inside the encoder (training only)


@dataclass(frozen=True)
class ClassifierTrainConfig:
    region: str = "face"  # "face" (mouth + jaw) | "nonface" (body + feet + hands); --region
    data: str = "data/synth"  # dataset root; --data overrides
    generator: str = ""  # stage-1 checkpoint folder ("": the embedded default); --generator
    out: str = "runs/classifier"  # output folder; --out overrides
    init: str = ""  # start from this classifier folder (fine-tuning); "": fresh init
    model: ClassifierModelConfig = field(default_factory=ClassifierModelConfig)
    data_window: int = 125  # frames per dataset item (longest length + the shift room)
    window_lengths: tuple[int, ...] = (25, 50, 75, 100)  # PAHA {30,60,90,120} @30fps, scaled
    min_shift_s: float = 0.5  # shortest time shift of a shifted-audio negative, seconds
    p_mask: float = 0.8  # p of zeroing the other region (PAHA)
    neg_fraction: float = 0.5  # share of negatives in a batch
    neg_mix: tuple[float, ...] = (1.0, 1.0, 1.0)  # weights of self / shift / swap negatives
    pool_size: int = 256  # self-distillation pool: generated windows
    pool_steps: int = 10  # DDIM steps of the pool samples
    pool_cache: str = ""  # pool file ("": <out>/pool.pt); reused when it matches
    batch_size: int = 32  # per process
    lr: float = 3e-4  # peak AdamW learning rate (PAHA: 1e-4 over 100k steps)
    weight_decay: float = 0.01  # AdamW weight decay
    warmup: int = 100  # linear warm-up steps, then cosine decay to 10 %
    max_steps: int = 2000  # optimiser steps
    max_minutes: float = 0.0  # stop (and save) after this wall time; 0: no limit
    eval_every: int = 250  # steps between held-out evaluations
    eval_t_fracs: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # noise levels t/T reported
    eval_items: int = 64  # held-out windows per evaluation
    log_every: int = 50  # steps between log lines
    seed: int = 0  # init, batches, noise
    mixed_precision: str = "no"  # accelerate: "no" | "fp16" | "bf16"

    def __post_init__(self) -> None:
        check_classifier_config(self.region, self.neg_mix, REGIONS, NEG_KINDS)


# --- pure pieces ----------------------------------------------------------------------------------
def shift_starts(W: int, length: int, min_shift: int, generator: torch.Generator,
                 batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Start frames (pose, audio) (B,), (B,) with |audio - pose| >= min_shift, both windows in [0, W).

    Raises ValueError when ``length + min_shift > W`` (no room for a shift).
    """
    room = W - length
    if room < min_shift:
        raise ValueError(f"window {W} too short for length {length} plus shift {min_shift}")
    a = torch.randint(0, room + 1, (batch,), generator=generator)
    b = torch.randint(0, room + 1, (batch,), generator=generator)
    far = (a - b).abs() >= min_shift
    # resample the failures deterministically: push b to the far side that has room
    b = torch.where(far, b, torch.where(a + min_shift <= room, a + min_shift, a - min_shift))
    return a, b


def random_region_mask(x: torch.Tensor, region: str, p: float,
                       generator: torch.Generator) -> torch.Tensor:
    """Zero the other region of each item with probability p. x (B, T, 133, 2)."""
    keep = (torch.rand(x.shape[0], generator=generator) < p).to(x)[:, None, None, None]
    m = region_mask(region, dtype=x.dtype, device=x.device)
    return x * (keep * m + (1 - keep))


@dataclass
class Bank:
    """In-memory windows. z: (N, W, 133, 2) diffusion-space poses; audio: (N, W, D); clip: (N,)
    clip index; ref: (N, 133, 2) the generator's reference condition (None for pools)."""

    z: torch.Tensor
    audio: torch.Tensor
    clip: torch.Tensor
    ref: torch.Tensor | None = None


def make_pairs(real: Bank, pool: Bank | None, cfg: ClassifierTrainConfig, length: int,
               min_shift: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor,
                                                                    torch.Tensor, torch.Tensor]:
    """One batch of clean pairs: (x0 (B, L, 133, 2), audio (B, L, D), label (B,), kind (B,)).

    kind: -1 positive, else the index into :data:`NEG_KINDS`. Swap negatives take the audio of an
    item from another clip; self negatives (generator samples) need ``pool``.
    """
    B, N, W = cfg.batch_size, real.z.shape[0], real.z.shape[1]
    n_neg = int(round(B * cfg.neg_fraction))
    w = torch.tensor(cfg.neg_mix, dtype=torch.float64)
    if pool is None:
        w[0] = 0.0
    kind = torch.full((B,), -1, dtype=torch.long)
    kind[:n_neg] = torch.multinomial(w, n_neg, replacement=True, generator=generator)
    idx = torch.randint(0, N, (B,), generator=generator)
    s_pose, s_aud = shift_starts(W, length, min_shift, generator, B)
    same = torch.randint(0, W - length + 1, (B,), generator=generator)
    s_aud = torch.where(kind == 1, s_aud, same)
    s_pose = torch.where(kind == 1, s_pose, same)
    z_src, a_src = real.z[idx], real.audio[idx]
    # swap: audio of another clip (rejection-free: step through the bank until the clip differs)
    other = idx.clone()
    for b in torch.nonzero(kind == 2).flatten().tolist():
        j = int(torch.randint(0, N, (1,), generator=generator))
        while int(real.clip[j]) == int(real.clip[idx[b]]) and real.clip.unique().numel() > 1:
            j = (j + 1) % N
        other[b] = j
    a_src = torch.where((kind == 2)[:, None, None], real.audio[other], a_src)
    if pool is not None:
        pi = torch.randint(0, pool.z.shape[0], (B,), generator=generator)
        sel = (kind == 0)
        z_src = torch.where(sel[:, None, None, None], pool.z[pi], z_src)
        a_src = torch.where(sel[:, None, None], pool.audio[pi], a_src)
    x0, audio = crop(z_src, s_pose, length), crop(a_src, s_aud, length)
    return x0, audio, (kind < 0).float(), kind


# --- data -----------------------------------------------------------------------------------------
def build_bank(root: str | Path, split: str, window: int, pipe, *, device="cpu") -> Bank:
    """All :class:`csg.data.PoseWindowDataset` windows of ``split`` in the generator's space.

    pipe: an :class:`~audio2pose.pipeline.Audio2PosePipeline` (its feature config, fps and the
    model's coordinate statistics). Audio features are computed over the whole clip, as at
    inference; no audio augmentation. Raises :class:`DataError` on a frame-rate mismatch.
    """
    from csg.data.dataset import PoseWindowDataset

    ds = PoseWindowDataset(root, split, window=window, feature_cfg=pipe.features)
    for clip in ds.clips:
        if abs(clip.fps - pipe.fps) > 1e-6:
            raise DataError(f"clip {clip.record.id}: {clip.fps:g} fps but the generator runs at "
                            f"{pipe.fps:g} fps")
    zs, auds, clips, refs = [], [], [], []
    ids = {c.record.id: i for i, c in enumerate(ds.clips)}
    for i in range(len(ds)):
        item = ds[i]
        z, ref = pose_state(pipe.model, item["poses"].numpy(), item["ref"].numpy())
        zs.append(z)
        refs.append(ref)
        auds.append(item["audio"])
        clips.append(ids[item["clip_id"]])
    log.info("%s: %d %s windows of %d frames from %d clips", root, len(zs), split, window,
             len(ids))
    return Bank(torch.stack(zs).float().to(device), torch.stack(auds).float().to(device),
                torch.tensor(clips), torch.stack(refs).float().to(device))


@torch.no_grad()
def pose_state(model, poses: np.ndarray, ref: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel poses (W, 133, 3) + reference (133, 3) -> the generator's diffusion state (W, 133, 2)
    and its reference condition (133, 2), exactly as :func:`audio2pose.train.training_loss` builds
    them: x0 = standardize(rel - ref_rel); ref = ref_rel with unreliable points zeroed."""
    from .normalize import RELIABLE, normalize

    rel = torch.from_numpy(normalize(poses[..., :2], ref))
    ref_rel = torch.from_numpy(normalize(ref[:, :2], ref))
    ref_ok = torch.from_numpy(ref[:, 2] > RELIABLE)[:, None]
    return model.standardize(rel - ref_rel), torch.where(ref_ok, ref_rel, 0.0)


@torch.no_grad()
def build_pool(pipe, real: Bank, size: int, steps: int, generator: torch.Generator, *,
               batch: int = 32) -> Bank:
    """PAHA self-distillation negatives: the generator's samples on random (audio, reference) pairs.

    Each sample uses the audio window of a random bank item and the reference condition of another
    random item (``real.ref``); the pair (sample, that audio) is a negative.
    """
    from .sampling import sample

    zs, auds = [], []
    s = pipe.sampling
    for b0 in range(0, size, batch):
        n = min(batch, size - b0)
        ai = torch.randint(0, real.audio.shape[0], (n,), generator=generator)
        ri = torch.randint(0, real.ref.shape[0], (n,), generator=generator)
        audio = real.audio[ai]
        out = sample(pipe.model, audio, real.ref[ri], steps=steps, cfg_scale=s.cfg_scale,
                     generator=generator, eta=s.eta)
        zs.append(out.z0.float())
        auds.append(audio)
    return Bank(torch.cat(zs), torch.cat(auds), torch.full((size,), -1))


def load_or_build_pool(path: Path, key: dict, make) -> Bank:
    """The pool cached at ``path`` when its ``key`` matches, else ``make()`` saved there."""
    if path.is_file():
        d = torch.load(path, map_location="cpu", weights_only=True)
        if json.loads(d["key"]) == key:
            log.info("self-distillation pool: reusing %s", path)
            return Bank(d["z"], d["audio"], d["clip"])
        log.info("self-distillation pool: %s is stale, rebuilding", path)
    pool = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process: ranks build it too
    torch.save({"key": json.dumps(key), "z": pool.z, "audio": pool.audio, "clip": pool.clip}, tmp)
    tmp.replace(path)
    return pool


