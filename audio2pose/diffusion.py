"""Moved to :mod:`csg.diffusion.schedule` (shared by both stages); this alias keeps old imports
working and will be removed once nothing imports it. Import ``csg.diffusion.schedule`` instead."""
from csg.diffusion.schedule import (PREDICTIONS, cfg_combine, cosine_alphas_cumprod,  # noqa: F401
                                    ddim_step, ddim_timesteps, q_sample, to_x0_eps,
                                    training_target, v_target)
