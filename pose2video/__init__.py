"""Stage 2: skeleton sequence + reference photo -> video frames.

``get_renderer(name, **options)`` builds a registered renderer (``warp``: weight-free, the
default; ``diffusers``: ControlNet / AnimateDiff); ``renderer.render(photo, poses, ref_pose=...)``
yields windows of frames. Heavy dependencies load inside the renderers, so importing is instant.
"""
from .base import (CanvasMismatchError, Renderer, UnknownRendererError, available_renderers,
                   get_renderer, register_renderer)

__all__ = ["CanvasMismatchError", "Renderer", "UnknownRendererError", "available_renderers",
           "get_renderer", "register_renderer"]
