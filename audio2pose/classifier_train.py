"""Training loop of the stage-1 sync classifiers (PAHA §4.1.3), through accelerate: BCE on the
sync logit over pairs from :mod:`audio2pose.classifier_data` (configuration, banks, pool, pairs),
held-out evaluation per noise level, export with ``save_pretrained``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
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

from .classifier import SyncClassifier
from .classifier_data import (NEG_KINDS, Bank, ClassifierModelConfig,  # noqa: F401 - API
                              ClassifierTrainConfig, build_bank, build_pool, crop,
                              load_or_build_pool, make_pairs, pose_state,
                              random_region_mask, shift_starts)

log = logging.getLogger(__name__)


# --- evaluation -----------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: SyncClassifier, real: Bank, pool: Bank | None, cfg: ClassifierTrainConfig,
             alphas_cumprod: torch.Tensor, min_shift: int, *, seed: int = 1234) -> dict:
    """Held-out accuracy per noise level t/T (region always masked), overall and per pair kind.

    The same pairs and noise at every call (``seed``); lengths cycle through ``window_lengths``.
    Returns {"t/T=0.50": {"acc": .., "pos": .., "self": .., "shift": .., "swap": ..}, ...}.
    """
    was = model.training
    model.eval()
    T = alphas_cumprod.shape[0]
    out = {}
    ecfg = dataclasses.replace(cfg, batch_size=cfg.eval_items)
    lengths = [L for L in cfg.window_lengths if L + min_shift <= real.z.shape[1]]
    for frac in cfg.eval_t_fracs:
        g = torch.Generator().manual_seed(seed)
        oks, kinds = [], []
        for L in lengths:
            x0, audio, y, kind = make_pairs(real, pool, ecfg, L, min_shift, g)
            t = torch.full((x0.shape[0],), int(round(frac * (T - 1))), dtype=torch.long)
            x_t = noise_to(x0, t, alphas_cumprod, g)
            pred = (model.masked_logits(x_t.to(model.device), t.to(model.device),
                                        audio.to(model.device)) > 0).float().cpu()
            oks += (pred == y).tolist()
            kinds += kind.tolist()
        out[f"t/T={frac:.2f}"] = kind_accuracy(oks, kinds, NEG_KINDS)
    model.train(was)
    return out


# --- training -------------------------------------------------------------------------------------
def train(cfg: ClassifierTrainConfig, *, pipe=None, cpu: bool = False) -> dict:
    """Train one classifier; writes ``<out>/final`` (save_pretrained), ``<out>/config.yaml``,
    ``<out>/metrics.json``. pipe: a loaded generator pipeline (None: load ``cfg.generator``).
    Returns the final held-out metrics."""
    import yaml
    from accelerate import Accelerator

    from .pipeline import Audio2PosePipeline
    from .train import warmup_cosine as _wc

    acc = Accelerator(cpu=cpu, mixed_precision=cfg.mixed_precision)
    out = Path(cfg.out)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    if pipe is None:
        pipe = Audio2PosePipeline.from_pretrained(cfg.generator or None, device="cpu")
    pipe.model.requires_grad_(False)
    g = torch.Generator().manual_seed(cfg.seed + acc.process_index)
    ac = D.cosine_alphas_cumprod(pipe.model.config.num_train_timesteps).float()
    min_shift = int(math.ceil(cfg.min_shift_s * pipe.fps))
    train_bank = build_bank(cfg.data, "train", cfg.data_window, pipe)
    val_bank = build_bank(cfg.data, "val", cfg.data_window, pipe)
    lengths = [L for L in cfg.window_lengths if L + min_shift <= cfg.data_window]
    if not lengths:
        raise ConfigError(f"classifier config: no window length fits data_window "
                          f"{cfg.data_window} with a {min_shift}-frame shift")
    pool, val_pool = _pools(cfg, pipe, train_bank, val_bank, out)
    model = _init_model(cfg, train_bank.audio.shape[-1], pipe.model.config.num_train_timesteps)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _wc(s, cfg.warmup, cfg.max_steps))
    model, opt, sched = acc.prepare(model, opt, sched)
    log.info("classifier %s: %d parameters, lengths %s, min shift %d frames", cfg.region,
             sum(p.numel() for p in model.parameters()), lengths, min_shift)
    t0, history, running = time.time(), [], []
    T = ac.shape[0]
    for step in range(cfg.max_steps):
        L = lengths[int(torch.randint(0, len(lengths), (1,), generator=g))]
        x0, audio, y, _ = make_pairs(train_bank, pool, cfg, L, min_shift, g)
        t = torch.randint(0, T, (x0.shape[0],), generator=g)
        x_t = random_region_mask(noise_to(x0, t, ac, g), cfg.region, cfg.p_mask, g)
        logits = model(x_t.to(acc.device), t.to(acc.device), audio.to(acc.device))
        loss = F.binary_cross_entropy_with_logits(logits, y.to(acc.device))
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        running.append(loss.detach().item())
        done = step + 1 == cfg.max_steps or (
            cfg.max_minutes > 0 and time.time() - t0 > 60 * cfg.max_minutes)
        if (step + 1) % cfg.log_every == 0:
            log.info("step %d loss %.4f (%.0f s)", step + 1, np.mean(running), time.time() - t0)
            running = []
        if acc.is_main_process and ((step + 1) % cfg.eval_every == 0 or done):
            m = evaluate(acc.unwrap_model(model), val_bank, val_pool, cfg, ac, min_shift)
            history.append({"step": step + 1, "seconds": round(time.time() - t0, 1), "val": m})
            log.info("step %d held-out balanced accuracy %s", step + 1,
                     {k: round(v["acc"], 3) for k, v in m.items()})
        if done:
            break
    acc.wait_for_everyone()
    result = history[-1] if history else {}
    if acc.is_main_process:
        acc.unwrap_model(model).save_pretrained(out / "final", safe_serialization=True)
        (out / "metrics.json").write_text(json.dumps(
            {"final": result, "history": history, "train_windows": int(train_bank.z.shape[0]),
             "val_windows": int(val_bank.z.shape[0])}, indent=2) + "\n")
    return result


def _init_model(cfg: ClassifierTrainConfig, audio_dim: int, num_train_timesteps: int):
    """A fresh seeded classifier, or ``cfg.init`` checked against the region and the data."""
    if cfg.init:
        from .classifier import load_classifier

        model = load_classifier(cfg.init).train().requires_grad_(True)
        c = model.config
        if (c.region, c.audio_dim, c.num_train_timesteps) != (cfg.region, audio_dim,
                                                               num_train_timesteps):
            raise ConfigError(f"{cfg.init}: classifier is ({c.region}, audio_dim {c.audio_dim}, "
                              f"T {c.num_train_timesteps}); this run needs ({cfg.region}, "
                              f"{audio_dim}, {num_train_timesteps})")
        return model
    with torch.random.fork_rng():  # seeded init, identical on every process; global RNG untouched
        torch.manual_seed(cfg.seed)
        return SyncClassifier(region=cfg.region, audio_dim=audio_dim,
                              num_train_timesteps=num_train_timesteps, **to_dict(cfg.model))


def _pools(cfg, pipe, train_bank: Bank, val_bank: Bank, out: Path):
    """Self-distillation pools for training and held-out evaluation (None when neg_mix[0] == 0)."""
    if cfg.neg_mix[0] <= 0 or cfg.pool_size <= 0:
        return None, None
    g = torch.Generator().manual_seed(cfg.seed + 10_000)
    base = {"generator": str(cfg.generator), "data": str(cfg.data), "window": cfg.data_window,
            "steps": cfg.pool_steps, "seed": cfg.seed,
            "model_sum": float(sum(p.double().sum() for p in pipe.model.parameters()))}
    path = Path(cfg.pool_cache) if cfg.pool_cache else out / "pool.pt"
    t0 = time.time()
    pool = load_or_build_pool(path, {**base, "size": cfg.pool_size, "split": "train"},
                              lambda: build_pool(pipe, train_bank, cfg.pool_size,
                                                 cfg.pool_steps, g))
    n_val = max(cfg.eval_items, 32)
    val_pool = load_or_build_pool(path.with_name(path.stem + "_val.pt"),
                                  {**base, "size": n_val, "split": "val"},
                                  lambda: build_pool(pipe, val_bank, n_val,
                                                     cfg.pool_steps, g))
    log.info("self-distillation pools ready (%d + %d windows, %.0f s)", pool.z.shape[0],
             val_pool.z.shape[0], time.time() - t0)
    return pool, val_pool
