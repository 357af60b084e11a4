"""Few-step ``vdm`` students and sparse-attention fine-tunes, through accelerate.

    csg distill vdm [--teacher DIR] [--out DIR] [--steps 1] [--method trajectory|finetune]
                    [--set key=value ...] [--resume]

**method ``trajectory``** (the few-step student). The teacher is the embedded ``vdm`` denoiser sampled
with 12 trailing DDIM steps and pose classifier-free guidance (2 passes a step: 24 passes a window).
The student has the teacher's architecture and weights to start, IASA's sparse cross-frame attention
(``attention``, default ``global+local``: :mod:`pose2video.vdm.sparse`), and is sampled with
``student_steps`` trailing DDIM steps and **no** CFG (1 pass a step). It is trained by trajectory
distillation, as the stage-1 student (:mod:`audio2pose.distill`): for one initial noise ``x_T`` and
the same reference, carried frames, skeletons and audio, the guided teacher's full sample
``x̂_0 = Teacher(x_T)`` is the target of the student's deterministic ``k``-step rollout (Luhman &
Luhman 2021, generalised to k steps; guidance folded into the student as in Meng et al. 2023, stage
one), back-propagated through the ``k`` steps (:func:`csg.diffusion.sampling.ddim_rollout`).

Why this and not DMD (IASA §3.4) on this machine: DMD trains a second "fake score" copy of the
denoiser online and needs the guided teacher's score at every generator step (about 4x the cost of a
student step, for thousands of steps). The regression term of DMD *is* this trajectory loss on
precomputed (noise, teacher sample) pairs; with a CPU budget of minutes it is the part that can be
afforded (one teacher sample of a 4-frame window costs ~10 s here), and it needs one round instead
of progressive distillation's log2(24) halvings.

**Input-aware region loss** (IASA §3.4, ``region_loss``): the squared error between the student's and
the teacher's ``x_0`` is weighted per latent pixel by the PAR map (PAHA Eq. 2-3 via
:mod:`pose2video.vdm.par`: face and hands ω1 = 10 times the smoothed confidence, body ω2 = 2, rest
1), precomputed in the latent cache. IASA's ArcFace / perceptual terms need weights that are not
available offline; the latent region weighting is what stands in for them. ``region_loss=false``
is the uniform loss (IASA's "+ distillation" row).

**method ``finetune``**: the teacher's own diffusion loss (:func:`pose2video.vdm.train.training_loss`,
PAR-weighted) with the sparse attention switched on, to adapt the dense checkpoint to ``global`` or
``global+local`` attention (IASA's "+ global", "+ local" rows).

Data: the latent cache of ``csg train renderer`` (``cache``; permissive data only: the synthetic
corpus and ``video/face``). Run folder ``OUT``: ``config.yaml``, ``pairs.pt`` (the teacher pairs, reused
on ``--resume``), ``metrics.jsonl``, ``checkpoints/``, and the exported model in ``OUT`` itself (so
``render.weights=OUT`` loads it); its ``vdm.json`` carries ``render: {steps, cfg_pose, cfg_audio}``
so a student renders with its own step count and no CFG by default.
"""
from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from csg.errors import DataError
from csg.training import StepLog, end_step, latest_checkpoint, optimizer_step

from .config import ParConfig, VdmTrainConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VdmDistillConfig:
    teacher: str = ""  # teacher model folder ("" : the embedded checkpoint)
    cache: tuple[str, ...] = ("data/vdm/cache128",)  # latent cache folders (csg train renderer)
    out: str = "runs/vdm_student"  # run folder
    method: str = "trajectory"  # "trajectory" (few-step student) | "finetune" (sparse attention)
    attention: str = "global+local"  # the output model's cross-frame attention (sparse.py MODES)
    attention_topk: int = 2  # K past frames of the global mask
    student_steps: int = 1  # k: the student's trailing DDIM steps (no CFG)
    teacher_steps: int = 12  # the teacher's DDIM steps
    teacher_cfg_pose: float = 2.0  # the teacher's pose CFG scale
    teacher_cfg_audio: float = 1.0  # the teacher's audio CFG scale
    pairs: int = 64  # teacher (noise, sample) windows, generated once per run
    region_loss: bool = True  # PAR-weighted (face / hands / body) loss; False: uniform
    par: ParConfig = field(default_factory=ParConfig)
    window: int = 0  # frames per window; 0 : the teacher's
    carry: int = -1  # carried context frames; -1 : the teacher's
    carry_prob: float = 0.5  # p of a continuation window (carried frames given clean)
    drop_pose: float = 0.1  # finetune: p of the null pose condition
    drop_audio: float = 0.1  # finetune: p of the null audio condition
    batch_size: int = 2  # per process
    lr: float = 1e-4  # AdamW peak learning rate
    warmup: int = 10  # linear warm-up steps
    max_steps: int = 300  # optimiser steps
    max_minutes: float = 0.0  # stop (and export) after this wall time; 0: no limit
    clip_grad: float = 1.0  # gradient norm clip
    log_every: int = 10  # steps between log lines
    save_every: int = 100  # steps between resumable checkpoints
    seed: int = 0  # pairs, data order, noise
    export_dtype: str = "float16"  # exported weights
    codec: str = ""  # "": the teacher's; "taef2_lite" (TAEF2 teachers): the small decoder, about 5x
    # faster renders but smeared (re-detected body PCK 0.27 vs 0.83 with TAEF2; docs/vdm.md)


# --- pure pieces -------------------------------------------------------------------------------------
def window_plan(poses: torch.Tensor, attention: str, topk: int, canvas_hw, grid_hw):
    """Sparse plans of a batch: ``poses`` (B, F, 133, 3) skeletons of every frame of the window
    (reference first) -> the model's ``sparse`` argument (None for dense)."""
    from .sparse import build_plan, plan_tensors

    if attention == "dense":
        return None
    plans = [build_plan(p.numpy(), attention, topk, canvas_hw, grid_hw) for p in poses]
    return plan_tensors(plans)


def student_x0(model, x_T, context, maps, audio, ts, schedule, sparse, gen) -> torch.Tensor:
    """The student's deterministic ``len(ts)``-step DDIM rollout without CFG (with gradients)."""
    from csg.diffusion.sampling import ddim_rollout

    B = x_T.shape[0]

    def fn(x, t):
        tt = torch.full((B,), int(t), dtype=torch.long)
        return model(context, x, tt, maps, audio, sparse=sparse).sample

    return ddim_rollout(fn, x_T, ts, schedule, generator=gen, eta=0.0)


def distill_loss(x0: torch.Tensor, target: torch.Tensor, par: torch.Tensor, region: bool):
    """Region-weighted squared error of the student's x0 against the teacher's, (B, T, C, h, w);
    ``par`` (B, T, 5, h, w) the cached PAR maps (weight, face, hands, body, rest). Returns
    (loss, per-area MSE logs): mean(M · ||x0 - x̂0||²) with M the PAR weight, or 1 (``region``
    False)."""
    from .par import par_loss

    se = ((x0.float() - target.float()) ** 2).mean(2)
    return par_loss(se, None, None, ParConfig(enabled=region), maps=par)


# --- teacher pairs -------------------------------------------------------------------------------------
def teacher_sample(teacher, x_T, context, maps, audio, cfg: VdmDistillConfig, gen):
    """The guided teacher's DDIM sample from ``x_T`` (the renderer's sampler: nested CFG)."""
    from csg.diffusion.sampling import ddim_sample
    from csg.diffusion.schedule import NoiseSchedule, timesteps

    from .renderer import guided_denoiser

    mc = teacher.config
    fn = guided_denoiser(teacher, context, maps, audio, cfg.teacher_cfg_pose, cfg.teacher_cfg_audio)
    schedule = NoiseSchedule.cosine(mc.num_train_timesteps, mc.prediction_type)
    ts = timesteps(mc.num_train_timesteps, cfg.teacher_steps, "trailing")
    return ddim_sample(fn, x_T, ts, schedule, generator=gen, eta=0.0)


def make_pairs(teacher, ds, cfg: VdmDistillConfig, carry: int, echo) -> list[dict]:
    """``cfg.pairs`` teacher samples of random windows of the cache: half first windows (the
    reference only as context), half continuations (``carry`` real frames carried)."""
    import time

    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    pairs, t0 = [], time.perf_counter()
    for i in range(cfg.pairs):
        item = ds[int(rng.integers(len(ds)))]
        k = carry if rng.random() < cfg.carry_prob else 0
        lat = item["latents"]
        context = torch.cat([item["ref"][None], lat[:k]])[None]
        maps = item["maps"][None]
        audio = torch.cat([torch.zeros_like(item["audio"][:1]), item["audio"]])[None]
        x_T = torch.randn((1, *lat[k:].shape), generator=gen)
        x0 = teacher_sample(teacher, x_T, context, maps, audio, cfg, gen)
        pairs.append({"k": k, "context": context[0].half(), "maps": (maps[0] * 255).round()
                      .to(torch.uint8), "audio": audio[0], "x_T": x_T[0], "x0": x0[0].half(),
                      "par": item["par"][k:].half(),
                      "poses": torch.cat([item["ref_pose"][None], item["poses"]])})
        if (i + 1) % 8 == 0 or i + 1 == cfg.pairs:
            echo(f"teacher pairs {i + 1}/{cfg.pairs} ({time.perf_counter() - t0:.0f} s)")
    return pairs


def _batch(pairs: list[dict], idx) -> dict[str, torch.Tensor]:
    b = {key: torch.stack([pairs[i][key] for i in idx]) for key in pairs[idx[0]] if key != "k"}
    b["context"], b["x0"], b["par"] = b["context"].float(), b["x0"].float(), b["par"].float()
    b["maps"] = b["maps"].float() / 255
    return b


# --- the loop ---------------------------------------------------------------------------------------
def distill(cfg: VdmDistillConfig, *, resume: bool = False, echo=logger.info) -> Path:
    """Train (module doc); returns ``OUT`` holding the exported model."""
    import yaml
    from accelerate import Accelerator

    from csg.config import to_dict
    from csg.diffusion.schedule import NoiseSchedule, timesteps

    from .data import LatentWindowDataset
    from .renderer import load_vdm
    from .sparse import check_mode
    from .train import collate, lr_lambda, training_loss

    check_mode(cfg.attention)
    if cfg.codec not in ("", "taef2_lite"):
        raise DataError(f"codec must be '' (the teacher's) or 'taef2_lite', got {cfg.codec!r}")
    if cfg.method not in ("trajectory", "finetune"):
        raise DataError(f"method must be 'trajectory' or 'finetune', got {cfg.method!r}")
    if cfg.codec and cfg.method != "trajectory":
        raise DataError("codec=taef2_lite is for one-step students (method trajectory); a "
                        "fine-tune keeps its teacher's codec")
    teacher, note = load_vdm(cfg.teacher or None)
    if cfg.codec and note.get("codec", "taef2") != "taef2":
        raise DataError(f"codec=taef2_lite reads TAEF2 latents; this teacher uses "
                        f"{note.get('codec')!r}")
    teacher = teacher.float().eval().requires_grad_(False)
    window = int(cfg.window or note.get("window", 6))
    carry = int(cfg.carry if cfg.carry >= 0 else note.get("carry", 2))
    from .data import cache_files

    files = cache_files(cfg.cache)
    if not files:
        raise DataError(f"{', '.join(cfg.cache)}: no latent cache files (*.npz); make them with "
                        "`csg train renderer --data DIR --set max_steps=0` (cache under OUT/latents)")
    ds = LatentWindowDataset(files, window=window, seed=cfg.seed)
    size = int(note.get("size", 128))
    p = teacher.config.patch_size
    canvas, grid = (size, size), (size // (8 * p), size // (8 * p))

    acc = Accelerator(cpu=not torch.cuda.is_available())
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    student = copy.deepcopy(teacher).requires_grad_(True)
    student.register_to_config(attention=cfg.attention, attention_topk=cfg.attention_topk)
    student.train()
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr)
    tcfg = replace(VdmTrainConfig(), window=window, carry=carry, carry_prob=cfg.carry_prob,
                   drop_pose=cfg.drop_pose, drop_audio=cfg.drop_audio, par=cfg.par,
                   warmup=cfg.warmup, max_steps=cfg.max_steps, seed=cfg.seed)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(tcfg))
    student, opt, sched = acc.prepare(student, opt, sched)
    mc = teacher.config
    schedule = NoiseSchedule.cosine(mc.num_train_timesteps, mc.prediction_type)
    ts = timesteps(mc.num_train_timesteps, cfg.student_steps, "trailing")

    pairs = None
    if cfg.method == "trajectory":
        pf = out / "pairs.pt"
        if pf.is_file():
            pairs = torch.load(pf)
            if len(pairs) != cfg.pairs:
                pairs = None
        if pairs is None:
            pairs = make_pairs(teacher, ds, cfg, carry, echo)
            torch.save(pairs, pf)
        groups = {k: [i for i, q in enumerate(pairs) if q["k"] == k] for k in {q["k"] for q in pairs}}
    loader = None
    if cfg.method == "finetune":
        loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True,
                                             drop_last=True, collate_fn=collate,
                                             generator=torch.Generator().manual_seed(cfg.seed))

    step = 0
    ckdir = out / "checkpoints"
    if resume and (last := latest_checkpoint(ckdir)) is not None:
        acc.load_state(str(last))
        step = json.loads((last / "trainer.json").read_text())["step"]
        echo(f"resumed from {last} at step {step}")
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + 7 + step)
    rng = np.random.default_rng([cfg.seed, step])
    log = StepLog(acc, out / "metrics.jsonl", cfg.log_every, echo)
    done = step >= cfg.max_steps
    it = None
    while not done:
        if cfg.method == "trajectory":
            k = list(groups)[int(rng.integers(len(groups)))]
            idx = rng.choice(groups[k], size=min(cfg.batch_size, len(groups[k])), replace=False)
            b = _batch(pairs, [int(i) for i in idx])
            sparse = window_plan(b["poses"], cfg.attention, cfg.attention_topk, canvas, grid)
            x0 = student_x0(student, b["x_T"], b["context"], b["maps"], b["audio"], ts, schedule,
                            sparse, gen)
            loss, logs = distill_loss(x0, b["x0"], b["par"], cfg.region_loss)
        else:
            if it is None:
                it = iter(loader)
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            poses = torch.cat([batch["ref_pose"][:, None], batch["poses"]], 1)
            wrapped = _WithPlan(student, window_plan(poses, cfg.attention, cfg.attention_topk,
                                                     canvas, grid))
            loss, logs = training_loss(wrapped, batch, tcfg, schedule, gen)
        optimizer_step(acc, student, opt, sched, loss, cfg.clip_grad)
        step += 1
        done = end_step(acc, log, ckdir, step, {**logs, "loss": loss}, cfg,
                        lr=sched.get_last_lr()[0])
    log.close()
    export(acc.unwrap_model(student), cfg, note, out, steps=step, minutes=log.minutes)
    echo(f"exported {out} after {step} steps, {log.minutes:.1f} min")
    return out


class _WithPlan(torch.nn.Module):
    """The model with a fixed ``sparse`` plan, for :func:`pose2video.vdm.train.training_loss`."""

    def __init__(self, model, sparse):
        super().__init__()
        self.model, self.sparse = model, sparse

    @property
    def config(self):
        return self.model.config

    def forward(self, *a, **k):
        return self.model(*a, sparse=self.sparse, **k)


def export(model, cfg: VdmDistillConfig, teacher_note: dict, out: Path, *, steps: int,
           minutes: float) -> None:
    """save_pretrained (``cfg.export_dtype``) + ``vdm.json`` (the teacher's note, the run, and for a
    student the ``render`` defaults: its step count and no CFG)."""
    dtype = {"float16": torch.float16, "float32": torch.float32}[cfg.export_dtype]
    model = model.float().eval()
    torch.nn.Module.to(model, dtype)
    model.save_pretrained(out, safe_serialization=True)
    torch.nn.Module.to(model, torch.float32)
    note = {k: v for k, v in teacher_note.items() if k not in ("render", "distill")}
    note["distill"] = {"method": cfg.method, "teacher": cfg.teacher or "embedded",
                       "steps": steps, "minutes": round(minutes, 1), "pairs": cfg.pairs,
                       "region_loss": cfg.region_loss, "attention": cfg.attention,
                       "cache": list(cfg.cache), "teacher_steps": cfg.teacher_steps,
                       "teacher_cfg_pose": cfg.teacher_cfg_pose}
    if cfg.method == "trajectory":
        note["render"] = {"steps": cfg.student_steps, "cfg_pose": 1.0, "cfg_audio": 1.0}
        if cfg.codec == "taef2_lite":  # (distill() checked the teacher is a TAEF2 one)
            note["codec"], note["codec_path"] = "taef2_lite", ""
    (out / "vdm.json").write_text(json.dumps(note, indent=1, default=str))
