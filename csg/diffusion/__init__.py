"""The diffusion ground floor shared by both stages: pure, shape-agnostic functions.

- :mod:`.schedule`: ᾱ schedules (cosine, linear), q-sample, x0/eps/v conversions, the DDIM step,
  timestep sets (trailing, leading, linspace, an explicit list);
- :mod:`.sampling`: ``ddim_sample`` with a typed :class:`~.sampling.StepContext`, known values,
  the guidance hook, and classifier-free guidance as a wrapper (``classifier_free``);
- :mod:`.windows`: overlapping windows, carried frames, blend weights;
- :mod:`.guidance`: PAHA parts consistency enhancement (SG / DG, Eq. 8-12) and ``GuidanceConfig``;
- :mod:`.embeddings`: sinusoidal position / timestep embeddings.

Import the submodules (``from csg.diffusion import schedule``); this package imports nothing heavy.
"""
