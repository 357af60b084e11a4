"""A k-diffusion-shaped DDIM sampler shared by both stages, with the guidance hook, known (carried)
values and classifier-free guidance as a wrapper around the denoiser.

``ddim_sample(denoise_fn, x, timesteps, schedule, *, generator, guide=None, known=None,
callback=None)`` runs DDIM (Song et al. 2021, Eq. 12) from ``x`` = x_T over the given descending
``timesteps`` (:func:`csg.diffusion.schedule.timesteps`). It knows nothing about the model:

- ``denoise_fn(x, t) -> model_out`` (x0, eps or v, per ``schedule.prediction_type``), x ``(B, ...)``;
  wrap it with :func:`classifier_free` for CFG (Ho & Salimans 2022, Eq. 6) instead of putting CFG in
  the sampler;
- ``known``: :class:`Known` values and a boolean mask broadcasting over x, pasted back noised to
  t_prev after each step and exactly at the end (RePaint, Lugmayr et al. 2022); windows carry their
  overlap frames this way (:mod:`csg.diffusion.windows`);
- ``guide(f, x, ctx) -> x_prev``: replaces the plain step ``f(x)`` (PAHA Algorithm 1, see
  :mod:`csg.diffusion.guidance`); ``f`` is the one-step solver x_t -> x_{t_prev} (one denoiser call,
  DDIM update, known paste). ``ctx`` is a typed :class:`StepContext`.

Frozen noise per step: before step i the sampler draws exactly two tensors shaped like x from
``generator``, in this order: the DDIM η noise, then the noise the known values are re-noised with.
Both are drawn whether or not η > 0 or ``known`` is given, so the stream of random numbers depends
only on the number of steps, and every call of ``f`` within a step uses the same noise: ``f`` is a
deterministic function of x (DG calls it three times). No other randomness is used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from .schedule import NoiseSchedule, cfg_combine, ddim_step, q_sample, to_x0_eps

DenoiseFn = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class StepContext:
    """One sampling step, as a guide or callback sees it.

    i: step index (0 = noisiest); num_steps; t / t_prev: this and the next timestep (t_prev = -1:
    the clean end); sigma_t = sqrt(1 - ᾱ_t); cond: the caller's conditions (stage 1:
    ``{"audio": (B, T, D)}``), passed through untouched; window: (start, stop) of the frames being
    sampled in the whole sequence; predict_x0(x): the denoiser's x0 estimate at t.
    """

    i: int
    num_steps: int
    t: int
    t_prev: int
    sigma_t: float
    cond: Mapping[str, Any] = field(default_factory=dict)
    window: tuple[int, int] = (0, 0)
    predict_x0: Callable[[torch.Tensor], torch.Tensor] | None = None


Guide = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, StepContext], torch.Tensor]


@dataclass(frozen=True)
class Known:
    """Values fixed in advance: ``values`` shaped like x, ``mask`` bool broadcasting over x
    (stage 1: (B, T, 1, 1) for whole frames)."""

    values: torch.Tensor
    mask: torch.Tensor


def randn(shape: Sequence[int], generator: torch.Generator, *, device=None,
          dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise drawn float32 on the generator's device, then moved to device/dtype
    (so a CPU generator gives the same numbers whatever the compute device)."""
    return torch.randn(tuple(shape), generator=generator, device=generator.device,
                       dtype=torch.float32).to(device, dtype)


def classifier_free(denoise_fn: Callable[[torch.Tensor, int, torch.Tensor | None], torch.Tensor],
                    scale: float, *, batched: bool = True) -> DenoiseFn:
    """Classifier-free guidance (Ho & Salimans 2022, Eq. 6) as a wrapper: a ``denoise_fn(x, t)``.

    ``denoise_fn(x, t, uncond)``: ``uncond`` is None (every sample conditional) or a (B,) bool
    tensor, True where the condition is dropped. scale 1: one plain call with ``uncond=None``.
    Otherwise ``uncond + scale (cond - uncond)`` from one call on the batch [x; x] with
    uncond = [False]*B + [True]*B (``batched``), or from two calls (``batched=False``, less memory).
    """
    if scale == 1.0:
        return lambda x, t: denoise_fn(x, t, None)

    def guided(x: torch.Tensor, t: int) -> torch.Tensor:
        B = x.shape[0]
        zeros = torch.zeros(B, dtype=torch.bool)
        ones = torch.ones(B, dtype=torch.bool)
        if batched:
            drop = torch.cat([zeros, ones]).to(x.device)
            out = denoise_fn(torch.cat([x, x]), t, drop)
            cond, uncond = out[:B], out[B:]
        else:
            cond = denoise_fn(x, t, zeros.to(x.device))
            uncond = denoise_fn(x, t, ones.to(x.device))
        return cfg_combine(cond, uncond, scale)

    return guided


def ddim_rollout(denoise_fn: DenoiseFn, x: torch.Tensor, timesteps: Sequence[int],
                schedule: NoiseSchedule, *, generator: torch.Generator, guide: Guide | None = None,
                known: Known | None = None,
                callback: Callable[[StepContext, torch.Tensor], None] | None = None,
                eta: float = 0.0, cond: Mapping[str, Any] | None = None,
                window: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """DDIM sampling (Song et al. 2021, Eq. 12; module doc). Returns x_0 shaped like ``x``.

    x: x_T (B, ...), usually :func:`randn` from the same generator. timesteps: descending ints.
    eta: DDIM η (Eq. 16); 0 is deterministic given x_T. callback(ctx, x_prev) after each step.
    Differentiable when called with gradients enabled (few-step distillation back-propagates
    through the student's rollout); :func:`ddim_sample` is the same loop under ``torch.no_grad``.
    """
    ac = schedule.alphas_cumprod
    pt = schedule.prediction_type
    ts = [int(t) for t in timesteps]
    cond = {} if cond is None else cond
    z = x
    m = known.mask if known is not None else None
    if known is not None:
        z = torch.where(m, q_sample(known.values, ts[0], z, ac), z)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        step_noise = randn(z.shape, generator, device=z.device, dtype=z.dtype)
        paste_noise = randn(z.shape, generator, device=z.device, dtype=z.dtype)

        def f(z_in: torch.Tensor, t=t, t_prev=t_prev, step_noise=step_noise,
              paste_noise=paste_noise) -> torch.Tensor:
            z_prev, _ = ddim_step(denoise_fn(z_in, t), z_in, t, t_prev, ac, pt, eta=eta,
                                  noise=step_noise)
            if known is not None:
                k = known.values if t_prev < 0 else q_sample(known.values, t_prev, paste_noise, ac)
                z_prev = torch.where(m, k, z_prev)
            return z_prev

        def predict_x0(z_in: torch.Tensor, t=t) -> torch.Tensor:
            return to_x0_eps(denoise_fn(z_in, t), z_in, t, ac, pt)[0]

        ctx = StepContext(i=i, num_steps=len(ts), t=t, t_prev=t_prev,
                          sigma_t=float((1 - ac[t]).sqrt()), cond=cond, window=window,
                          predict_x0=predict_x0)
        z = guide(f, z, ctx) if guide is not None else f(z)
        if callback is not None:
            callback(ctx, z)
    return z


ddim_sample = torch.no_grad()(ddim_rollout)
"""Inference: :func:`ddim_rollout` without gradients (same arguments, same numbers)."""
