"""Noise schedules and the DDPM / DDIM maths: pure torch functions, no model, no state.

Shared by both stages; shape-agnostic: ``x`` is any ``(B, ...)`` tensor (stage 1: normalised
coordinates ``(B, T, 133, 2)``; stage 2: latents ``(B, C, T, h, w)``), ``t`` an int or a ``(B,)``
long tensor.

Notation (DDPM, Ho et al. 2020; DDIM, Song et al. 2021): ``a_t = alphas_cumprod[t]`` (ᾱ_t),

- forward process ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps`` (DDPM Eq. 4), σ_t = sqrt(1 - a_t);
- ``v = sqrt(a_t) eps - sqrt(1 - a_t) x0`` (Salimans & Ho 2022, Eq. 10 with α_t = sqrt(a_t));
- one DDIM step (Song et al. 2021, Eq. 12) with ``eta`` scaling σ of Eq. 16.

Schedules: the cosine ᾱ of Nichol & Dhariwal 2021 (Eq. 17) and the linear / scaled-linear β of DDPM
and Stable Diffusion, each built exactly as diffusers builds them (``squaredcos_cap_v2``,
``linear``, ``scaled_linear``), so a diffusers ``DDIMScheduler`` with the same settings holds the
same ``alphas_cumprod`` bit for bit. Timestep sets (:func:`timesteps`): ``trailing`` (Lin et al.
2024, Table 2: starts at T-1, needed by few-step students), ``leading``, ``linspace`` (diffusers'
three spacings), or an explicit descending list.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

PREDICTIONS = ("sample", "epsilon", "v_prediction")
SCHEDULES = ("cosine", "linear", "scaled_linear")
SPACINGS = ("trailing", "leading", "linspace")


# --- schedules ------------------------------------------------------------------------------------
def cosine_alphas_cumprod(num_train_timesteps: int = 1000, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021, Eq. 17), float64 (num_train_timesteps,).

    ᾱ(t) = cos²((t/T + s) / (1 + s) · π/2), s = 0.008, built through β_t = 1 - ᾱ(t+1)/ᾱ(t) clipped
    at ``max_beta`` exactly as diffusers' ``squaredcos_cap_v2`` (float32 β, float32 cumprod).
    A new tensor each call (the β list is computed once per argument pair).
    """
    # float32 betas then cumprod in float32, as diffusers does, for a bit-identical schedule
    b = torch.tensor(_cosine_betas(int(num_train_timesteps), float(max_beta)), dtype=torch.float32)
    return torch.cumprod(1.0 - b, dim=0).double()


@functools.lru_cache(maxsize=8)
def _cosine_betas(n: int, max_beta: float) -> tuple[float, ...]:
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return tuple(min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n))


def linear_alphas_cumprod(num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                          beta_end: float = 0.02, *, scaled: bool = False) -> torch.Tensor:
    """Linear β schedule (DDPM, Ho et al. 2020, §4: β from 1e-4 to 0.02), float64 (T,).

    ``scaled=True``: β linear in sqrt (Stable Diffusion's ``scaled_linear``, usually with
    beta_start=0.00085, beta_end=0.012). Built as diffusers builds it (float32).
    """
    if scaled:
        b = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps,
                           dtype=torch.float32) ** 2
    else:
        b = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    return torch.cumprod(1.0 - b, dim=0).double()


def make_alphas_cumprod(kind: str = "cosine", num_train_timesteps: int = 1000,
                        **kwargs: float) -> torch.Tensor:
    """ᾱ for ``kind`` in :data:`SCHEDULES` (keyword options go to the builder)."""
    if kind == "cosine":
        return cosine_alphas_cumprod(num_train_timesteps, **kwargs)
    if kind in ("linear", "scaled_linear"):
        return linear_alphas_cumprod(num_train_timesteps, scaled=kind == "scaled_linear", **kwargs)
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {kind!r}")


@dataclass(frozen=True)
class NoiseSchedule:
    """ᾱ (float64 (T,)) and how the denoiser's output is parameterised (:data:`PREDICTIONS`)."""

    alphas_cumprod: torch.Tensor
    prediction_type: str = "sample"

    def __post_init__(self) -> None:
        if self.prediction_type not in PREDICTIONS:
            raise ValueError(f"prediction_type must be one of {PREDICTIONS}, "
                             f"got {self.prediction_type!r}")

    @classmethod
    def cosine(cls, num_train_timesteps: int = 1000,
               prediction_type: str = "sample") -> "NoiseSchedule":
        return cls(cosine_alphas_cumprod(num_train_timesteps), prediction_type)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def sigma(self, t: int) -> float:
        """σ_t = sqrt(1 - ᾱ_t), the noise level of x_t (float64 maths, returned as a float)."""
        return float((1 - self.alphas_cumprod[t]).sqrt())


# --- timestep sets --------------------------------------------------------------------------------
def timesteps(num_train_timesteps: int, steps: int | Sequence[int],
              spacing: str = "trailing") -> list[int]:
    """Descending sampling timesteps.

    ``steps`` an int: ``spacing`` ``"trailing"`` (first t = T-1, pure noise; Lin et al. 2024,
    Table 2), ``"leading"`` (0, T/n, ... reversed; steps_offset 0) or ``"linspace"``, each equal to
    diffusers' ``timestep_spacing`` of the same name. ``steps`` a list: used as given after
    checking it is strictly descending inside [0, T) (few-step students' explicit sets).
    """
    T = num_train_timesteps
    if not isinstance(steps, (int, np.integer)):
        ts = [int(t) for t in steps]
        if not ts or any(not 0 <= t < T for t in ts) or any(a <= b for a, b in zip(ts, ts[1:])):
            raise ValueError(f"timesteps must be a non-empty, strictly descending list in [0, {T}), "
                             f"got {ts}")
        return ts
    n = int(steps)
    if not 1 <= n <= T:
        raise ValueError(f"steps must be in [1, {T}], got {n}")
    if spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
    elif spacing == "leading":
        ts = (np.arange(0, n) * (T // n)).round()[::-1].astype(np.int64)
    elif spacing == "linspace":
        ts = np.linspace(0, T - 1, n).round()[::-1].astype(np.int64)
    else:
        raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    return [int(t) for t in ts]


def ddim_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """``trailing`` timesteps (:func:`timesteps`); the stage-1 default."""
    return timesteps(num_train_timesteps, steps, "trailing")


# --- forward process and parameterisations --------------------------------------------------------
def _bcast(a: torch.Tensor, t: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
    """alphas_cumprod[t] shaped to broadcast against x (B, ...), in x's dtype."""
    at = a[t] if isinstance(t, int) else a[t.long().cpu()]
    at = at.to(dtype=x.dtype, device=x.device)
    return at.reshape(at.shape + (1,) * (x.dim() - at.dim()))


def q_sample(x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor,
             alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Forward process x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps (DDPM Eq. 4). Same shape as x0."""
    a = _bcast(alphas_cumprod, t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def noise_to(x0: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor,
             generator: torch.Generator) -> torch.Tensor:
    """x_t = q_sample(x0, t, eps) with eps ~ N(0, I) drawn from ``generator`` (on the CPU, so the
    same seed gives the same noise on any device). x0 (B, ...), t (B,) long."""
    eps = torch.randn(x0.shape, generator=generator).to(x0)
    return q_sample(x0, t, eps, alphas_cumprod)


def v_target(x0: torch.Tensor, noise: torch.Tensor, t, alphas_cumprod) -> torch.Tensor:
    """v = sqrt(a_t) eps - sqrt(1 - a_t) x0 (Salimans & Ho 2022, Eq. 10)."""
    a = _bcast(alphas_cumprod, t, x0)
    return a.sqrt() * noise - (1 - a).sqrt() * x0


def training_target(x0, noise, t, alphas_cumprod, prediction_type: str) -> torch.Tensor:
    """What the denoiser regresses: x0 (``"sample"``), eps (``"epsilon"``) or v."""
    if prediction_type == "sample":
        return x0
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return v_target(x0, noise, t, alphas_cumprod)
    raise ValueError(f"prediction_type must be one of {PREDICTIONS}, got {prediction_type!r}")


def to_x0_eps(model_out: torch.Tensor, x_t: torch.Tensor, t, alphas_cumprod,
              prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Model output -> (x0, eps), inverting DDPM Eq. 4 / Salimans & Ho Eq. 10.

    sample: eps = (x_t - sqrt(a) x0) / sqrt(1-a); epsilon: x0 = (x_t - sqrt(1-a) eps) / sqrt(a);
    v: x0 = sqrt(a) x_t - sqrt(1-a) v, eps = sqrt(a) v + sqrt(1-a) x_t.
    """
    a = _bcast(alphas_cumprod, t, x_t)
    if prediction_type == "sample":
        x0 = model_out
        eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
    elif prediction_type == "epsilon":
        eps = model_out
        x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    elif prediction_type == "v_prediction":
        x0 = a.sqrt() * x_t - (1 - a).sqrt() * model_out
        eps = a.sqrt() * model_out + (1 - a).sqrt() * x_t
    else:
        raise ValueError(f"prediction_type must be one of {PREDICTIONS}, got {prediction_type!r}")
    return x0, eps


def ddim_sigma(alphas_cumprod: torch.Tensor, t: int, t_prev: int, eta: float) -> float:
    """σ_t(η) = η sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev) (DDIM Eq. 16)."""
    if eta <= 0:
        return 0.0
    a_prev = float(alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
    a_t = float(alphas_cumprod[t])
    return eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))


def ddim_step(model_out: torch.Tensor, x_t: torch.Tensor, t: int, t_prev: int,
              alphas_cumprod: torch.Tensor, prediction_type: str, *, eta: float = 0.0,
              noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM update x_t -> x_{t_prev} (Song et al. 2021, Eq. 12). Returns (x_prev, x0_pred).

    x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - σ²) eps + σ noise. ``t_prev < 0`` means the clean
    end (a_prev = 1). ``eta`` > 0 needs ``noise`` (same shape as x_t); σ from :func:`ddim_sigma`.
    """
    x0, eps = to_x0_eps(model_out, x_t, t, alphas_cumprod, prediction_type)
    a_prev = float(alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
    sigma = ddim_sigma(alphas_cumprod, t, t_prev, eta)
    x_prev = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma ** 2, 0.0)) * eps
    if sigma > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs a noise tensor")
        x_prev = x_prev + sigma * noise
    return x_prev, x0


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, Eq. 6): uncond + s (cond - uncond).

    Applied to the model output (x0, eps or v: all affine in eps for a fixed x_t); s = 1 is the
    plain conditional model.
    """
    return uncond + scale * (cond - uncond)
