"""Stage 2: skeleton sequence + reference photo -> video frames (renderer protocol v2).

``get_renderer(name, device=..., dtype=..., **options)`` builds a registered renderer (``warp``:
weight-free, the default; ``diffusers``: ControlNet / AnimateDiff); ``state = r.prepare(photo,
ref_pose)`` once per photo, then ``r.render(state, poses, chunk=16)`` yields chunks of frames.
Heavy dependencies load inside the renderers, so importing is instant. The protocol and registry
are in :mod:`.base`, the built-in registrations in :mod:`.registry`.
"""
from . import registry  # noqa: F401 - registers the built-in renderers
from .base import (CanvasMismatchError, Renderer, UnknownRendererError, available_renderers,
                   get_renderer, register_renderer)

__all__ = ["CanvasMismatchError", "Renderer", "UnknownRendererError", "available_renderers",
           "get_renderer", "register_renderer"]
