"""``PoseDenoiser``: a small transformer encoder that denoises whole-body skeleton sequences.

One token per frame plus one reference token. A frame token is the sum of

- the noisy pose z_t (133 x 2: the motion ``rel - ref_rel`` of the reference-relative coordinates of
  :mod:`.normalize`, standardised, see :meth:`PoseDenoiser.standardize`),
- the frame's audio features (or a learned null embedding when the condition is dropped, for
  classifier-free guidance; Ho & Salimans 2022),
- the known-prefix input: clean values of frames given in advance and a learned "given" embedding on
  those frames (so the model knows which frames are fixed: window continuation and frame 0 = ref),
- the reference skeleton embedding, the timestep embedding and a sinusoidal frame position (no
  learned table, so windows longer than the training ones still get positions).

Two heads: the coordinate prediction (x0 or v, per ``prediction_type``) and per-keypoint score logits
(sigmoid -> confidence). The motion is standardised with the statistics held in the ``coord_mean``
(per coordinate) / ``coord_std`` (per region) buffers, saved with the weights. The reference enters
unstandardised (reference-relative coordinates, O(1) by construction; 0 where it is unreliable).
"""
from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from csg.keypoints import NUM_KEYPOINTS

from .denoiser import DenoiserCore, DenoiserOutput, PoseDenoiserNet, sinusoidal

__all__ = ["DenoiserOutput", "PoseDenoiser", "PoseDenoiserNet", "sinusoidal"]


class PoseDenoiser(DenoiserCore, ModelMixin, ConfigMixin):
    """Audio- and reference-conditioned skeleton denoiser.

    Layers and forward live in :class:`audio2pose.denoiser.DenoiserCore`, shared with the plain
    :class:`~audio2pose.denoiser.PoseDenoiserNet` that inference loads without diffusers
    (:func:`audio2pose.denoiser.load_denoiser`); this class is the one to train, save and
    ``from_pretrained``.

    Args (all keyword-only, saved in ``config.json``):
        audio_dim: per-frame audio feature size (``csg.features.feature_dim``).
        dim, depth, heads, ff_mult, dropout: transformer width, layers, heads, MLP ratio, dropout.
        prediction_type: ``"sample"`` (x0) or ``"v_prediction"``.
        num_train_timesteps: length of the cosine schedule the model was trained with.
    """

    @register_to_config
    def __init__(self, *, audio_dim: int = 80, dim: int = 192, depth: int = 4, heads: int = 4,
                 ff_mult: int = 4, dropout: float = 0.0, prediction_type: str = "sample",
                 num_train_timesteps: int = 1000, num_keypoints: int = NUM_KEYPOINTS):
        super().__init__()
        self._build(audio_dim=audio_dim, dim=dim, depth=depth, heads=heads, ff_mult=ff_mult,
                    dropout=dropout, num_keypoints=num_keypoints)

    @classmethod
    def from_net(cls, net: PoseDenoiserNet) -> "PoseDenoiser":
        """The :class:`PoseDenoiserNet` ``net`` as a ``PoseDenoiser`` (same config and weights,
        float32, CPU), e.g. to ``save_pretrained`` a model loaded for inference."""
        from dataclasses import asdict

        m = cls(**asdict(net.config))
        m.load_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in net.state_dict().items()},
                          strict=True)
        return m.train(net.training)
