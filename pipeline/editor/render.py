"""Stage 2 for the editor: render one frame, or a frame range to mp4, with any registered renderer.

Protocol v2: the renderer's ``prepare(photo, ref_pose)`` runs once per renderer and is cached; a
range is ``render(state, poses.slice(a, b), audio=<matching slice>)``. Renderers that only have the
older ``render(photo, poses, ref_pose=...)`` call are still driven.
The photo is resized so its longer side is at most ``max_side`` (the poses are scaled with it), as
``csg run`` does.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterator

import numpy as np

from csg.canvas import rescale_pose, resize_to_working
from csg.pose import PoseSequence

logger = logging.getLogger(__name__)


class RenderCache:
    """Renderers built on first use, each prepared once for the photo.

    image: (H, W, 3) uint8; ref_pose: a callable returning the photo's skeleton (T=1) on the photo's
    canvas (extraction is slow, so it is asked for only when a renderer is first prepared);
    options: per renderer name, keyword options over ``configs/pose2video/<name>.yaml``.
    """

    def __init__(self, image: np.ndarray, ref_pose: Callable[[], PoseSequence], *,
                 max_side: int = 512, device: str = "cpu",
                 options: dict[str, dict[str, Any]] | None = None):
        self.image = resize_to_working(image, max_side)
        self.size_hw = self.image.shape[:2]
        self._ref_pose = ref_pose
        self.device = device
        self.options = dict(options or {})  # name -> options over the packaged YAML
        self._built: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> tuple[Any, Any]:
        """(renderer, state or None for a v1 renderer), built and prepared once."""
        with self._lock:
            if name not in self._built:
                from pose2video import get_renderer
                from pose2video.cli import renderer_options

                opts = {**renderer_options(name, None), **self.options.get(name, {})}
                if self.device != "cpu":  # protocol v2 factories take device=
                    opts["device"] = self.device
                r = get_renderer(name, **opts)
                ref = rescale_pose(self._ref_pose(), *self.size_hw)
                state = r.prepare(self.image, ref) if hasattr(r, "prepare") else None
                self._built[name] = (r, state)
            return self._built[name]

    def frames(self, name: str, poses: PoseSequence, *, audio: np.ndarray | None = None,
               seed: int = 0, callback: Callable[[int, int], None] | None = None
               ) -> Iterator[np.ndarray]:
        """Yield (n, h, w, 3) uint8 chunks rendering ``poses`` (on the photo's canvas)."""
        import torch

        r, state = self.get(name)
        work = rescale_pose(poses, *self.size_hw)
        gen = torch.Generator().manual_seed(int(seed))
        if state is not None:
            yield from r.render(state, work, audio=audio, generator=gen, callback=callback,
                                progress=False)
        else:  # protocol v1
            ref = rescale_pose(self._ref_pose(), *self.size_hw)
            yield from r.render(self.image, work, ref_pose=ref, audio=audio, generator=gen,
                                callback=callback, progress=False)

    def frame(self, name: str, poses: PoseSequence, t: int, seed: int = 0) -> np.ndarray:
        """One (h, w, 3) uint8 frame: frame ``t`` of ``poses``."""
        return np.concatenate(list(self.frames(name, poses.slice(t, t + 1), seed=seed)))[0]
