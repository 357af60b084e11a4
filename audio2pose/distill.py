"""A few-step student for stage 1: the guided teacher's sampler distilled into k DDIM steps.

    csg distill audio2pose --teacher DIR --data DIR --out DIR [--steps 4] [--set key=value ...]

Method (and why this one). The teacher is the embedded skeleton denoiser sampled with 25 DDIM
steps and classifier-free guidance (2 model passes a step). The student has the teacher's
architecture, starts from its weights and is sampled with ``k`` trailing DDIM steps (Lin et al.
2024) and **no** classifier-free guidance (1 pass a step), so it costs ``k / 50`` of the teacher.
It is trained by *trajectory distillation*: for one initial noise ``x_T`` and the same audio,
reference and known frames, the teacher's full guided sample ``x̂_0 = Teacher(x_T)`` is the target
of the student's ``k``-step deterministic (η = 0) rollout, and the loss is back-propagated through
the ``k`` steps (Luhman & Luhman 2021, "Knowledge distillation in iterative generative models",
generalised from 1 to k steps; folding guidance into the student as in Meng et al. 2023, "On
distillation of guided diffusion models", stage one).

Why not DMD (IASA) or consistency / progressive distillation: the stage-1 model is tiny (~1 M
parameters) and one exact teacher sample of a 100-frame window costs ~0.05 s on a CPU, so the exact
teacher output is affordable for every training pair. That removes DMD's second "fake score"
network and the bias of consistency models' self-targets, and needs one round instead of
progressive distillation's log2(25 / k) rounds. DMD is the choice when the teacher is expensive
(the video renderer).

Loss: PAR-weighted squared error (PAHA Eq. 2-3 in keypoint space, :func:`audio2pose.par.
par_weights` on the teacher's scores) between the student's and the teacher's ``x_0`` on the frames
that are not given, plus a BCE of the student's score head against the teacher's scores.

Training pairs are generated once per run (``pairs.pt``, reused on ``--resume``): windows of the
training split with the teacher's two inference situations, half of them "first window" (frame 0 =
the reference) and half "continuation" (``overlap`` known frames of real motion).
"""
from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from csg.errors import DataError
from csg.training import StepLog, end_step, latest_checkpoint, optimizer_step

from .par import ParConfig, par_weights

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    teacher: str | None = None  # teacher pipeline folder (None: the embedded default)
    # the student's starting weights: a pipeline folder or name with the teacher's architecture
    # (e.g. a 4-step student when distilling 2 steps); None: the teacher's own weights
    init: str | None = None
    data: str = "data/synth"  # dataset root (manifest.jsonl + clips/), train split
    out: str = "runs/audio2pose_student"  # run folder
    student_steps: int = 4  # k: DDIM steps of the student (trailing timesteps, eta 0, no CFG)
    teacher_steps: int | None = None  # teacher's DDIM steps (None: its own default)
    teacher_cfg: float | None = None  # teacher's CFG scale (None: its own default)
    pairs: int = 1024  # teacher samples generated once per run
    pair_batch: int = 32  # windows per teacher sampling call
    window: int | None = None  # frames per window (None: the teacher's sampling window)
    ref_start: float = 0.0  # share of windows whose reference is their own first frame (PoseWindowDataset)
    par: ParConfig = field(default_factory=ParConfig)
    score_weight: float = 0.1  # weight of the score-head BCE
    batch_size: int = 16
    lr: float = 1.0e-4  # peak AdamW learning rate (the student starts from the teacher)
    weight_decay: float = 0.0
    warmup: int = 50
    max_steps: int = 1500
    max_minutes: float = 0.0  # stop (and export) after this wall time; 0: no limit
    clip_grad: float = 1.0
    log_every: int = 50
    save_every: int = 500
    seed: int = 0
    export_dtype: str = "float16"  # "float16" | "float32"

    def __post_init__(self) -> None:
        from csg import validate as V
        from csg.training import check_training_config

        check_training_config(self, {"pairs": 1, "pair_batch": 1, "window": 1})
        V.steps(self.student_steps, "student_steps")
        if self.teacher_steps is not None:
            V.steps(self.teacher_steps, "teacher_steps")
        if self.teacher_cfg is not None:
            V.cfg_scale(self.teacher_cfg, "teacher_cfg")
        V.fraction(self.ref_start, "ref_start")


# --- the rollout -------------------------------------------------------------------------------
def student_rollout(model, x_T: torch.Tensor, audio: torch.Tensor, ref: torch.Tensor,
                    known: torch.Tensor, known_mask: torch.Tensor, steps: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's k-step deterministic DDIM sample, differentiable.

    Exactly :func:`audio2pose.sampling.sample` with ``cfg_scale=1`` and ``eta=0`` (the same
    :func:`csg.diffusion.sampling.ddim_rollout`, with gradients): known frames are pasted back
    noised to each step's ``t_prev`` (RePaint) and exactly at the end; that noise comes from
    ``generator``, positioned after ``x_T`` was drawn. x_T, known: (B, T, 133, 2); known_mask:
    (B, T) bool. Returns ``(x0 (B, T, 133, 2), score_logits (B, T, 133))``.
    """
    from csg.diffusion.sampling import Known, classifier_free, ddim_rollout
    from csg.diffusion.schedule import timesteps

    from .sampling import pose_denoiser, schedule_for

    cfg = model.config
    logits: list = [None]
    fn = classifier_free(pose_denoiser(model, audio, ref, known, known_mask, logits), 1.0)
    ts = timesteps(cfg.num_train_timesteps, steps, "trailing")
    x0 = ddim_rollout(fn, x_T, ts, schedule_for(model), generator=generator,
                      known=Known(known, known_mask[..., None, None]), eta=0.0)
    return x0, logits[0]


def distill_loss(x0: torch.Tensor, logits: torch.Tensor, target: torch.Tensor,
                 target_scores: torch.Tensor, known_mask: torch.Tensor, par: ParConfig,
                 score_weight: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PAR-weighted squared error on the frames that are not given + score BCE (module doc)."""
    free = (~known_mask).to(x0.dtype)
    w = par_weights(target_scores, par) * free[..., None]
    se = ((x0 - target) ** 2).sum(-1)
    denom = (free.sum() * se.shape[-1]).clamp_min(1.0)
    coord = (w * se).sum() / denom
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, target_scores.clamp(0, 1), reduction="none")
    score = (bce * free[..., None]).sum() / denom
    return coord + score_weight * score, {"coord": coord.detach(), "score": score.detach()}


# --- pairs -------------------------------------------------------------------------------------
def make_pairs(teacher_pipe, ds, cfg: DistillConfig, generator: torch.Generator,
               echo=logger.info) -> dict[str, torch.Tensor]:
    """Teacher samples for ``cfg.pairs`` random windows of ``ds`` (a PoseWindowDataset).

    Returns a dict of stacked tensors: audio, ref, known, known_mask, x_T, x0, scores (teacher)."""
    from .sampling import sample
    from .train import collate

    m = teacher_pipe.model
    s = teacher_pipe.sampling
    steps = cfg.teacher_steps or s.steps
    scale = s.cfg_scale if cfg.teacher_cfg is None else cfg.teacher_cfg
    rng = np.random.default_rng(cfg.seed)
    idx = rng.integers(len(ds), size=cfg.pairs)
    chunks: dict[str, list[torch.Tensor]] = {}
    t0 = time.time()
    for a in range(0, cfg.pairs, cfg.pair_batch):
        batch = collate([ds[int(i)] for i in idx[a:a + cfg.pair_batch]])
        B, W = batch["rel"].shape[:2]
        with torch.no_grad():
            x = m.standardize(batch["rel"] - batch["ref_rel"][:, None])
        ref = torch.where(batch["ref_ok"][..., None], batch["ref_rel"], 0.0)
        known = torch.zeros_like(x)
        mask = torch.zeros(B, W, dtype=torch.bool)
        first = torch.from_numpy(rng.random(B) < 0.5)
        k = min(s.overlap, W - 1)
        first_state = m.standardize(torch.zeros(133, 2))
        for b in range(B):
            if first[b]:
                known[b, 0], mask[b, 0] = first_state, True
            else:
                known[b, :k], mask[b, :k] = x[b, :k], True
        shape = (B, W, m.config.num_keypoints, 2)
        state = generator.get_state()
        x_T = torch.randn(shape, generator=generator)  # the teacher's first draw: its x_T
        generator.set_state(state)
        out = sample(m, batch["audio"], ref, steps=steps, cfg_scale=scale, generator=generator,
                     known=known, known_mask=mask, eta=0.0)
        for key, v in (("audio", batch["audio"]), ("ref", ref), ("known", known),
                       ("known_mask", mask), ("x_T", x_T), ("x0", out.z0), ("scores", out.scores)):
            chunks.setdefault(key, []).append(v.float() if v.is_floating_point() else v)
    echo(f"teacher: {cfg.pairs} pairs ({steps} steps, cfg {scale:g}) in {time.time() - t0:.0f} s")
    return {k: torch.cat(v) for k, v in chunks.items()}


# --- the loop ----------------------------------------------------------------------------------
def distill(cfg: DistillConfig, *, resume: bool = False, echo=logger.info) -> Path:
    """Run distillation; returns the exported ``OUT/final`` pipeline folder."""
    import yaml
    from accelerate import Accelerator

    from csg.config import to_dict
    from csg.data import PoseWindowDataset

    from .pipeline import Audio2PosePipeline, resolve_checkpoint
    from .train import lr_lambda

    if cfg.student_steps < 1:
        raise DataError(f"student_steps must be >= 1, got {cfg.student_steps}")
    acc = Accelerator(cpu=not torch.cuda.is_available())
    out = Path(cfg.out)
    ckdir = out / "checkpoints"
    teacher_dir = resolve_checkpoint(cfg.teacher)
    teacher = Audio2PosePipeline.from_pretrained(teacher_dir)
    window = cfg.window or teacher.sampling.window
    pairs_path = out / f"pairs_{acc.process_index}.pt"
    reuse = resume and pairs_path.is_file()
    # the data is checked before the run folder is written: a bad --data leaves nothing behind
    if not reuse:
        ds = PoseWindowDataset(cfg.data, "train", window=window, feature_cfg=teacher.features,
                               augment=False, seed=cfg.seed, ref_start=cfg.ref_start)
        if len(ds) == 0:
            raise DataError(f"{cfg.data}: no training windows of {window} frames")
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    if reuse:
        pairs = torch.load(pairs_path, weights_only=True)
        echo(f"reusing {pairs_path}")
    else:
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + acc.process_index)
        pairs = make_pairs(teacher, ds, cfg, gen, echo=echo)
        torch.save(pairs, pairs_path)
    # eval mode: no dropout, so the rollout being trained is the one sampled at inference
    student = copy.deepcopy(teacher.model).float().eval()
    if cfg.init is not None:
        init = Audio2PosePipeline.from_pretrained(resolve_checkpoint(cfg.init)).model
        shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
        if shapes(init) != shapes(student):
            raise DataError(f"init {cfg.init}: its model's layers differ from the teacher's "
                            f"({teacher_dir}); the student keeps the teacher's architecture")
        student.load_state_dict({k: v.float() for k, v in init.state_dict().items()})
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    student, opt, sched = acc.prepare(student, opt, sched)
    step = 0
    if resume and (last := latest_checkpoint(ckdir)) is not None:
        acc.load_state(str(last))
        step = json.loads((last / "trainer.json").read_text())["step"]
        echo(f"resumed from {last} at step {step}")
    order = torch.Generator().manual_seed(cfg.seed + 17 * acc.process_index + step)
    n = pairs["x0"].shape[0]
    log = StepLog(acc, out / "metrics.jsonl", cfg.log_every, echo)
    dev = acc.device
    while step < cfg.max_steps:
        idx = torch.randint(n, (cfg.batch_size,), generator=order)
        b = {k: v[idx].to(dev) for k, v in pairs.items()}
        x0, logits = student_rollout(student, b["x_T"], b["audio"], b["ref"], b["known"],
                                     b["known_mask"], cfg.student_steps, order)
        loss, logs = distill_loss(x0, logits, b["x0"], b["scores"], b["known_mask"], cfg.par,
                                  cfg.score_weight)
        optimizer_step(acc, student, opt, sched, loss, cfg.clip_grad)
        step += 1
        if end_step(acc, log, ckdir, step, {**logs, "loss": loss}, cfg):
            break
    log.close()
    acc.wait_for_everyone()
    final = out / "final"
    if acc.is_main_process:
        net = acc.unwrap_model(student).float().eval()
        sampling = replace(teacher.sampling, steps=cfg.student_steps, cfg_scale=1.0)
        Audio2PosePipeline(net, teacher.features, teacher.fps, sampling,
                           name=f"{teacher.name}-student{cfg.student_steps}") \
            .save_pretrained(final, dtype=cfg.export_dtype)
        note = {"teacher": str(cfg.teacher or "embedded default"), "student_steps":
                cfg.student_steps, "teacher_steps": cfg.teacher_steps or teacher.sampling.steps,
                "teacher_cfg": teacher.sampling.cfg_scale if cfg.teacher_cfg is None
                else cfg.teacher_cfg, "pairs": int(n), "optimizer_steps": step,
                "minutes": round(log.minutes, 2), "data": cfg.data,
                "init": cfg.init}
        (final / "distill.json").write_text(json.dumps(note, indent=2) + "\n")
        echo(f"exported {final} after {step} steps, {log.minutes:.1f} min")
    return final
