"""A small latent decoder distilled from TAEF2's, through accelerate (``csg distill decoder``).

    csg distill decoder [--cache DIR ...] [--pairs FILE ...] [--media PATH ...] [--out DIR]
                        [--set key=value ...]

Why: a one-step ``vdm`` student spends 1 denoiser pass per window, and then the decoder bounds the
render (TAEF2's decoder is ~4.4 G multiply-adds per 128 x 128 frame, 72-85 % of the student's
render on CPU; docs/vdm.md "Real time"). IASA's budget assumes a GPU where the VAE is cheap; on a CPU
the decoder has to shrink too. This is the TAESD recipe applied once more: a smaller decoder trained
to reproduce a bigger one's output on the same latents.

**The student decoder** (:func:`pose2video.vdm.codec._taef2_modules`, ``lite_decoder``): one
residual block per scale at widths ``channels`` (1/8, 1/4, 1/2 of the frame), and a last conv to 12
channels pixel-shuffled to RGB, so no conv runs at full resolution (about 0.13 G multiply-adds per
128 x 128 frame, 30x fewer than TAEF2's decoder). It reads TAEF2 latents: the encoder, the ``vdm``
models and their caches are unchanged.

**Data**: latents, from three sources: the ``csg train renderer`` latent caches (TAEF2 encodings
of permissive frames: the synthetic corpus and ``video/face``); the ``pairs.pt`` of ``csg distill
vdm`` (the guided teacher's sampled latents: what the decoder meets at render time, off the
encoder's manifold); and ``media``: random square crops (30-100 % of the short side, mirrored
half the time, ``crops`` per video spread over its frames) of any videos and photos, encoded by
TAEF2. The caches alone are narrow (avatars on noise, four faces): a decoder trained on them
reaches 30 dB against TAEF2 on their held-out frames and 19 dB on real speakers' frames. Each latent is also taken with Gaussian noise of std ``noise`` x its
channel std (``noisy_copies`` per latent), for the student denoiser's errors. The target of every
latent is TAEF2's own decoding of it, computed once; every ``holdout``-th latent is held out and
the PSNR of the small decoder against TAEF2 on it is logged and written to ``decoder.json``.

**Loss**: L1 + MSE between the two decodings, in [0, 1] RGB.

Run folder ``OUT``: ``config.yaml``, ``targets.pt`` (the latents and TAEF2 decodings, reused),
``metrics.jsonl``, ``checkpoints/``, and the exported ``decoder.safetensors`` + ``decoder.json``,
so ``render.codec=taef2_lite render.codec_path=OUT`` uses it.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from csg.errors import DataError
from csg.video import VIDEO_SUFFIXES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecoderDistillConfig:
    cache: tuple[str, ...] = ("data/vdm/cache128",)  # latent cache folders (*.npz of csg train
    # renderer); a missing folder is an error unless it is this default
    pairs: tuple[str, ...] = ()  # pairs.pt files of csg distill vdm (teacher-sampled latents)
    media: tuple[str, ...] = ()  # folders / files of videos and photos to take random crops from
    crops: int = 48  # random crops per video (photos: crops / 4)
    size: int = 128  # crop size in pixels (multiple of 8): the vdm working size
    channels: tuple[int, ...] = (64, 32, 16)  # the small decoder's widths at 1/8, 1/4, 1/2
    out: str = "runs/taef2_lite"  # run folder; the decoder is exported into it
    edge: float = 0.0  # weight of the image-gradient L1 term (decoder_loss)
    noise: float = 0.1  # std of the added latent noise, in units of each channel's std
    noisy_copies: int = 1  # noisy copies per latent (0: none)
    holdout: int = 10  # every n-th latent is held out for the PSNR check
    batch_size: int = 16  # latents per step
    lr: float = 2e-3  # AdamW peak learning rate
    warmup: int = 20  # linear warm-up steps
    max_steps: int = 3000  # optimiser steps (cosine decay to 5 % over them)
    max_minutes: float = 0.0  # stop (and export) after this wall time; 0: no limit
    clip_grad: float = 1.0  # gradient norm clip
    log_every: int = 50  # steps between log lines
    save_every: int = 500  # steps between resumable checkpoints
    seed: int = 0  # noise, order


def load_latents(cache: tuple, pairs: tuple, *, default_cache: tuple = ()) -> torch.Tensor:
    """(N, C, h, w) float latents of the caches' ``latents`` arrays and the pairs' teacher
    samples ``x0`` (every frame of every window); (0,) when there are none. A cache folder that
    does not exist is an error, unless it is one of ``default_cache`` (the config's default)."""
    from .data import cache_files

    out = []
    for c in cache:
        if not Path(c).is_dir() and c not in default_cache:
            raise DataError(f"{c}: no such latent cache folder (csg train renderer --data DIR "
                            "--set max_steps=0 makes one)")
    for f in cache_files(cache):
        with np.load(f) as z:
            if "latents" in z:
                out.append(torch.from_numpy(z["latents"].astype(np.float32)))
    for p in pairs:
        if not Path(p).is_file():
            raise DataError(f"{p}: no such pairs file (csg distill vdm writes OUT/pairs.pt)")
        try:
            x0s = [q["x0"].float() for q in torch.load(p)]
        except Exception as e:  # a text file, a truncated save, another tensor file
            raise DataError(f"{p}: not a pairs file of `csg distill vdm` ({type(e).__name__})"
                            ) from None
        for x0 in x0s:
            out.append(x0.reshape(-1, *x0.shape[-3:]))
    return torch.cat(out) if out else torch.zeros(0)


IMAGE_EXT = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def media_files(roots: tuple) -> list[Path]:
    """Video and photo files under ``roots`` (files or folders, recursive), sorted."""
    out = []
    for r in roots:
        r = Path(r)
        if not r.exists():
            raise DataError(f"{r}: no such file or folder (media for csg distill decoder)")
        cand = [r] if r.is_file() else sorted(p for p in r.rglob("*") if p.is_file())
        out += [p for p in cand if p.suffix.lower() in (*VIDEO_SUFFIXES, *IMAGE_EXT)]
    return out


def random_crops(frame: np.ndarray, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random square crops of ``frame`` (H, W, 3) uint8, side 30-100 % of its short side,
    mirrored with p = 0.5, resized to ``size`` -> (n, size, size, 3) uint8."""
    import cv2

    H, W = frame.shape[:2]
    out = []
    for _ in range(n):
        s = max(8, int(round(min(H, W) * rng.uniform(0.3, 1.0))))
        y0, x0 = int(rng.integers(0, H - s + 1)), int(rng.integers(0, W - s + 1))
        c = frame[y0:y0 + s, x0:x0 + s]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        out.append(cv2.resize(np.ascontiguousarray(c), (size, size),
                              interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR))
    return np.stack(out)


def media_crops(files: list[Path], crops: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Random crops (:func:`random_crops`) of every file: ``crops`` per video, one per sampled
    frame spread over the video, and ``max(1, crops // 4)`` per photo."""
    from csg.image import load_image
    from csg.video import read_video

    out = []
    for f in files:
        if f.suffix.lower() in IMAGE_EXT:
            out.append(random_crops(load_image(f), max(1, crops // 4), size, rng))
            continue
        n = sum(1 for _ in read_video(f))  # a first pass counts; only the sampled frames are kept
        if not n:
            continue
        want = np.linspace(0, n - 1, crops).round().astype(int)
        for i, frame in enumerate(read_video(f)):
            for _ in range(int((want == i).sum())):
                out.append(random_crops(frame, 1, size, rng))
    if not out:
        raise DataError("no video or photo could be read for csg distill decoder")
    return np.concatenate(out)


def with_noise(lat: torch.Tensor, noise: float, copies: int, gen: torch.Generator) -> torch.Tensor:
    """``lat`` followed by ``copies`` copies with Gaussian noise of std ``noise`` x each channel's
    std (over the whole set)."""
    if copies <= 0 or noise <= 0:
        return lat
    std = lat.transpose(0, 1).reshape(lat.shape[1], -1).std(1).view(1, -1, 1, 1)
    extra = [lat + noise * std * torch.randn(lat.shape, generator=gen) for _ in range(copies)]
    return torch.cat([lat, *extra])


def held_out(n: int, every: int, copies: int = 1) -> torch.Tensor:
    """(n,) bool: every ``every``-th latent of the originals held out together with its noisy
    copies (``with_noise`` appends ``copies - 1`` copies of the first ``n // copies``), so no
    held-out latent has a twin in training."""
    base = n // max(1, copies)
    h = torch.zeros(base, dtype=torch.bool)
    h[::max(2, every)] = True
    return torch.cat([h] * max(1, copies) + [torch.zeros(n - base * max(1, copies),
                                                         dtype=torch.bool)])


def decoder_loss(pred: torch.Tensor, target: torch.Tensor, edge: float = 0.0) -> torch.Tensor:
    """L1 + MSE of two RGB batches (B, 3, H, W) in [0, 1], plus ``edge`` x the L1 distance of their
    horizontal and vertical pixel differences (favours edges over the blur MSE settles for)."""
    d = pred - target
    loss = d.abs().mean() + (d ** 2).mean()
    if edge > 0:
        loss = loss + edge * ((d[..., :, 1:] - d[..., :, :-1]).abs().mean()
                              + (d[..., 1:, :] - d[..., :-1, :]).abs().mean())
    return loss


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean PSNR (dB) over a batch of [0, 1] images."""
    mse = ((pred.clamp(0, 1) - target) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


def make_targets(lat: torch.Tensor, teacher, batch: int = 8) -> torch.Tensor:
    """TAEF2's decodings of ``lat`` (uint8 to keep them small)."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(lat), batch):
            out.append((teacher(lat[i:i + batch]).clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.cat(out)


def distill_decoder(cfg: DecoderDistillConfig, *, resume: bool = False, echo=logger.info) -> Path:
    """Train (module doc); returns ``OUT`` holding ``decoder.safetensors``."""
    import yaml
    from accelerate import Accelerator
    from safetensors.torch import save_file

    from csg.config import to_dict
    from csg.training import (StepLog, end_step, latest_checkpoint, new_run_folder,
                              optimizer_step)

    from .codec import Taef2Codec, _taef2_modules
    from .train import lr_lambda

    if len(cfg.channels) != 3 or min(cfg.channels) < 1:
        raise DataError(f"channels: three positive widths (1/8, 1/4, 1/2), not "
                        f"{list(cfg.channels)}")
    if cfg.size < 8 or cfg.size % 8:
        raise DataError(f"size: a multiple of 8 pixels, not {cfg.size}")
    out = Path(cfg.out)
    with new_run_folder(out, produced="targets.pt"):  # refused data: no half-made run folder
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        gen = torch.Generator().manual_seed(cfg.seed)
        tf = out / "targets.pt"
        if tf.is_file():
            lat, rgb = torch.load(tf).values()
        else:
            lat = load_latents(tuple(cfg.cache), tuple(cfg.pairs),
                               default_cache=DecoderDistillConfig.cache)
            if cfg.media:
                files = media_files(tuple(cfg.media))
                echo(f"taking random crops of {len(files)} videos / photos")
                px = media_crops(files, cfg.crops, cfg.size, np.random.default_rng(cfg.seed))
                echo(f"encoding {len(px)} crops with TAEF2")
                enc = Taef2Codec().encoder
                with torch.inference_mode():
                    x = torch.from_numpy(px).permute(0, 3, 1, 2).float() / 255
                    new = torch.cat([enc(x[i:i + 8]) for i in range(0, len(x), 8)])
                lat = new if not len(lat) else torch.cat([lat, new])
            if not len(lat):
                raise DataError("no latents: give --cache (csg train renderer), --pairs "
                                "(csg distill vdm) or --set media=[videos and photos]")
            lat = with_noise(lat, cfg.noise, cfg.noisy_copies, gen)
            echo(f"decoding {len(lat)} latents with TAEF2 (the targets, once)")
            rgb = make_targets(lat, Taef2Codec().decoder)
            torch.save({"latents": lat, "rgb": rgb}, tf)
    held = held_out(len(lat), cfg.holdout, 1 + (cfg.noisy_copies if cfg.noise > 0 else 0))
    train_idx = torch.nonzero(~held).flatten()
    if len(train_idx) < cfg.batch_size:
        raise DataError(f"only {len(train_idx)} training latents; need at least batch_size "
                        f"({cfg.batch_size})")

    acc = Accelerator(cpu=not torch.cuda.is_available())
    _, _, lite_cls = _taef2_modules()
    model = lite_cls(tuple(int(c) for c in cfg.channels))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, floor=0.05))
    model, opt, sched = acc.prepare(model, opt, sched)
    step, ckdir = 0, out / "checkpoints"
    if resume and (last := latest_checkpoint(ckdir)) is not None:
        acc.load_state(str(last))
        step = json.loads((last / "trainer.json").read_text())["step"]
        echo(f"resumed from {last} at step {step}")
    rng = np.random.default_rng([cfg.seed, step])
    log = StepLog(acc, out / "metrics.jsonl", cfg.log_every, echo)
    done = step >= cfg.max_steps
    while not done:
        idx = train_idx[torch.from_numpy(rng.choice(len(train_idx), cfg.batch_size,
                                                    replace=False))]
        target = rgb[idx].to(acc.device).float() / 255
        loss = decoder_loss(model(lat[idx].to(acc.device)), target, cfg.edge)
        optimizer_step(acc, model, opt, sched, loss, cfg.clip_grad)
        step += 1
        done = end_step(acc, log, ckdir, step, {"loss": loss}, cfg, lr=sched.get_last_lr()[0])
    log.close()
    model = acc.unwrap_model(model).eval()
    with torch.inference_mode():
        h = torch.nonzero(held).flatten()
        pred = torch.cat([model(lat[h[i:i + 16]].to(acc.device)).cpu()
                          for i in range(0, len(h), 16)])
        check = psnr(pred, rgb[h].float() / 255)
    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()},
              str(out / "decoder.safetensors"))
    (out / "decoder.json").write_text(json.dumps({
        "channels": [int(c) for c in cfg.channels], "teacher": "taef2", "steps": step,
        "minutes": round(log.minutes, 1), "latents": int(len(lat)), "held_out": int(held.sum()),
        "held_out_psnr_vs_taef2": round(check, 2), "cache": list(cfg.cache),
        "pairs": list(cfg.pairs), "media": list(cfg.media), "crops": cfg.crops}, indent=1))
    echo(f"exported {out / 'decoder.safetensors'} after {step} steps, {log.minutes:.1f} min; "
         f"held-out PSNR against TAEF2's decoder {check:.2f} dB")
    return out
