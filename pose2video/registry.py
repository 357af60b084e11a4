"""Built-in renderer registrations (imported by ``pose2video/__init__``).

Kept out of :mod:`pose2video.base` so that the renderer modules can import base without a cycle:
base knows no renderer; this module knows every built-in one, through factories that import the
renderer (and its heavy dependencies) only when called. Factories follow protocol v2:
``factory(*, device="cpu", dtype=None, **options)``.
"""
from __future__ import annotations

from typing import Any

from .base import Renderer, register_renderer


def _warp(*, device: str = "cpu", dtype: str | None = None, **options: Any) -> Renderer:
    from .warp import warp_factory

    return warp_factory(device=device, dtype=dtype, **options)


def _vdm(*, device: str = "cpu", dtype: str | None = None, **options: Any) -> Renderer:
    from .vdm.renderer import vdm_factory

    return vdm_factory(device=device, dtype=dtype, **options)


def _diffusers(*, device: str = "cpu", dtype: str | None = None, **options: Any) -> Renderer:
    from .diffusers_renderer import diffusers_factory

    return diffusers_factory(device=device, dtype=dtype, **options)


register_renderer("warp", _warp, needs="nothing",
                  description="Weight-free mesh warp of the photo (CPU, real time); the default.")
register_renderer("diffusers", _diffusers,
                  needs="Stable Diffusion + ControlNet-openpose weights (AnimateDiff, IP-Adapter "
                        "optional)",
                  description="diffusers ControlNet / AnimateDiff adapter, optionally refining warp.")
register_renderer("vdm", _vdm, needs="nothing (embedded checkpoint; slow on CPU)",
                  description="Native pose-guided latent video diffusion (UniVDM + PAR).")
