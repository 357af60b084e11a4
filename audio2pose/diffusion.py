"""Noise maths for the skeleton diffusion model: pure torch functions, no model, no state.

Notation (DDPM / DDIM): ``a_t = alphas_cumprod[t]`` (alpha-bar), ``x_t = sqrt(a_t) x0 + sqrt(1-a_t) eps``,
``v = sqrt(a_t) eps - sqrt(1-a_t) x0`` (Salimans & Ho 2022, Eq. 10). Shapes: any ``x`` (B, ...);
``t`` is an int or a (B,) long tensor.
"""
from __future__ import annotations

import math

import numpy as np
import torch

PREDICTIONS = ("sample", "v_prediction")


def cosine_alphas_cumprod(num_train_timesteps: int = 1000, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021, Eq. 17), float64 (num_train_timesteps,).

    Built through betas clipped at ``max_beta`` exactly as diffusers' ``squaredcos_cap_v2``, so a
    ``DDIMScheduler(beta_schedule="squaredcos_cap_v2")`` holds the same ``alphas_cumprod``.
    """
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    n = num_train_timesteps
    betas = [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)]
    # float32 betas then cumprod in float32, as diffusers does, for a bit-identical schedule
    b = torch.tensor(betas, dtype=torch.float32)
    return torch.cumprod(1.0 - b, dim=0).double()


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


def v_target(x0: torch.Tensor, noise: torch.Tensor, t, alphas_cumprod) -> torch.Tensor:
    """v = sqrt(a_t) eps - sqrt(1 - a_t) x0 (Salimans & Ho 2022, Eq. 10)."""
    a = _bcast(alphas_cumprod, t, x0)
    return a.sqrt() * noise - (1 - a).sqrt() * x0


def training_target(x0, noise, t, alphas_cumprod, prediction_type: str) -> torch.Tensor:
    """What the denoiser regresses: x0 for ``"sample"``, v for ``"v_prediction"``."""
    if prediction_type == "sample":
        return x0
    if prediction_type == "v_prediction":
        return v_target(x0, noise, t, alphas_cumprod)
    raise ValueError(f"prediction_type must be one of {PREDICTIONS}, got {prediction_type!r}")


def to_x0_eps(model_out: torch.Tensor, x_t: torch.Tensor, t, alphas_cumprod,
              prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Model output -> (x0, eps). For v: x0 = sqrt(a) x_t - sqrt(1-a) v, eps = sqrt(a) v + sqrt(1-a) x_t."""
    a = _bcast(alphas_cumprod, t, x_t)
    if prediction_type == "sample":
        x0 = model_out
        eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
    elif prediction_type == "v_prediction":
        x0 = a.sqrt() * x_t - (1 - a).sqrt() * model_out
        eps = a.sqrt() * model_out + (1 - a).sqrt() * x_t
    else:
        raise ValueError(f"prediction_type must be one of {PREDICTIONS}, got {prediction_type!r}")
    return x0, eps


def ddim_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """Descending DDIM timesteps, ``trailing`` spacing (Lin et al. 2024, Table 2): the first step
    starts at t = T-1 (pure noise). Equals diffusers ``timestep_spacing="trailing"``."""
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be in [1, {num_train_timesteps}], got {steps}")
    ratio = num_train_timesteps / steps
    ts = np.round(np.arange(num_train_timesteps, 0, -ratio)).astype(np.int64) - 1
    return [int(t) for t in ts]


def ddim_step(model_out: torch.Tensor, x_t: torch.Tensor, t: int, t_prev: int,
              alphas_cumprod: torch.Tensor, prediction_type: str, *, eta: float = 0.0,
              noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM update x_t -> x_{t_prev} (Song et al. 2021, Eq. 12). Returns (x_prev, x0_pred).

    ``t_prev < 0`` means the clean end (a_prev = 1). ``eta`` > 0 needs ``noise`` (same shape as x_t);
    sigma_t = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev) (Eq. 16).
    """
    x0, eps = to_x0_eps(model_out, x_t, t, alphas_cumprod, prediction_type)
    a_prev = float(alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
    a_t = float(alphas_cumprod[t])
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) if eta > 0 else 0.0
    x_prev = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma ** 2, 0.0)) * eps
    if sigma > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs a noise tensor")
        x_prev = x_prev + sigma * noise
    return x_prev, x0


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, Eq. 6): uncond + s (cond - uncond).

    Applied to the model output (x0 or v, both linear in eps for fixed x_t); s = 1 is the plain
    conditional model.
    """
    return uncond + scale * (cond - uncond)
