"""Train the ``vdm`` denoiser through accelerate (one CPU, many GPUs).

    csg train renderer [--config configs/pose2video/vdm_cpu.yaml] [--data DIR ...] [--out DIR]
                       [--set key=value ...] [--resume] [--init DIR]
    csg train renderer --video me.mp4 --out runs/me      # personalise: prepare + fine-tune

Run folder ``OUT``: ``config.yaml`` (resolved), ``metrics.jsonl``, ``latents/`` (the latent cache,
unless ``cache`` is set), ``checkpoints/step_N`` (accelerate ``save_state`` + ``trainer.json``), and
the exported model (``config.json`` + ``diffusion_pytorch_model.safetensors`` + ``vdm.json``) in
``OUT`` itself, so ``render.weights=OUT`` loads it.

One sample: a window of ``window`` consecutive frames of a clip and a random reference frame of the
same clip. With probability ``carry_prob`` the first ``carry`` frames are given clean as context
(what rendering does with the frames carried from the previous window); the loss covers the rest.
Loss: PAR-weighted MSE on the latent grid (PAHA Eq. 2-3, :func:`csg.regions`), per-region MSE logged.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict
from pathlib import Path

import torch

from csg.config import to_dict
from csg.errors import DataError
from csg.training import StepLog, end_step, latest_checkpoint, new_run_folder, optimizer_step

from .config import VdmTrainConfig

logger = logging.getLogger(__name__)

EXPORT_NOTE = "vdm.json"
"""Beside the exported model: codec, training size, window/carry, feature config, training note."""


def collate(items: list[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def build_model(cfg: VdmTrainConfig, audio_dim: int):
    from .model import VdmDenoiser

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # model init only; the global RNG is restored afterwards
        return VdmDenoiser(**asdict(cfg.model), audio_dim=audio_dim, sample_size=cfg.size)


def training_loss(model, batch, cfg: VdmTrainConfig, schedule, gen: torch.Generator):
    """Loss of one batch (module doc). Returns (loss, logs of per-region MSE)."""
    from csg.diffusion import schedule as D

    from .data import pose_maps
    from .par import par_loss

    m = model.module if hasattr(model, "module") else model
    lat, ref = batch["latents"], batch["ref"]
    B, W = lat.shape[:2]
    dev = lat.device
    rand = lambda *s: torch.rand(s, generator=gen).to(dev)  # noqa: E731
    k = cfg.carry if float(torch.rand((), generator=gen)) < cfg.carry_prob else 0
    context = torch.cat([ref[:, None], lat[:, :k]], 1)
    x0 = lat[:, k:]
    t = torch.randint(0, m.config.num_train_timesteps, (B,), generator=gen).to(dev)
    noise = torch.randn(x0.shape, generator=gen).to(dev)
    x_t = D.q_sample(x0, t, noise, schedule.alphas_cumprod)
    size = (lat.shape[-2] * 8, lat.shape[-1] * 8)
    poses = torch.cat([batch["ref_pose"][:, None], batch["poses"]], 1)
    maps = batch["maps"] if "maps" in batch else pose_maps(poses.cpu().numpy(), size).to(dev)
    audio = torch.cat([torch.zeros_like(batch["audio"][:, :1]), batch["audio"]], 1)
    out = model(context, x_t, t, maps, audio, drop_pose=rand(B) < cfg.drop_pose,
                drop_audio=rand(B) < cfg.drop_audio).sample
    target = D.training_target(x0, noise, t, schedule.alphas_cumprod, schedule.prediction_type)
    se = ((out.float() - target.float()) ** 2).mean(2)  # (B, T, h, w)
    return par_loss(se, batch["poses"][:, k:], size, cfg.par,
                    maps=batch["par"][:, k:] if "par" in batch else None)


def lr_lambda(cfg: VdmTrainConfig, floor: float = 0.1):
    """Linear warm-up, then cosine decay to ``floor`` x the peak (any config with ``warmup`` and
    ``max_steps``)."""
    def f(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / max(1, cfg.warmup)
        p = min(1.0, (step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))
    return f


def prepare_latents(cfg: VdmTrainConfig, *, progress: bool = True) -> list[Path]:
    """Encode the datasets of ``cfg.data`` into the latent cache (reused when up to date)."""
    from .codec import build_codec
    from .data import build_cache

    codec = build_codec(cfg.codec, cfg.codec_path or None)
    cache = Path(cfg.cache) if cfg.cache else Path(cfg.out) / "latents"
    return build_cache(list(cfg.data), cache, codec, codec_name=cfg.codec,
                       codec_path=cfg.codec_path, size=cfg.size,
                       frames_per_clip=cfg.frames_per_clip, features=cfg.features,
                       par=cfg.par, split=None, progress=progress)


def train(cfg: VdmTrainConfig, *, resume: bool = False, init: str | None = None,
          echo=logger.info, progress: bool = True) -> Path:
    """Run training; returns ``OUT`` holding the exported model. ``init``: a model folder to
    fine-tune from (personalisation), else a new model from ``cfg.model``."""
    import yaml
    from accelerate import Accelerator

    from csg.diffusion.schedule import NoiseSchedule
    from csg.features import feature_dim

    from .data import LatentWindowDataset
    from .model import VdmDenoiser

    if cfg.window <= cfg.carry:  # (here, not in the config: --init replaces the window)
        raise DataError(f"window ({cfg.window}) must be larger than carry ({cfg.carry})")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: the run folder (out) is a file")
    missing = [d for d in cfg.data if not Path(d).is_dir()]
    if missing:  # checked before the run folder is written
        raise DataError(f"{missing[0]}: no such dataset folder (make one with `csg data prepare` "
                        "or `csg data synth`)")
    acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    ckdir = out / "checkpoints"
    if acc.is_main_process:
        with new_run_folder(out):  # (encoded clips are .npz files under the cache)
            (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
            files = prepare_latents(cfg, progress=progress)
    acc.wait_for_everyone()
    if not acc.is_main_process:
        files = prepare_latents(cfg, progress=False)
    ds = LatentWindowDataset(files, window=cfg.window, seed=cfg.seed)
    if len(ds) < cfg.batch_size:
        raise DataError(f"{len(ds)} training windows of {cfg.window} frames, fewer than one batch "
                        f"of {cfg.batch_size}; lower batch_size or window")
    audio_dim = feature_dim(cfg.features) // (2 * cfg.features.context + 1)
    if cfg.features.context != cfg.model.audio_context:
        raise DataError(f"features.context ({cfg.features.context}) must equal "
                        f"model.audio_context ({cfg.model.audio_context})")
    model = VdmDenoiser.from_pretrained(init).float() if init else build_model(cfg, audio_dim)
    if model.config.audio_dim != audio_dim:
        raise DataError(f"{init}: model takes {model.config.audio_dim}-dim audio features, the "
                        f"config gives {audio_dim}")
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing = True
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True,
                                         drop_last=True, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(cfg.seed))
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
    mc = acc.unwrap_model(model).config
    schedule = NoiseSchedule.cosine(mc.num_train_timesteps, mc.prediction_type)
    epoch = 0
    log = StepLog(acc, out / "metrics.jsonl", cfg.log_every, echo)
    model.train()
    done = step >= cfg.max_steps
    while not done:
        ds.set_epoch(epoch)
        epoch += 1
        for batch in loader:
            with acc.autocast():
                loss, logs = training_loss(model, batch, cfg, schedule, gen)
            optimizer_step(acc, model, opt, sched, loss, cfg.clip_grad)
            step += 1
            done = end_step(acc, log, ckdir, step, {**logs, "loss": loss}, cfg,
                            lr=sched.get_last_lr()[0])
            if done:
                break
    log.close()
    acc.wait_for_everyone()
    if acc.is_main_process:
        export(acc.unwrap_model(model), cfg, out, steps=step, minutes=log.minutes, init=init)
        echo(f"exported {out} after {step} steps, {log.minutes:.1f} min")
    return out


def export(model, cfg: VdmTrainConfig, out: Path, *, steps: int, minutes: float,
           init: str | None) -> None:
    """save_pretrained (``cfg.export_dtype``) + the ``vdm.json`` note the renderer reads."""
    dtype = {"float16": torch.float16, "float32": torch.float32}[cfg.export_dtype]
    model = model.float().eval()
    torch.nn.Module.to(model, dtype)  # (ModelMixin.to warns on every dtype cast)
    model.save_pretrained(out, safe_serialization=True)
    torch.nn.Module.to(model, torch.float32)
    note = {"codec": cfg.codec, "codec_path": cfg.codec_path, "size": cfg.size,
            "window": cfg.window, "carry": cfg.carry, "features": asdict(cfg.features),
            "data": list(cfg.data), "steps": steps, "minutes": round(minutes, 1),
            "init": init, "par": asdict(cfg.par)}
    if cfg.framing >= 0:  # the renderer crops photos the way these clips were cropped
        note["framing"] = cfg.framing
    (out / EXPORT_NOTE).write_text(json.dumps(note, indent=1, default=str))
