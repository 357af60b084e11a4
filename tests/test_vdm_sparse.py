"""Pose-guided sparse cross-frame attention (pose2video.vdm.sparse) and its use in the denoiser."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import make_moving_pose, make_reference_keypoints


def _poses(F: int = 7, H: int = 64, W: int = 64) -> np.ndarray:
    return make_moving_pose(F, H, W).keypoints.astype(np.float64)


def test_rigid_align_recovers_rotation_and_translation():
    from pose2video.vdm.sparse import rigid_align

    rng = np.random.default_rng(0)
    a = rng.normal(size=(13, 2)) * 50
    th = 0.4
    rot = np.array([[np.cos(th), np.sin(th)], [-np.sin(th), np.cos(th)]])
    b = a @ rot + np.array([12.0, -7.0])
    np.testing.assert_allclose(rigid_align(a, b), b, atol=1e-9)


def test_pose_distance_ignores_rigid_motion_but_sees_gestures():
    from pose2video.vdm.sparse import pose_distances

    ref = make_reference_keypoints(256, 256).astype(np.float64)
    moved = ref.copy()
    moved[:, 0] += 20  # the whole person slides: same pose
    gesture = ref.copy()
    gesture[9, :2] += [0, -60]  # left wrist raised
    d = pose_distances(np.stack([ref, moved, gesture]))
    assert d[0, 0] == 0 and d[0, 1] < 1e-6 and d[0, 2] > 0.05


def test_topk_past_frames_exactly_k_past_frames_plus_self_and_reference():
    from pose2video.vdm.sparse import topk_past_frames

    rng = np.random.default_rng(1)
    F, k = 9, 3
    dist = rng.random((F, F))
    index, valid = topk_past_frames(dist, k)
    assert index.shape == valid.shape == (F, 2 + k)
    for f in range(F):
        sel = index[f][valid[f]]
        assert sel[0] == f  # itself first
        past = [g for g in sel[1:] if g != 0]
        assert all(g < f for g in past)  # causal: past frames only
        assert len(past) == min(k, max(0, f - 1))  # exactly K past frames when there are K
        if f > 0:
            assert 0 in sel  # the reference is always attended
        cands = [g for g in range(1, f)]
        best = sorted(cands, key=lambda g: (dist[f, g], -g))[:k]
        assert sorted(past) == sorted(best)


def test_token_regions_and_local_mask_never_cross_regions():
    from pose2video.vdm.sparse import (FACE, HAND, REGION_NAMES, allowed, token_regions,
                                       topk_past_frames)

    kp = _poses(6, 128, 128)
    labels = token_regions(kp, (128, 128), (8, 8))
    assert labels.shape == (6, 64)
    assert set(np.unique(labels)) <= set(range(len(REGION_NAMES)))
    assert (labels == FACE).any() and (labels == HAND).any()
    index, valid = topk_past_frames(np.zeros((6, 6)), 2)
    ok = allowed(index, valid, labels)
    F, N, S = ok.shape
    for f in range(F):
        for p in range(N):
            for s in range(S):
                if ok[f, p, s] and s > 0:
                    assert labels[index[f, s], p] == labels[f, p]  # never outside its region
                    assert valid[f, s]
            assert ok[f, p, 0]  # itself always


def _tiny(**kw):
    from tests.test_vdm import tiny_model

    return tiny_model(**kw)


def _inputs(B=1, K=1, T=4, h=4, w=4):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, K, 4, h, w, generator=g), torch.randn(B, T, 4, h, w, generator=g),
            torch.full((B,), 500), torch.rand(B, K + T, 3, 8 * h, 8 * w, generator=g),
            torch.randn(B, K + T, 3, 10, generator=g))


def test_gathered_attention_with_all_frames_equals_dense():
    from pose2video.vdm.sparse import SparsePlan, plan_tensors

    m = _tiny().eval()
    ctx, noisy, t, maps, aud = _inputs()
    F = 5
    full = SparsePlan(np.tile(np.arange(F), (F, 1)), np.ones((F, F), bool), None)
    with torch.no_grad():
        dense = m(ctx, noisy, t, maps, aud).sample
        sparse = m(ctx, noisy, t, maps, aud, sparse=plan_tensors([full])).sample
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-4)


def test_gathered_attention_never_reads_masked_tokens():
    """Changing a key frame's token outside the query's region (or a frame outside its top-K)
    leaves the query's temporal-attention output unchanged."""
    m = _tiny()
    att = m.blocks[0].temporal
    g = torch.Generator().manual_seed(0)
    B, F, N, D = 1, 4, 3, 32
    x = torch.randn(B, F, N, D, generator=g)
    index = torch.tensor([[[0, 0], [1, 0], [2, 0], [3, 1]]])  # frame 3 reads 3 and 1, not 0, 2
    mask = torch.ones(1, F, N, 2, dtype=torch.bool)
    mask[0, 3, 1, 1] = False  # token 1 of frame 3 may not read frame 1 (another region)
    mask[0, 0, :, 1] = False
    with torch.no_grad():
        y = att.gathered(x, index, mask)
        x2 = x.clone()
        x2[0, 2] += 5.0  # not in frame 3's set
        x2[0, 1, 1] += 5.0  # token 1 of frame 1: masked for frame 3's token 1
        y2 = att.gathered(x2, index, mask)
        x3 = x.clone()
        x3[0, 1, 0] += 5.0  # token 0 of frame 1: allowed for frame 3's token 0
        y3 = att.gathered(x3, index, mask)
    torch.testing.assert_close(y2[0, 3, 1], y[0, 3, 1])
    assert not torch.allclose(y3[0, 3, 0], y[0, 3, 0])  # token 0 does read frame 1


@pytest.mark.parametrize("mode", ["global", "global+local"])
def test_renderer_sparse_modes_render_and_are_deterministic(mode):
    from pose2video.vdm.renderer import vdm_factory
    from tests.helpers import make_reference_pose
    from tests.test_vdm import H, W, tiny_options

    photo = np.random.default_rng(0).integers(0, 255, (H, W, 3), np.uint8)
    poses = make_moving_pose(7, H, W)
    outs = []
    for _ in range(2):
        r = vdm_factory(**tiny_options(attention=mode, attention_topk=1))
        st = r.prepare(photo, make_reference_pose(H, W))
        outs.append(np.concatenate(list(r.render(st, poses, progress=False))))
    assert outs[0].shape == (7, H, W, 3)
    np.testing.assert_array_equal(outs[0], outs[1])


def test_unknown_attention_mode_is_refused():
    with pytest.raises(ValueError, match="attention mode"):
        _tiny(attention="sparse")


def test_local_ref_mode_keeps_the_reference_visible_to_every_token():
    from pose2video.vdm.sparse import allowed, build_plan

    kp = _poses(6, 128, 128)
    plan = build_plan(kp, "global+local+ref", 2, (128, 128), (8, 8))
    ok = allowed(plan.index, plan.valid, plan.labels, plan.keep)
    assert plan.keep == 2 and (plan.index[1:, 1] == 0).all()
    assert ok[1:, :, 1].all()  # every token of every later frame reads the reference
    strict = allowed(plan.index, plan.valid, plan.labels)
    assert not strict[1:, :, 1].all()  # the plain local mask does cut some of them off
