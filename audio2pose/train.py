"""Train the stage-1 skeleton denoiser through accelerate (one CPU, many GPUs, many nodes).

    csg train audio2pose --config configs/audio2pose/base.yaml [--data DIR] [--out DIR]
                         [--set key=value ...] [--resume]
    accelerate launch -m audio2pose.train --config ...   # the same loop on many processes

Run folder ``OUT``: ``config.yaml`` (resolved), ``train.log`` / ``metrics.jsonl``,
``checkpoints/step_N`` (accelerate ``save_state`` + ``trainer.json`` with the step), ``final/``
(an :class:`~audio2pose.pipeline.Audio2PosePipeline` folder).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from csg.config import to_dict
from csg.training import StepLog, end_step, latest_checkpoint, optimizer_step
from csg.errors import ConfigError, DataError
from csg.features import feature_dim

from csg.diffusion import schedule as D
from .config import TrainConfig
from .normalize import RELIABLE, normalize
from .par import pose_loss

logger = logging.getLogger(__name__)


# --- data --------------------------------------------------------------------------------------
def collate(items: list[dict]) -> dict[str, torch.Tensor]:
    """Dataset items -> batch: audio (B,W,D), rel (B,W,133,2) reference-relative poses, scores
    (B,W,133), ref_rel (B,133,2), ref_ok (B,133) bool."""
    rel, ref_rel = [], []
    for it in items:
        try:
            rel.append(normalize(it["poses"][..., :2], it["ref"]))
            ref_rel.append(normalize(it["ref"][:, :2], it["ref"]))
        except ValueError as e:
            raise DataError(f"clip {it.get('clip_id')}: {e}") from None
    f = lambda k: torch.from_numpy(np.stack([np.asarray(i[k], np.float32) for i in items]))  # noqa
    return {"audio": f("audio"), "rel": torch.from_numpy(np.stack(rel)),
            "scores": f("poses")[..., 2], "ref_rel": torch.from_numpy(np.stack(ref_rel)),
            "ref_ok": f("ref")[..., 2] > RELIABLE,
            "loss_mask": f("loss_mask") if all("loss_mask" in i for i in items)
            else torch.ones(len(items), len(rel[0][0]))}


def coord_stats(clips, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (133, 2) per coordinate and std per region (body / face / hands, broadcast to (133, 2))
    of the motion ``rel - ref_rel`` over ``clips`` (objects with ``poses`` (T, 133, 3) and ``ref``
    (133, 3)), counting keypoints with score >= tau.

    A per-region std (not per coordinate) keeps near-static joints from being blown up to unit
    variance, so errors stay comparable within a region."""
    from csg.regions import PART_IDS

    xs, ws = [], []
    for c in clips:
        rel = normalize(c.poses[..., :2], c.ref) - normalize(c.ref[:, :2], c.ref)
        xs.append(torch.from_numpy(rel).double())
        ws.append(torch.from_numpy(np.asarray(c.poses[..., 2]) >= tau).double())
    x = torch.cat(xs)
    w = torch.cat(ws)[..., None].expand_as(x)
    w = torch.where(w.sum(0, keepdim=True) > 0, w, torch.ones_like(w))
    mean = (w * x).sum(0) / w.sum(0)
    var = w * (x - mean) ** 2
    std = torch.ones_like(mean)
    for rid in np.unique(PART_IDS):
        sel = torch.from_numpy(PART_IDS == rid)
        std[sel] = (var[:, sel].sum() / w[:, sel].sum()).sqrt()
    return mean.float(), std.float()


class AugmentedFeatures(torch.utils.data.Dataset):
    """Wraps a (non-augmenting) ``PoseWindowDataset``: each clip gets ``variants`` augmented copies of
    its audio (:func:`csg.data.augment.augment_audio`: noise, reverb, gain), whose features are
    computed once; each item then uses the clean or one augmented copy, drawn from ``(seed, index,
    draw)``. Augmenting per item would recompute a whole clip's features every time (~0.15 s)."""

    def __init__(self, ds, variants: int, seed: int):
        from csg.data.augment import augment_audio

        self.ds, self.seed, self.draws = ds, int(seed), {}
        self.feats = [[ds.features(c)] + [
            ds.features(c, augment_audio(clip.audio, 16000, np.random.default_rng([seed, c, v])))
            for v in range(variants)] for c, clip in enumerate(ds.clips)]

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> dict:
        item = self.ds[index]
        c, s = self.ds.windows[index]
        k = self.draws.get(index, 0)
        self.draws[index] = k + 1
        v = int(np.random.default_rng([self.seed, index, k]).integers(len(self.feats[c])))
        item["audio"] = torch.from_numpy(self.feats[c][v][s:s + self.ds.window].copy())
        return item


# --- one step ----------------------------------------------------------------------------------
def training_loss(model, batch, cfg: TrainConfig, ac: torch.Tensor, gen: torch.Generator):
    """Diffusion loss of one batch: random t, known prefixes, condition drop, PAR-weighted MSE."""
    m = model.module if hasattr(model, "module") else model
    if cfg.velocity_weight > 0 and cfg.model.prediction_type != "sample":
        raise ConfigError("velocity_weight needs model.prediction_type: sample (an x0 prediction)")
    x0 = m.standardize(batch["rel"] - batch["ref_rel"][:, None])
    ref = torch.where(batch["ref_ok"][..., None], batch["ref_rel"], 0.0)
    B, W = x0.shape[:2]
    dc = cfg.diffusion
    rand = lambda *s: torch.rand(s, generator=gen).to(x0.device)  # noqa: E731
    t = torch.randint(0, dc.num_train_timesteps, (B,), generator=gen).to(x0.device)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device)
    k = torch.randint(1, dc.max_prefix + 1, (B,), generator=gen).to(x0.device)
    k = torch.where(rand(B) < dc.prefix_prob, k, torch.zeros_like(k))
    known_mask = torch.arange(W, device=x0.device)[None] < k[:, None]
    z_t = D.q_sample(x0, t, noise, ac)
    out = model(z_t, t, batch["audio"], ref, known=x0, known_mask=known_mask,
                drop_audio=rand(B) < dc.cond_drop)
    target = D.training_target(x0, noise, t, ac, cfg.model.prediction_type)
    return pose_loss(out.sample, target, out.score_logits, batch["scores"], cfg.par,
                     score_weight=cfg.score_weight, frame_mask=~known_mask,
                     keypoint_mask=batch.get("loss_mask"), velocity_weight=cfg.velocity_weight)


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 10 % of
    the peak at ``total`` (used by every trainer here)."""
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p))


def lr_lambda(cfg: TrainConfig):
    """``LambdaLR`` factor for ``cfg``: :func:`warmup_cosine` (warm-up, cosine decay to 10 %)."""
    return lambda step: warmup_cosine(step, cfg.warmup, cfg.max_steps)


# --- the loop ----------------------------------------------------------------------------------
def build_model(cfg: TrainConfig):
    from .model import PoseDenoiser

    mc = cfg.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # model init only; the global RNG is restored afterwards
        return PoseDenoiser(audio_dim=feature_dim(cfg.features), dim=mc.dim, depth=mc.depth,
                            heads=mc.heads, ff_mult=mc.ff_mult, dropout=mc.dropout,
                            prediction_type=mc.prediction_type,
                            num_train_timesteps=cfg.diffusion.num_train_timesteps)


def export_sampling(cfg: TrainConfig, clips, echo=logger.info):
    """``cfg.sampling`` with ``hand_range`` and ``hips`` measured on the training references
    (:func:`audio2pose.normalize.reference_frame`) where the config leaves them unset and
    ``record_reference_frame`` is on; unchanged when the references show no hand or no hips."""
    from dataclasses import replace

    from .normalize import reference_frame

    s = cfg.sampling
    if not cfg.record_reference_frame or (s.hand_range is not None and s.hips is not None):
        return s
    try:
        frame = reference_frame([c.ref for c in clips])
    except ValueError as e:
        echo(f"sampling.hand_range / hips not recorded: {e}")
        return s
    echo(f"reference frame of the training data: hand_range {frame.get('hand_range')}, "
         f"hips {frame.get('hips')}")
    return replace(s, hand_range=s.hand_range if s.hand_range is not None else
                   frame.get("hand_range"), hips=s.hips if s.hips is not None else frame.get("hips"))


def train(cfg: TrainConfig, *, resume: bool = False, echo=logger.info) -> Path:
    """Run training; returns the exported ``OUT/final`` pipeline folder."""
    import yaml
    from accelerate import Accelerator

    from csg.data import PoseWindowDataset

    from .pipeline import Audio2PosePipeline

    acc = Accelerator(gradient_accumulation_steps=cfg.grad_accum,
                      mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    out = Path(cfg.out)
    ckdir = out / "checkpoints"
    # the data is checked before the run folder is written: a bad --data leaves nothing behind
    ds = PoseWindowDataset(cfg.data, "train", window=cfg.window, feature_cfg=cfg.features,
                           augment=False, seed=cfg.seed, ref_start=cfg.ref_start)
    clips = ds.clips
    if len(ds) < cfg.batch_size:
        raise DataError(f"{cfg.data}: {len(ds)} training windows of {cfg.window} frames, fewer "
                        f"than one batch of {cfg.batch_size}; lower batch_size or window")
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    if cfg.augment_variants > 0:
        ds = AugmentedFeatures(ds, cfg.augment_variants, cfg.seed + acc.process_index)
    if cfg.init_from:  # fine-tune: the checkpoint's weights and motion statistics
        from .model import PoseDenoiser
        from .pipeline import MODEL_DIR, resolve_checkpoint

        model = PoseDenoiser.from_pretrained(resolve_checkpoint(cfg.init_from) / MODEL_DIR,
                                             torch_dtype=torch.float32)
        echo(f"initialised from {cfg.init_from}")
    else:
        model = build_model(cfg)
        model.set_coord_stats(*coord_stats(clips[:cfg.stats_items], cfg.par.tau))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    loader = torch.utils.data.DataLoader(
        ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True, collate_fn=collate,
        num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(cfg.seed))
    model, opt, loader, sched = acc.prepare(model, opt, loader, sched)
    step = 0
    if resume:
        last = latest_checkpoint(ckdir)
        if last is None:
            echo(f"no checkpoint under {ckdir}; starting from scratch")
        else:
            acc.load_state(str(last))
            step = json.loads((last / "trainer.json").read_text())["step"]
            echo(f"resumed from {last} at step {step}")
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + acc.process_index + step)
    ac = D.cosine_alphas_cumprod(cfg.diffusion.num_train_timesteps)
    log = StepLog(acc, out / "metrics.jsonl", cfg.log_every, echo)
    model.train()
    while step < cfg.max_steps:
        for batch in loader:
            with acc.accumulate(model):
                loss, logs = training_loss(model, batch, cfg, ac, gen)
                optimizer_step(acc, model, opt, sched, loss, cfg.clip_grad,
                               clip=acc.sync_gradients)
            if not acc.sync_gradients:
                continue
            step += 1
            if end_step(acc, log, ckdir, step, {**logs, "loss": loss}, cfg,
                        lr=sched.get_last_lr()[0]):
                break
        if cfg.max_minutes > 0 and log.minutes >= cfg.max_minutes:
            break
    log.close()
    acc.wait_for_everyone()
    final = out / "final"
    if acc.is_main_process:
        net = acc.unwrap_model(model).float().eval()
        Audio2PosePipeline(net, cfg.features, cfg.fps, export_sampling(cfg, clips, echo),
                           name=out.name).save_pretrained(final, dtype=cfg.export_dtype)
        echo(f"exported {final} after {step} steps, {log.minutes:.1f} min")
    return final


if __name__ == "__main__":  # pragma: no cover - `accelerate launch -m audio2pose.train ...`
    from audio2pose.cli import train as _train_cmd

    _train_cmd.main(standalone_mode=True)
