"""Training loop of the stage-2 sync classifiers (PAHA §4.1.3): BCE on the sync logit over pairs from
:mod:`pose2video.vdm.classifier_data`, held-out balanced accuracy per noise level, export with
``save_pretrained``. ``csg train classifier --stage video --region face|nonface``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from csg.config import to_dict
from csg.diffusion import schedule as D
from csg.diffusion.schedule import noise_to
from csg.errors import ConfigError
from csg.training import kind_accuracy

from .classifier import VideoSyncClassifier, latent_masks
from .classifier_data import (NEG_KINDS, LatentBank, VideoClassifierTrainConfig, build_pool,
                              load_bank, make_pairs, random_region_zero, split_files)

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(model: VideoSyncClassifier, real: LatentBank, pool: LatentBank | None,
             cfg: VideoClassifierTrainConfig, alphas_cumprod: torch.Tensor, *,
             seed: int = 1234) -> dict:
    """Held-out accuracy per noise level t/T (region always masked): balanced accuracy (mean of the
    positive and negative accuracy) and the share correct per pair kind. Same pairs every call."""
    was = model.training
    model.eval()
    T = alphas_cumprod.shape[0]
    out = {}
    for frac in cfg.eval_t_fracs:
        g = torch.Generator().manual_seed(seed)
        oks, kinds = [], []
        for L in cfg.window_lengths:
            z0, audio, m, y, kind = make_pairs(real, pool, cfg, L, g, batch=cfg.eval_items)
            t = torch.full((z0.shape[0],), int(round(frac * (T - 1))), dtype=torch.long)
            pred = (model.masked_logits(noise_to(z0, t, alphas_cumprod, g), t, audio, m) > 0)
            oks += (pred.float() == y).tolist()
            kinds += kind.tolist()
        out[f"t/T={frac:.2f}"] = kind_accuracy(oks, kinds, NEG_KINDS)
    model.train(was)
    return out


def _pool(cfg: VideoClassifierTrainConfig, renderer, bank: LatentBank, split: str, size: int,
          out: Path, canvas: int) -> LatentBank | None:
    """The self-distillation pool of ``split`` (cached, keyed on the settings; region-free, so the
    face and non-face runs share it), with this region's masks."""
    if cfg.neg_mix[0] <= 0 or size <= 0:
        return None
    key = {"generator": cfg.generator, "cache": cfg.cache, "frames": cfg.pool_frames,
           "steps": cfg.pool_steps, "seed": cfg.seed, "size": size, "split": split,
           "clips": bank.names}
    path = Path(cfg.pool_cache) if cfg.pool_cache else out / "pool.pt"
    path = path.with_name(f"{path.stem}_{split}.pt")
    if path.is_file():
        d = torch.load(path, map_location="cpu", weights_only=True)
        if json.loads(d["key"]) == key:
            log.info("self-distillation pool: reusing %s", path)
            z, audio, poses = d["z"], d["audio"], d["poses"].numpy()
            masks = torch.stack([torch.from_numpy(latent_masks(p, (canvas, canvas),
                                                               z.shape[-2:])[cfg.region])
                                 for p in poses])
            return LatentBank(z, audio, masks, poses, torch.full((len(z),), -1), [])
    t0 = time.time()
    g = torch.Generator().manual_seed(cfg.seed + (10_000 if split == "train" else 20_000))
    pool = build_pool(renderer, bank, size, cfg.pool_frames, cfg.region, g, canvas)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process: ranks build it too
    torch.save({"key": json.dumps(key), "z": pool.z, "audio": pool.audio,
                "poses": torch.from_numpy(pool.poses)}, tmp)
    tmp.replace(path)
    log.info("self-distillation pool (%s): %d windows in %.0f s", split, size, time.time() - t0)
    return pool


def train(cfg: VideoClassifierTrainConfig, *, renderer=None) -> dict:
    """Train one classifier; writes ``<out>/final`` (save_pretrained), ``<out>/config.yaml`` and
    ``<out>/metrics.json``. renderer: a built ``VdmRenderer`` (None: load ``cfg.generator``).
    Returns the final held-out metrics."""
    import yaml

    torch.set_num_threads(max(1, cfg.threads))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    if renderer is None:
        from .config import VdmRenderConfig
        from .renderer import VdmRenderer

        renderer = VdmRenderer(VdmRenderConfig(weights=cfg.generator, steps=cfg.pool_steps))
    den = renderer.model
    files = sorted(Path(cfg.cache).glob("*.npz"))
    if not files:
        _build_cache(cfg, renderer)
        files = sorted(Path(cfg.cache).glob("*.npz"))
    train_files, val_files = split_files(files, cfg.val_every)
    if not val_files:
        raise ConfigError(f"{cfg.cache}: {len(files)} clips, none held out; lower val_every")
    frames = cfg.frames_per_clip
    real = load_bank(train_files, cfg.region, frames)
    val = load_bank(val_files, cfg.region, frames)
    canvas = 8 * real.z.shape[-1]
    if real.z.shape[1] < max(cfg.window_lengths) + cfg.min_shift:
        raise ConfigError(f"classifier config: {real.z.shape[1]} frames per clip < longest length "
                          f"+ min_shift")
    log.info("classifier %s: %d train clips, %d held-out clips (%s)", cfg.region, len(real.names),
             len(val.names), ", ".join(val.names))
    pool = _pool(cfg, renderer, real, "train", cfg.pool_size, out, canvas)
    val_pool = _pool(cfg, renderer, val, "val", max(8, cfg.pool_size // 4), out, canvas)
    if cfg.init:
        from .classifier import load_classifier

        model = load_classifier(cfg.init, region=cfg.region)
        if model.config.region != cfg.region:
            raise ConfigError(f"{cfg.init}: a {model.config.region} classifier, this run trains "
                              f"{cfg.region}")
    else:
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            model = VideoSyncClassifier.from_denoiser(den, cfg.region, depth=cfg.model.depth,
                                                      head_width=cfg.model.head_width)
    model.train().requires_grad_(True)
    enc = [p for n, p in model.named_parameters()
           if n.split(".")[0] in ("patch_embed", "time_mlp", "audio_in", "audio_pos", "blocks")]
    head = [p for n, p in model.named_parameters()
            if n.split(".")[0] not in ("patch_embed", "time_mlp", "audio_in", "audio_pos", "blocks")]
    opt = torch.optim.AdamW([{"params": enc, "lr": cfg.lr * cfg.encoder_lr_scale},
                             {"params": head, "lr": cfg.lr}], weight_decay=cfg.weight_decay)

    def lr_at(s):
        if s < cfg.warmup:
            return (s + 1) / cfg.warmup
        p = (s - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    ac = D.cosine_alphas_cumprod(den.config.num_train_timesteps).float()
    T = ac.shape[0]
    g = torch.Generator().manual_seed(cfg.seed)
    log.info("classifier %s: %d parameters (%d copied from the vdm), lengths %s", cfg.region,
             sum(p.numel() for p in model.parameters()), sum(p.numel() for p in enc),
             list(cfg.window_lengths))
    history, running, t0 = [], [], time.time()
    history.append({"step": 0, "seconds": 0.0, "val": evaluate(model, val, val_pool, cfg, ac)})
    log.info("step 0 held-out balanced accuracy %s",
             {k: round(v["acc"], 3) for k, v in history[-1]["val"].items()})
    for step in range(cfg.max_steps):
        L = cfg.window_lengths[int(torch.randint(0, len(cfg.window_lengths), (1,), generator=g))]
        z0, audio, m, y, _ = make_pairs(real, pool, cfg, L, g)
        t = torch.randint(0, T, (z0.shape[0],), generator=g)
        z_t = random_region_zero(noise_to(z0, t, ac, g), m, cfg.p_mask, g)
        loss = F.binary_cross_entropy_with_logits(model(z_t, t, audio, m), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        running.append(loss.item())
        done = step + 1 == cfg.max_steps or (
            cfg.max_minutes > 0 and time.time() - t0 > 60 * cfg.max_minutes)
        if (step + 1) % cfg.log_every == 0:
            log.info("step %d loss %.4f (%.0f s)", step + 1, np.mean(running), time.time() - t0)
            running = []
        if (step + 1) % cfg.eval_every == 0 or done:
            ev = evaluate(model, val, val_pool, cfg, ac)
            history.append({"step": step + 1, "seconds": round(time.time() - t0, 1), "val": ev})
            log.info("step %d held-out balanced accuracy %s", step + 1,
                     {k: round(v["acc"], 3) for k, v in ev.items()})
        if done:
            break
    model.eval().save_pretrained(out / "final", safe_serialization=True)
    result = history[-1]
    (out / "metrics.json").write_text(json.dumps(
        {"final": result, "history": history, "train_clips": real.names, "val_clips": val.names},
        indent=2) + "\n")
    return result


def _build_cache(cfg: VideoClassifierTrainConfig, renderer) -> None:
    """Encode ``cfg.data`` into ``cfg.cache`` with the renderer's codec, size and audio features."""
    from .data import build_cache

    note = renderer.note
    build_cache(list(cfg.data), cfg.cache, renderer.codec, codec_name=note.get("codec", "taef2"),
                codec_path=note.get("codec_path", ""), size=int(note.get("size", 128)),
                frames_per_clip=cfg.frames_per_clip, features=renderer.features, split=None)
