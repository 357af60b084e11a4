"""Stage-1 sampling: the pose denoiser plugged into the shared DDIM sampler (:mod:`csg.diffusion`).

The diffusion state ``z`` (B, T, 133, 2) is the standardised motion relative to the reference:
``standardize(normalize(xy, ref) - normalize(ref, ref))`` (:mod:`.normalize`,
:meth:`PoseDenoiser.standardize`), so the reference frame itself is ``standardize(0)``.

Everything generic lives in :mod:`csg.diffusion`: the cosine schedule and trailing timesteps
(:mod:`~csg.diffusion.schedule`), ``ddim_sample`` with frozen noise per step, the guidance hook
``guide(f, z, ctx)`` and known-value pasting (:mod:`~csg.diffusion.sampling`), classifier-free
guidance as a wrapper (``classifier_free``) and the carried-frame windows
(:mod:`~csg.diffusion.windows`). This module only adapts :class:`~audio2pose.model.PoseDenoiser`
to ``denoise_fn(x, t, uncond)``. Known frames are handled in two ways at once: the model sees them
as input (mask + values, trained with random prefixes) and the sampler replaces them with their
noised known values after each step (RePaint), exactly at the end. The guide's
:class:`~csg.diffusion.sampling.StepContext` carries ``cond={"audio": (B, T, D), "ref": (B, 133, 2)}``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

from csg.diffusion.sampling import Known, classifier_free, ddim_sample, randn
from csg.diffusion.schedule import NoiseSchedule, cosine_alphas_cumprod, timesteps
from csg.diffusion.windows import plan_windows, window_spans  # noqa: F401 - window_spans: API

logger = logging.getLogger(__name__)


@dataclass
class SampleOutput:
    """z0: (B, T, 133, 2) standardised coordinates; scores: (B, T, 133) in [0, 1]."""

    z0: torch.Tensor
    scores: torch.Tensor


def schedule_for(model) -> NoiseSchedule:
    """The cosine schedule and output parameterisation ``model`` was trained with."""
    cfg = model.config
    return NoiseSchedule(cosine_alphas_cumprod(cfg.num_train_timesteps), cfg.prediction_type)


def pose_denoiser(model, audio: torch.Tensor, ref: torch.Tensor, known: torch.Tensor | None,
                  known_mask: torch.Tensor | None, logits: list):
    """``denoise_fn(x, t, uncond)`` for :func:`csg.diffusion.sampling.classifier_free`.

    Conditions are repeated when the batch is a multiple of B (CFG's [x; x] batch); ``uncond`` goes
    to the model as ``drop_audio``. The score logits of the first B samples (the conditional half)
    are left in ``logits[0]``.
    """
    B = audio.shape[0]

    def denoise(x: torch.Tensor, t: int, uncond: torch.Tensor | None) -> torch.Tensor:
        n = x.shape[0] // B
        rep = lambda v: v if v is None or n == 1 else torch.cat([v] * n)  # noqa: E731
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        kw = {} if uncond is None else {"drop_audio": uncond}
        out = model(x, tt, rep(audio), rep(ref), known=rep(known), known_mask=rep(known_mask),
                    **kw)
        logits[0] = out.score_logits[:B]
        return out.sample

    return denoise


@torch.no_grad()
def sample(model, audio: torch.Tensor, ref: torch.Tensor, *, steps: int, cfg_scale: float,
           generator: torch.Generator, known: torch.Tensor | None = None,
           known_mask: torch.Tensor | None = None, eta: float = 0.0,
           guide: Callable | None = None, window: tuple[int, int] = (0, 0),
           callback: Callable[[int, int, torch.Tensor], None] | None = None) -> SampleOutput:
    """DDIM sampling of one window (Song et al. 2021) with CFG and the guidance hook.

    audio: (B, T, D) features; ref: (B, 133, 2) reference input; known / known_mask: frames
    fixed in advance (B, T, 133, 2) / (B, T) bool. All noise comes from ``generator``: x_T first,
    then two tensors per step (:func:`csg.diffusion.sampling.ddim_sample`). callback(i, t, z_prev)
    after each step. Returns :class:`SampleOutput`.
    """
    cfg = model.config
    sched = schedule_for(model)
    ts = timesteps(cfg.num_train_timesteps, steps, "trailing")
    B, T = audio.shape[:2]
    z = randn((B, T, cfg.num_keypoints, 2), generator, device=audio.device, dtype=audio.dtype)
    logits: list = [None]
    fn = classifier_free(pose_denoiser(model, audio, ref, known, known_mask, logits), cfg_scale)
    kn = Known(known, known_mask[..., None, None]) if known_mask is not None else None
    cb = None if callback is None else (lambda ctx, zp: callback(ctx.i, ctx.t, zp))
    z0 = ddim_sample(fn, z, ts, sched, generator=generator, guide=guide, known=kn, callback=cb,
                     eta=eta, cond={"audio": audio, "ref": ref}, window=window)
    return SampleOutput(z0=z0, scores=torch.sigmoid(logits[0]))


@torch.no_grad()
def sample_long(model, audio: torch.Tensor, ref: torch.Tensor, first: torch.Tensor, *,
                window: int, overlap: int,
                steps: int, cfg_scale: float, generator: torch.Generator, eta: float = 0.0,
                guide: Callable | None = None,
                callback: Callable[[int, int, torch.Tensor], None] | None = None) -> SampleOutput:
    """Any length, memory bounded by ``window``: windows from :func:`csg.diffusion.windows.plan_windows`.

    audio: (B, T, D); ref: (B, 133, 2) reference input; first: (B, 133, 2) state of frame 0 (the
    reference: ``standardize(0)``). Frame 0 of the whole sequence is fixed to ``first``; each later
    window carries the last ``overlap`` frames of the one before as known frames (see :func:`sample`),
    so there are no seams. Returns :class:`SampleOutput` over all T.
    """
    B, T = audio.shape[:2]
    z_all = torch.zeros(B, T, model.config.num_keypoints, 2, dtype=audio.dtype, device=audio.device)
    s_all = torch.zeros(B, T, model.config.num_keypoints, dtype=audio.dtype, device=audio.device)
    for w in plan_windows(T, window, overlap):
        a, b, k = w.start, w.stop, w.carried
        known = torch.zeros(B, w.length, *z_all.shape[2:], dtype=audio.dtype, device=audio.device)
        mask = torch.zeros(B, w.length, dtype=torch.bool, device=audio.device)
        if w.index == 0:
            known[:, 0], mask[:, 0] = first, True
        else:
            known[:, :k], mask[:, :k] = z_all[:, a:a + k], True
        logger.debug("window %d: frames %d-%d", w.index, a, b)
        out = sample(model, audio[:, a:b], ref, steps=steps, cfg_scale=cfg_scale,
                     generator=generator, known=known, known_mask=mask, eta=eta, guide=guide,
                     window=(a, b), callback=callback)
        z_all[:, w.new] = out.z0[:, k:]
        s_all[:, w.new] = out.scores[:, k:]
    return SampleOutput(z0=z_all, scores=s_all)
