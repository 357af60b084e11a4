"""Stage-2 PAR: PAHA Eq. 2-3 loss weights per latent pixel, through the shared :mod:`csg.regions`.

For each target frame, on the latent grid (h, w) of a frame whose skeleton lives on ``canvas_hw``:

    M(x) = ω1 · min(1, Gauss_smooth(Σ c_i)(x))   inside the hand and face circles (radius r)
    M(x) = ω2                                   inside the body rectangle
    M(x) = 1                                    elsewhere

with keypoints counted only where c_i >= τ (:func:`csg.regions.raster_masks`,
:func:`csg.regions.confidence_map`, combined by :func:`csg.regions.par_weights`, the function stage 1
uses too). r is PAHA's 10 px at 512² (``radius_512``), scaled to the canvas and then to the latent
grid, but never below ``MIN_RADIUS_CELLS`` latent cells: at 128 px the scaled radius is 0.3 of a
latent cell and most keypoints would then cover no cell at all.

Two deliberate differences from the paper, both forced by the coarse latent grid (1/8 of the frame):
the summed confidence is clipped at 1 (21 hand points fall into a few cells, and an unclipped sum
would weight a hand cell ~200x), and σ of the smoothing is in latent cells (``SIGMA_CELLS``).
"""
from __future__ import annotations

import numpy as np
import torch

MIN_RADIUS_CELLS = 0.75
"""Smallest circle radius on the latent grid (cells): covers at least the keypoint's own cell."""
SIGMA_CELLS = 0.5
"""σ of Gauss_smooth on the latent grid (cells)."""


def _radius(cfg, canvas_hw: tuple[int, int], grid_hw: tuple[int, int]) -> float:
    """Circle radius as the fraction of the canvas long side that csg.regions takes."""
    r = cfg.radius_512 / 512.0  # fraction of the long side
    cell = max(canvas_hw) / max(grid_hw) if max(grid_hw) else 1.0  # canvas px per latent cell
    return max(r, MIN_RADIUS_CELLS * cell / max(canvas_hw))


def frame_par(frame: np.ndarray, canvas_hw: tuple[int, int], grid_hw: tuple[int, int],
              cfg) -> dict[str, np.ndarray]:
    """One skeleton (133, 3) -> float32 (h, w) maps: ``weight`` (M of Eq. 2-3), and the 0/1 areas
    ``face``, ``hands``, ``body`` (the rectangle minus face and hands) and ``rest``."""
    from csg import regions as R

    radius = _radius(cfg, canvas_hw, grid_hw)
    m = R.raster_masks(frame, canvas_hw, grid_hw, regions=(R.BODY, R.FACE, R.HANDS),
                       threshold=cfg.tau, radius=radius)
    conf = sum(R.confidence_map(frame, reg, canvas_hw, grid_hw, threshold=cfg.tau, radius=radius,
                                sigma=SIGMA_CELLS) for reg in (R.FACE, R.HANDS))
    small = np.maximum(m[R.FACE], m[R.HANDS])
    body = m[R.BODY] * (1 - small)
    if cfg.enabled:
        w = R.par_weights(np.minimum(conf, 1.0), small, m[R.BODY], omega1=cfg.omega_small,
                          omega2=cfg.omega_body, outside=1.0)
    else:
        w = np.ones(grid_hw, np.float32)
    return {"weight": np.asarray(w, np.float32), "face": m[R.FACE],
            "hands": m[R.HANDS] * (1 - m[R.FACE]), "body": body,
            "rest": (1 - np.maximum(small, m[R.BODY])).astype(np.float32)}


def latent_par(poses, canvas_hw: tuple[int, int], grid_hw: tuple[int, int],
               cfg) -> dict[str, torch.Tensor]:
    """(B, T, 133, 3) skeletons (numpy or torch, pixels on ``canvas_hw``) -> dict of (B, T, h, w)
    float32 tensors (:func:`frame_par` keys)."""
    p = poses.detach().cpu().numpy() if hasattr(poses, "detach") else np.asarray(poses)
    B, T = p.shape[:2]
    per = [frame_par(p[b, t], canvas_hw, tuple(grid_hw), cfg) for b in range(B) for t in range(T)]
    return {k: torch.from_numpy(np.stack([d[k] for d in per]).reshape(B, T, *grid_hw))
            for k in per[0]}


def latent_par_weights(poses, canvas_hw, grid_hw, cfg) -> torch.Tensor:
    """(B, T, h, w) PAR loss weights (module doc)."""
    return latent_par(poses, canvas_hw, grid_hw, cfg)["weight"]


def par_loss(se: torch.Tensor, poses, canvas_hw, cfg, *,
             maps: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """PAR-weighted mean of the per-latent-pixel squared error ``se`` (B, T, h, w) and the
    unweighted MSE per area (face, hands, body, rest) for the logs. ``maps``: the same maps
    precomputed, (B, T, 5, h, w) in ``pose2video.vdm.data.PAR_KEYS`` order (the latent cache);
    their weight channel is replaced by ones when ``cfg.enabled`` is False."""
    if maps is None:
        maps = {k: v.to(se.device, se.dtype) for k, v in
                latent_par(poses, canvas_hw, se.shape[-2:], cfg).items()}
    else:
        from .data import PAR_KEYS

        maps = {k: maps[:, :, i].to(se.device, se.dtype) for i, k in enumerate(PAR_KEYS)}
        if not cfg.enabled:
            maps["weight"] = torch.ones_like(se)
    loss = (maps["weight"] * se).mean()
    d = se.detach()
    logs = {f"mse_{k}": (d * maps[k]).sum() / maps[k].sum().clamp_min(1.0)
            for k in ("face", "hands", "body", "rest")}
    return loss, logs
