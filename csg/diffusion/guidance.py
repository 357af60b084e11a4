"""Parts consistency enhancement (PCE): PAHA Algorithm 1 as short pure functions.

Shared by both stages. Everything here works on a sampler state ``z`` of any shape (stage 1:
normalised coordinates ``(B, T, 133, 2)``; stage 2: latents) and on four ingredients the caller
builds:

- ``f(z) -> z_prev``: one solver step (one denoiser call, CFG, DDIM update to the next timestep,
  same noise). Called 1 (none / SG) or 3 (DG) times per guided step.
- ``grad_nonface_fn(z)`` / ``grad_face_fn(z)``: ∇_z of the classifier loss toward "in sync",
  i.e. ∇_z −log s(z); see :func:`sync_loss_grad`.
- ``mask_nonface`` / ``mask_face``: region masks broadcasting over ``z`` (0/1 or soft).
- the weights λ_nf, λ_f, λ_diff and σ_t = sqrt(1 − ᾱ_t).

PAHA (Wang et al., ACM MM 2025), Algorithm 1:

- Eq. 8:  ẑ^nf = ẑ − λ_nf σ_t ∇D_nf(ẑ, a) ⊙ M_nf
- Eq. 9:  ẑ^f  = ẑ − λ_f σ_t ∇D_f(ẑ^nf, a) ⊙ M_f      (face gradient at the updated ẑ^nf)
- Eq. 10: ẑ*   = ẑ^f + ẑ^nf − ẑ
- Eq. 11 (SG): ẑ_{t−1} = f(ẑ*)
- Eq. 12 (DG): ẑ_{t−1} = f(ẑ*) + λ_diff [f(ẑ^nf) ⊙ M_f + f(ẑ^f) ⊙ M_nf]

Eq. 12 as printed adds λ_diff times a *state* (not a difference) to the state, which rescales
the masked regions by about (1 + λ_diff). ``dg_form="literal"`` implements it as printed;
``dg_form="residual"`` (:data:`DG_FORM_DEFAULT`, everywhere) adds only the differences
λ_diff [(f(ẑ^nf) − f(ẑ*)) ⊙ M_f + (f(ẑ^f) − f(ẑ*)) ⊙ M_nf], which is the scale-preserving reading
(the literal form measured harmful, docs/guidance.md).

The sampler hook (:func:`make_guide`) has the :data:`csg.diffusion.sampling.Guide` shape
``guide(f, z, ctx)`` with ``ctx`` a :class:`csg.diffusion.sampling.StepContext` (``i``,
``num_steps``, ``t``, ``sigma_t``, ``cond``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # torch is imported lazily inside functions
    import torch

    Tensor = torch.Tensor

MODES = ("none", "sg", "dg")
"""PCE modes: none, sequential guidance (Eq. 11), differential guidance (Eq. 12)."""
DG_FORMS = ("residual", "literal")
DG_FORM_DEFAULT = "residual"


@dataclass(frozen=True)
class GuidanceConfig:
    """PCE settings, the one set of names used by ``csg pose generate`` flags (``--lambda-face``
    ...), the run config's ``stage1.*`` keys and :func:`audio2pose.classifier.load_guide`.
    λ and r defaults are PAHA's (§4.1.3)."""

    mode: str = "none"  # "none" | "sg" (sequential guidance) | "dg" (differential guidance)
    lambda_nonface: float = 1.0  # λ_nf, Eq. 8
    lambda_face: float = 0.1  # λ_f, Eq. 9; small because the face classifier dominates easily
    lambda_diff: float = 0.25  # λ_diff, Eq. 12 (DG only)
    guided_fraction: float = 0.5  # r: guide only the first r of the sampling steps
    dg_form: str = DG_FORM_DEFAULT  # "residual" (differences only) | "literal" (Eq. 12 as printed)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"guidance mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.dg_form not in DG_FORMS:
            raise ValueError(f"dg_form {self.dg_form!r} is not one of {', '.join(DG_FORMS)}")
        if not 0.0 <= self.guided_fraction <= 1.0:
            raise ValueError(f"guided fraction must be in [0, 1], got {self.guided_fraction}")

    @property
    def lambdas(self) -> tuple[float, float, float]:
        """(λ_nf, λ_f, λ_diff), the order :func:`guided_step` takes."""
        return (self.lambda_nonface, self.lambda_face, self.lambda_diff)

    @classmethod
    def from_fields(cls, source, **overrides) -> "GuidanceConfig":
        """Build from any object or mapping holding (some of) these field names, e.g. the run
        config's ``stage1`` section: ``GuidanceConfig.from_fields(cfg.stage1, mode="sg")``
        (``stage1.guidance`` is read as the mode). Missing names keep their defaults."""
        from dataclasses import fields

        get = source.get if isinstance(source, dict) else (lambda k, d=None: getattr(source, k, d))
        kw = {f.name: get(f.name) for f in fields(cls) if get(f.name) is not None}
        if "mode" not in kw and get("guidance") is not None:
            kw["mode"] = get("guidance")
        kw.update(overrides)
        return cls(**kw)

    def settings(self) -> dict[str, float | str]:
        """Everything but the mode (what outputs record as ``meta.guidance_settings``)."""
        return {"lambda_nonface": self.lambda_nonface, "lambda_face": self.lambda_face,
                "lambda_diff": self.lambda_diff, "guided_fraction": self.guided_fraction,
                "dg_form": self.dg_form}


def is_guided_step(i: int, num_steps: int, fraction: float) -> bool:
    """True for the first ``round(fraction * num_steps)`` sampling steps (PAHA: r = 50 %).

    i: step index, 0 = the noisiest step. fraction 0 never guides, 1 always does.
    """
    return i < math.floor(fraction * num_steps + 0.5)


def _bcast(sigma, z: "Tensor") -> "Tensor":
    """σ as a scalar or (B,) tensor, shaped to broadcast over z (B, ...)."""
    import torch

    s = torch.as_tensor(sigma, dtype=z.dtype, device=z.device)
    return s.reshape(s.shape + (1,) * (z.dim() - s.dim())) if s.dim() == 1 else s


def nonface_update(z: "Tensor", sigma, grad_nonface_fn: Callable, mask_nonface: "Tensor",
                   lambda_nonface: float) -> "Tensor":
    """PAHA Eq. 8: ẑ^nf = ẑ − λ_nf σ_t ∇D_nf(ẑ, a) ⊙ M_nf. z (B, ...) -> (B, ...)."""
    return z - lambda_nonface * _bcast(sigma, z) * grad_nonface_fn(z) * mask_nonface


def face_update(z: "Tensor", z_nf: "Tensor", sigma, grad_face_fn: Callable, mask_face: "Tensor",
                lambda_face: float) -> "Tensor":
    """PAHA Eq. 9: ẑ^f = ẑ − λ_f σ_t ∇D_f(ẑ^nf, a) ⊙ M_f (gradient at ẑ^nf, applied to ẑ)."""
    return z - lambda_face * _bcast(sigma, z) * grad_face_fn(z_nf) * mask_face


def combine(z: "Tensor", z_nf: "Tensor", z_f: "Tensor") -> "Tensor":
    """PAHA Eq. 10: ẑ* = ẑ^f + ẑ^nf − ẑ (both region updates on one state)."""
    return z_f + z_nf - z


def sequential_guidance(z: "Tensor", sigma, grad_nonface_fn: Callable, grad_face_fn: Callable,
                        mask_nonface: "Tensor", mask_face: "Tensor", lambda_nonface: float,
                        lambda_face: float) -> tuple["Tensor", "Tensor", "Tensor"]:
    """PAHA Eq. 8-10, non-face first. Returns (ẑ*, ẑ^nf, ẑ^f), each shaped like z (B, ...).

    sigma: σ_t = sqrt(1 − ᾱ_t), a float or a (B,) tensor. grad_*_fn(z) -> ∇_z −log s, like z.
    """
    z_nf = nonface_update(z, sigma, grad_nonface_fn, mask_nonface, lambda_nonface)
    z_f = face_update(z, z_nf, sigma, grad_face_fn, mask_face, lambda_face)
    return combine(z, z_nf, z_f), z_nf, z_f


def differential_correction(f_star: "Tensor", f_nf: "Tensor", f_f: "Tensor", mask_nonface: "Tensor",
                            mask_face: "Tensor", lambda_diff: float,
                            form: str = DG_FORM_DEFAULT) -> "Tensor":
    """PAHA Eq. 12: the DG result from the three solver outputs f(ẑ*), f(ẑ^nf), f(ẑ^f).

    literal:  f(ẑ*) + λ_diff [f(ẑ^nf) ⊙ M_f + f(ẑ^f) ⊙ M_nf]                (as printed)
    residual: f(ẑ*) + λ_diff [(f(ẑ^nf) − f(ẑ*)) ⊙ M_f + (f(ẑ^f) − f(ẑ*)) ⊙ M_nf]
    """
    if form == "literal":
        return f_star + lambda_diff * (f_nf * mask_face + f_f * mask_nonface)
    if form == "residual":
        return f_star + lambda_diff * ((f_nf - f_star) * mask_face + (f_f - f_star) * mask_nonface)
    raise ValueError(f"dg_form {form!r} is not one of {', '.join(DG_FORMS)}")


def guided_step(f: Callable, z: "Tensor", sigma, *, mode: str, grad_fns: tuple[Callable, Callable],
                masks: tuple["Tensor", "Tensor"], lambdas: tuple[float, float, float],
                dg_form: str = DG_FORM_DEFAULT) -> "Tensor":
    """One sampling step with PCE: ``none`` f(ẑ); ``sg`` Eq. 8-11; ``dg`` Eq. 8-10 + 12.

    f: one-step solver, z (B, ...) -> z_prev (B, ...). grad_fns: (∇D_nf, ∇D_f); masks: (M_nf, M_f);
    lambdas: (λ_nf, λ_f, λ_diff). Solver calls: 1 for none and sg, 3 for dg.
    """
    if mode == "none":
        return f(z)
    if mode not in MODES:
        raise ValueError(f"guidance mode {mode!r} is not one of {', '.join(MODES)}")
    (g_nf, g_f), (m_nf, m_f), (l_nf, l_f, l_diff) = grad_fns, masks, lambdas
    z_star, z_nf, z_f = sequential_guidance(z, sigma, g_nf, g_f, m_nf, m_f, l_nf, l_f)
    f_star = f(z_star)
    if mode == "sg":
        return f_star
    return differential_correction(f_star, f(z_nf), f(z_f), m_nf, m_f, l_diff, dg_form)


def sync_loss_grad(logit_fn: Callable[["Tensor"], "Tensor"], z: "Tensor") -> "Tensor":
    """∇_z of the "in sync" loss −log s = softplus(−logit), summed over the batch.

    logit_fn: z (B, ...) -> (B,) sync logits (s = sigmoid(logit)). Only z receives a gradient:
    the classifier's parameters are not touched, and the returned tensor is detached. Samples are
    independent, so summing over the batch gives each sample its own gradient.
    """
    import torch
    import torch.nn.functional as F

    with torch.enable_grad():
        x = z.detach().requires_grad_(True)
        loss = F.softplus(-logit_fn(x)).sum()
        (g,) = torch.autograd.grad(loss, x)
    return g.detach()


def make_guide(cfg: GuidanceConfig, grad_fns_for: Callable, masks: tuple["Tensor", "Tensor"],
               ) -> Callable | None:
    """A sampler hook ``guide(f, z, ctx) -> z_prev`` for ``cfg``, or None for mode "none".

    grad_fns_for(ctx) -> (∇D_nf, ∇D_f) bound to the step's conditions (``ctx.t``, ``ctx.cond``).
    ctx: a :class:`csg.diffusion.sampling.StepContext`; σ_t is ``ctx.sigma_t``. Steps outside the
    first ``cfg.guided_fraction`` are plain f(z). Masks follow z's device and dtype.
    """
    if cfg.mode == "none":
        return None

    def guide(f: Callable, z: "Tensor", ctx) -> "Tensor":
        if not is_guided_step(ctx.i, ctx.num_steps, cfg.guided_fraction):
            return f(z)
        ms = tuple(m.to(device=z.device, dtype=z.dtype) for m in masks)
        return guided_step(f, z, ctx.sigma_t, mode=cfg.mode, grad_fns=grad_fns_for(ctx),
                           masks=ms, lambdas=cfg.lambdas, dg_form=cfg.dg_form)

    guide.config = cfg  # type: ignore[attr-defined]
    return guide
