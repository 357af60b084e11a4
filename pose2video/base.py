"""The ``Renderer`` protocol (v2, /work/notes/PROTOCOL_V2.md) and the renderer registry.

A renderer turns a reference photo and a skeleton sequence into video frames, in two calls:

- ``state = r.prepare(ref_image, ref_pose)`` once per photo: validates and builds everything
  photo-specific (warp: the rig, masks, fills; a video model: the encoded reference);
- ``r.render(state, poses, *, audio, generator, callback, progress, chunk)`` as often as needed:
  a generator of ``(n, H, W, 3)`` uint8 arrays, ``1 <= n <= chunk``, that concatenate to exactly
  ``len(poses)`` frames. ``chunk`` is only the streaming granularity; the model's own temporal
  ``window`` and ``overlap`` (attributes) are independent of it. A frame range is rendered by
  passing ``poses.slice(a, b)`` (and the matching audio).

Audio, when given, is (N,) float32 mono at :data:`AUDIO_RATE` (``csg.audio.SAMPLE_RATE``, 16 kHz),
aligned so pose frame 0 starts at sample 0. Factories receive ``device`` and ``dtype`` keywords
(``get_renderer(name, device="cuda", dtype="float16", **options)``); a renderer that does not use
them ignores them.

This module holds the protocol, the registry mechanism and helpers; it imports no renderer.
The built-in renderers are registered by :mod:`pose2video.registry` (imported by the package), with
factories that import heavy dependencies (torch, diffusers, mediapipe) only when called::

    r = get_renderer("warp")
    state = r.prepare(photo, ref_pose)
    for frames in r.render(state, poses, chunk=16):
        ...
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

import numpy as np

from csg.audio import SAMPLE_RATE as AUDIO_RATE
from csg.errors import ConfigError, InputError
from csg.pose import PoseSequence

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""``callback(frames_done, frames_total)``, called after each yielded chunk."""
DEFAULT_CHUNK = 16


class UnknownRendererError(ConfigError, ValueError):
    """``get_renderer`` was given a name that is not registered.

    A :class:`ValueError` (the house rule for registries) and a :class:`csg.errors.ConfigError`, so the
    CLI prints it as one line.
    """


class CanvasMismatchError(InputError):
    """The skeleton canvas (width x height) differs from the reference photo's size."""


@runtime_checkable
class Renderer(Protocol):
    """Reference photo + skeleton sequence -> frames (protocol v2, module doc).

    Attributes:
        name: the registry name (e.g. ``"warp"``).
        needs: what it needs beyond this package, in words (``"nothing"``, ``"ControlNet weights"``).
        window: the model's temporal window (frames it processes together; 1 for warp-like).
        overlap: frames carried between model windows (0 when windows are independent).
        uses_generator (optional, default True): False for a renderer that draws no random
            numbers (``generator`` accepted and ignored); then the pipeline builds no torch
            generator for it, so ``csg run`` need not import torch in its main process.

    Optional, for renderers whose frames are independent once the whole sequence is planned
    (``warp``): ``plan(state, poses, *, audio, generator)`` does the whole-sequence work and
    returns a picklable plan; ``render_span(state, plan, start, stop, out=None)`` draws frames
    ``start:stop`` of it, the same bytes in any order or process. ``csg run`` then draws spans in
    its helper process too (:mod:`pipeline.parallel`).
    """

    name: str
    needs: str
    window: int
    overlap: int

    def prepare(self, ref_image: np.ndarray, ref_pose: PoseSequence | None = None) -> Any:
        """Once per photo. ref_image (H, W, 3) uint8 RGB; ref_pose (T=1) on the same canvas,
        extracted (csg.extract) when None. Returns the renderer's own state object."""
        ...

    def render(self, state: Any, poses: PoseSequence, *, audio: np.ndarray | None = None,
               generator: Any = None, callback: ProgressCallback | None = None,
               progress: bool = True, chunk: int = DEFAULT_CHUNK) -> Iterator[np.ndarray]:
        """Yield (n, H, W, 3) uint8 arrays, 1 <= n <= chunk, ``len(poses)`` frames in all.

        audio: (N,) float32 at :data:`AUDIO_RATE`; generator: a ``torch.Generator`` for
        stochastic renderers; callback(done, total) after each chunk.
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
    """Register ``factory(*, device="cpu", dtype=None, **options) -> Renderer`` under ``name``
    (re-registering replaces it)."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"renderer name {name!r} must be alphanumeric (with - or _)")
    _REGISTRY[name] = RendererSpec(name, factory, needs, description)


def available_renderers() -> list[tuple[str, str, str]]:
    """``[(name, needs, description), ...]`` sorted by name."""
    return [(s.name, s.needs, s.description) for s in sorted(_REGISTRY.values(),
                                                              key=lambda s: s.name)]


def get_renderer(name: str, *, device: str | None = None, dtype: str | None = None,
                 **options: Any) -> Renderer:
    """Build the renderer registered as ``name``: ``factory(device=, dtype=, **options)``.

    ``device`` / ``dtype`` are passed only when given (a factory's own default, e.g. "cpu",
    applies otherwise). Raises :class:`UnknownRendererError` (a ``ValueError``) listing the
    available names; unknown options raise :class:`csg.errors.ConfigError` from the factory
    (see :func:`config_from_options`).
    """
    spec = _REGISTRY.get(name)
    if spec is None:
        names = ", ".join(n for n, _, _ in available_renderers()) or "(none)"
        raise UnknownRendererError(f"renderer {name!r} is not registered; available: {names} "
                                   "(see `csg renderers`)")
    kw = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
    return spec.factory(**kw, **options)


def config_from_options(cls: type, options: dict[str, Any]) -> Any:
    """A renderer's config dataclass from keyword options (strict: an unknown key is a one-line
    :class:`csg.errors.ConfigError`), or ``options={"config": instance}`` passed through."""
    from csg.config import from_dict

    if isinstance(options.get("config"), cls) and len(options) == 1:
        return options["config"]
    return from_dict(cls, options, f"renderer options ({cls.__name__})")


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


def check_canvas(poses: PoseSequence, size_hw: tuple[int, int]) -> None:
    """render()'s check: ``poses`` is non-empty and on the prepared photo's (H, W) canvas."""
    if len(poses) == 0:
        raise InputError("pose: the sequence has no frames")
    h, w = size_hw
    if (poses.height, poses.width) != (h, w):
        raise CanvasMismatchError(
            f"pose: canvas is {poses.width}x{poses.height} (width x height) but the reference photo "
            f"is {w}x{h}; generate the skeleton for this photo, or fit it onto the photo with "
            "`csg render --retarget`")


def check_audio(audio: np.ndarray | None) -> np.ndarray | None:
    """``audio`` as (N,) float32 (the protocol's :data:`AUDIO_RATE` mono), or None."""
    if audio is None:
        return None
    a = np.asarray(audio, np.float32)
    if a.ndim != 1:
        raise InputError(f"audio: expected (N,) mono samples at {AUDIO_RATE} Hz, got shape "
                         f"{a.shape}")
    return a


def window_bounds(num_frames: int, window: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(num_frames)`` in chunks of at most ``window``
    (:func:`csg.diffusion.windows.chunk_bounds`)."""
    from csg.diffusion.windows import chunk_bounds

    return chunk_bounds(num_frames, window)


def rechunk(blocks: Iterator[np.ndarray], chunk: int) -> Iterator[np.ndarray]:
    """Re-cut a stream of (n_i, H, W, 3) arrays into arrays of exactly ``chunk`` frames (the last
    one shorter): the streaming chunk, independent of how a model produced its windows."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    buf: list[np.ndarray] = []
    n = 0
    for b in blocks:
        buf.append(b)
        n += len(b)
        while n >= chunk:
            cat = np.concatenate(buf) if len(buf) > 1 else buf[0]
            yield cat[:chunk]
            rest = cat[chunk:]
            buf, n = ([rest] if len(rest) else []), len(rest)
    if n:
        yield np.concatenate(buf) if len(buf) > 1 else buf[0]


def reference_pose_for(ref_image: np.ndarray, ref_pose: PoseSequence | None,
                       source: str = "image") -> PoseSequence:
    """``ref_pose`` if given, else the photo's skeleton from :func:`csg.extract.extract_pose`."""
    if ref_pose is not None:
        return ref_pose
    from csg.extract import extract_pose

    log.info("extracting the reference skeleton from the photo")
    return extract_pose(ref_image, source=source)


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
