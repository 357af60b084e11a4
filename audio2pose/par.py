"""Parts-aware re-weighting (PAR) in keypoint space, and the stage-1 training loss.

PAHA (Wang et al., ACM MM 2025) Eq. 2-3 weights the diffusion loss with a mask M(x) that is
ω1 x Gauss_smooth(confidence) inside the hand and face areas and ω2 on the body. In keypoint space
(METHODS.md, "PAR") each keypoint is one "area":

    w[t, j] = 0                                  if c[t, j] < τ           (unreliable)
    w[t, j] = ω1 · (G_σ * c)[t, j]               if j is face or hand     (Eq. 3, smoothed in time)
    w[t, j] = ω2                                 if j is body or feet

The weighting itself is :func:`csg.regions.par_weights`, shared with stage 2 (per latent pixel);
regions come from :mod:`csg.regions` (its ``PARTS`` partition). The ablation (``enabled=False``) is the plain loss on reliable keypoints: w = 1 where c >= τ, else 0.
The Gaussian smooths the confidence along time (σ in frames), with edge replication.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from csg import regions as R


@dataclass(frozen=True)
class ParConfig:
    enabled: bool = True  # False: ablation, weight 1 on every reliable keypoint
    tau: float = 0.8  # τ, reliability threshold on keypoint confidence (PAHA: 0.8)
    omega_small: float = 10.0  # ω1, face and hands
    omega_body: float = 2.0  # ω2, body and feet
    sigma: float = 1.0  # temporal Gaussian σ of the confidence smoothing, frames (0: none)


def gaussian_smooth_time(c: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian filter along axis 1 of c (B, T, J), radius ceil(3σ), edge replication. Same shape."""
    if sigma <= 0:
        return c
    r = max(1, int(3 * sigma + 0.999))
    x = torch.arange(-r, r + 1, dtype=c.dtype, device=c.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, -1)
    B, T, J = c.shape
    flat = c.permute(0, 2, 1).reshape(B * J, 1, T)
    flat = torch.nn.functional.pad(flat, (r, r), mode="replicate")
    return torch.nn.functional.conv1d(flat, k).reshape(B, J, T).permute(0, 2, 1)


def par_weights(scores: torch.Tensor, cfg: ParConfig) -> torch.Tensor:
    """Per-keypoint loss weights (B, T, 133) from confidences ``scores`` (B, T, 133) in [0, 1]
    (PAHA Eq. 2-3 in keypoint space, see module doc)."""
    reliable = (scores >= cfg.tau).to(scores.dtype)
    if not cfg.enabled:
        return reliable
    small = torch.as_tensor(~R.keypoint_mask(R.BODY), device=scores.device).to(scores.dtype)
    w = R.par_weights(gaussian_smooth_time(scores, cfg.sigma), small, 1 - small,
                      omega1=cfg.omega_small, omega2=cfg.omega_body)
    return w * reliable


def pose_loss(pred: torch.Tensor, target: torch.Tensor, score_logits: torch.Tensor,
              scores: torch.Tensor, cfg: ParConfig, score_weight: float = 0.1,
              frame_mask: torch.Tensor | None = None, keypoint_mask: torch.Tensor | None = None,
              velocity_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Training loss: PAR-weighted MSE on coordinates + BCE on the score head.

    pred, target: (B, T, 133, 2); score_logits, scores: (B, T, 133); frame_mask: (B, T) bool, frames
    that count (False on known frames). Loss = mean(w · ||pred − target||²) + score_weight · BCE.
    keypoint_mask: (B, 133) per-sample keypoint loss mask (csg.data.mix: 0 where a clip does not
    show the keypoint, e.g. the body of a face crop), applied to both terms. velocity_weight > 0
    adds ``mean(w_v · ||Δpred − Δtarget||²)`` over frame pairs (Δ: first difference in time; needs
    an x0 prediction), with known frames replaced by their values so the step out of a known
    prefix (the reference frame) is penalised too.
    Returns (loss, logs) with unweighted MSE per region on reliable keypoints, "coord" and "score".
    """
    w = par_weights(scores, cfg)
    fm = torch.ones(scores.shape[:2], dtype=scores.dtype, device=scores.device) \
        if frame_mask is None else frame_mask.to(scores.dtype)
    km = torch.ones_like(scores[:, 0]) if keypoint_mask is None else keypoint_mask.to(scores.dtype)
    w = w * fm[..., None] * km[:, None]
    se = ((pred - target) ** 2).sum(-1)  # (B, T, 133)
    coord = (w * se).sum() / (fm.sum() * se.shape[-1]).clamp_min(1.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(score_logits, scores.clamp(0, 1),
                                                               reduction="none")
    bm = fm[..., None] * km[:, None]
    score = (bce * bm).sum() / (fm.sum() * bce.shape[-1]).clamp_min(1.0)
    logs = {"coord": coord.detach(), "score": score.detach()}
    total = coord + score_weight * score
    if velocity_weight > 0 and pred.shape[1] > 1:
        # first differences in time of the x0 prediction vs the data's; known frames take their
        # given values (as the sampler pastes them), so the step out of a known prefix counts
        p = torch.where(fm[..., None, None] > 0, pred, target)
        dv = (((p[:, 1:] - p[:, :-1]) - (target[:, 1:] - target[:, :-1])) ** 2).sum(-1)
        wk = par_weights(scores, cfg) * km[:, None]
        wv = torch.minimum(wk[:, 1:], wk[:, :-1]) * torch.maximum(fm[:, 1:], fm[:, :-1])[..., None]
        vel = (wv * dv).sum() / (fm[:, 1:].sum() * dv.shape[-1]).clamp_min(1.0)
        logs["velocity"] = vel.detach()
        total = total + velocity_weight * vel
    reliable = (scores >= cfg.tau).to(se.dtype) * fm[..., None] * km[:, None]
    for name in R.PARTS:
        r = reliable * torch.as_tensor(R.keypoint_mask(name), device=se.device).to(se.dtype)
        logs[name] = ((se * r).sum() / r.sum().clamp_min(1.0)).detach()
    return total, logs
