"""The ``Renderer`` protocol and the renderer registry.

A renderer turns a reference photo and a skeleton sequence into video frames. It streams: ``render``
is a generator of *windows*, each a ``(n, H, W, 3)`` uint8 array with ``1 <= n <= window``; the
windows concatenated in order are exactly ``len(poses)`` frames. Memory therefore stays bounded for
any sequence length, and the caller (``csg render``, the pipeline) writes each window as it comes.

Renderers are registered by name with a *factory*; the factory imports heavy dependencies (torch,
diffusers, mediapipe) inside itself, so importing this module costs nothing::

    r = get_renderer("warp", window=16)
    for frames in r.render(photo, poses, ref_pose=ref):
        ...
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

import numpy as np

from csg.errors import ConfigError, InputError
from csg.pose import PoseSequence

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""``callback(frames_done, frames_total)``, called after each window."""


class UnknownRendererError(ConfigError, ValueError):
    """``get_renderer`` was given a name that is not registered.

    A :class:`ValueError` (the house rule for registries) and a :class:`csg.errors.ConfigError`, so the
    CLI prints it as one line.
    """


class CanvasMismatchError(InputError):
    """The skeleton canvas (width x height) differs from the reference photo's size."""


@runtime_checkable
class Renderer(Protocol):
    """Reference photo + skeleton sequence -> frames, window by window.

    Attributes:
        name: the registry name (e.g. ``"warp"``).
        needs: what it needs beyond this package, in words (``"nothing"``, ``"ControlNet weights"``).
    """

    name: str
    needs: str

    def render(self, ref_image: np.ndarray, poses: PoseSequence, *,
               ref_pose: PoseSequence | None = None, audio: np.ndarray | None = None,
               generator: Any = None, callback: ProgressCallback | None = None,
               progress: bool = True) -> Iterator[np.ndarray]:
        """Yield ``(n, H, W, 3)`` uint8 windows; together ``len(poses)`` frames at ``poses.fps``.

        ref_image: (H, W, 3) uint8 RGB, H == poses.height and W == poses.width.
        ref_pose: the photo's own skeleton (T=1) on the same canvas; extracted when None.
        audio: (N,) float32 at 16 kHz, for renderers that condition on it (optional).
        generator: a ``torch.Generator`` / ``numpy.random.Generator`` for stochastic renderers.
        """
        ...


@dataclass(frozen=True)
class RendererSpec:
    name: str
    factory: Callable[..., Renderer]
    needs: str
    description: str


_REGISTRY: dict[str, RendererSpec] = {}


def register_renderer(name: str, factory: Callable[..., Renderer], needs: str,
                      description: str) -> None:
    """Register ``factory(**cfg) -> Renderer`` under ``name`` (re-registering replaces it)."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"renderer name {name!r} must be alphanumeric (with - or _)")
    _REGISTRY[name] = RendererSpec(name, factory, needs, description)


def available_renderers() -> list[tuple[str, str, str]]:
    """``[(name, needs, description), ...]`` sorted by name."""
    return [(s.name, s.needs, s.description) for s in sorted(_REGISTRY.values(),
                                                              key=lambda s: s.name)]


def get_renderer(name: str, **cfg: Any) -> Renderer:
    """Build the renderer registered as ``name`` with keyword options ``cfg``.

    Raises :class:`UnknownRendererError` (a ``ValueError``) listing the available names.
    """
    spec = _REGISTRY.get(name)
    if spec is None:
        names = ", ".join(n for n, _, _ in available_renderers()) or "(none)"
        raise UnknownRendererError(f"renderer {name!r} is not registered; available: {names} "
                                   "(see `csg renderers`)")
    return spec.factory(**cfg)


# --- helpers shared by renderers -----------------------------------------------------------------
def check_inputs(ref_image: np.ndarray, poses: PoseSequence,
                 ref_pose: PoseSequence | None = None) -> None:
    """Validate a render call: image dtype/shape and that every canvas equals the photo size.

    Raises :class:`csg.errors.ImageError`-style :class:`CanvasMismatchError` naming both sizes.
    """
    img = np.asarray(ref_image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InputError(f"reference image: expected (H, W, 3) uint8 RGB, got {img.shape} "
                         f"{img.dtype}")
    if len(poses) == 0:
        raise InputError("pose: the sequence has no frames")
    h, w = img.shape[:2]
    for what, p in (("pose", poses), ("reference pose", ref_pose)):
        if p is not None and (p.height, p.width) != (h, w):
            raise CanvasMismatchError(
                f"{what}: canvas is {p.width}x{p.height} (width x height) but the reference photo is "
                f"{w}x{h}; generate the skeleton for this photo, or fit it onto the photo with "
                "`csg render --retarget`")


def window_bounds(num_frames: int, window: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(num_frames)`` in chunks of at most ``window``."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return [(a, min(a + window, num_frames)) for a in range(0, num_frames, window)]


def reference_pose_for(ref_image: np.ndarray, ref_pose: PoseSequence | None) -> PoseSequence:
    """``ref_pose`` if given, else the photo's skeleton from :func:`csg.extract.extract_pose`."""
    if ref_pose is not None:
        return ref_pose
    from csg.extract import extract_pose

    log.info("extracting the reference skeleton from the photo")
    return extract_pose(ref_image)


class ProgressBar:
    """A tqdm bar over frames when ``enabled`` (lazy import), else nothing. Context manager."""

    def __init__(self, total: int, enabled: bool, desc: str) -> None:
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="frame", leave=False)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.close()


# --- built-in registrations (factories import lazily) ---------------------------------------------
def _warp_factory(**cfg: Any) -> Renderer:
    from .warp import WarpConfig, WarpRenderer

    return WarpRenderer(_config(WarpConfig, cfg))


def _diffusers_factory(**cfg: Any) -> Renderer:
    from .diffusers_renderer import DiffusersConfig, DiffusersRenderer

    components = cfg.pop("components", None)
    return DiffusersRenderer(_config(DiffusersConfig, cfg), components=components)


def _config(cls: type, cfg: dict[str, Any] | Any) -> Any:
    """A config dataclass from keyword options (strict), or pass an instance through."""
    from csg.config import from_dict

    if isinstance(cfg.get("config"), cls) and len(cfg) == 1:
        return cfg["config"]
    return from_dict(cls, cfg, f"renderer options ({cls.__name__})")


register_renderer("warp", _warp_factory, needs="nothing",
                  description="Weight-free mesh warp of the photo (CPU, real time); the default.")
register_renderer("diffusers", _diffusers_factory,
                  needs="Stable Diffusion + ControlNet-openpose weights (AnimateDiff, IP-Adapter "
                        "optional)",
                  description="diffusers ControlNet / AnimateDiff adapter, optionally refining warp.")
