"""Stage-1 loss: per-sample keypoint masks (real face crops) and the velocity term (issue #14)."""
from __future__ import annotations

import torch

from audio2pose.par import ParConfig, pose_loss
from csg import keypoints as K


def _batch(B=2, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(B, T, 133, 2, generator=g)
    target = torch.randn(B, T, 133, 2, generator=g)
    logits = torch.randn(B, T, 133, generator=g)
    scores = torch.ones(B, T, 133)
    return pred, target, logits, scores


def test_masked_keypoints_do_not_count_in_either_term():
    pred, target, logits, scores = _batch()
    km = torch.ones(2, 133)
    km[1, :K.FACE.start] = 0          # sample 1: only face and hands count
    base, _ = pose_loss(pred, target, logits, scores, ParConfig(), keypoint_mask=km)
    pred2, logits2 = pred.clone(), logits.clone()
    pred2[1, :, :K.FACE.start] += 100.0   # wild errors where the mask is 0 ...
    logits2[1, :, :K.FACE.start] -= 50.0
    same, _ = pose_loss(pred2, target, logits2, scores, ParConfig(), keypoint_mask=km)
    assert torch.allclose(base, same)     # ... change nothing
    pred2[0, :, :K.FACE.start] += 1.0     # but they count in sample 0
    assert pose_loss(pred2, target, logits2, scores, ParConfig(), keypoint_mask=km)[0] > base


def test_velocity_term_sees_frame_to_frame_noise_and_the_step_out_of_known_frames():
    _, target, logits, scores = _batch()
    cfg = ParConfig()
    offset = target + 0.3                  # a constant error: no velocity error
    l0, logs0 = pose_loss(offset, target, logits, scores, cfg, velocity_weight=1.0)
    assert logs0["velocity"] < 1e-10
    noisy = target + 0.3 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
    assert pose_loss(noisy, target, logits, scores, cfg, velocity_weight=1.0)[1]["velocity"] > 0.01
    fm = torch.ones(2, 6, dtype=torch.bool)
    fm[:, 0] = False                       # frame 0 known: the prediction there is replaced
    _, logs = pose_loss(offset, target, logits, scores, cfg, frame_mask=fm, velocity_weight=1.0)
    assert logs["velocity"] > 0.01         # the jump from the known frame 0 to frame 1 counts
    lv, _ = pose_loss(noisy, target, logits, scores, cfg, velocity_weight=0.0)
    assert lv < pose_loss(noisy, target, logits, scores, cfg, velocity_weight=1.0)[0]
