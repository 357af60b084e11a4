"""Known-answer tests for the stage-1 metrics (pure numpy, tiny inputs)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from csg import keypoints as K
from eval import pose_metrics as PM
from eval import sync as S
from eval.frechet import frechet_distance, frechet_distance_features, gaussian_stats
from tests.helpers import make_moving_pose, make_reference_keypoints


# --- Fréchet ----------------------------------------------------------------------------------------
def test_frechet_1d_gaussians_match_closed_form():
    # 1-D: d² = (μ1-μ2)² + σ1² + σ2² - 2 σ1 σ2 = (μ1-μ2)² + (σ1-σ2)²
    d = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert d == pytest.approx(9.0 + (2.0 - 3.0) ** 2, rel=1e-9)


def test_frechet_identical_sets_zero_and_shifted_positive(rng):
    a = rng.normal(size=(200, 6))
    assert frechet_distance_features(a, a) == pytest.approx(0.0, abs=1e-8)
    shifted = frechet_distance_features(a, a + 0.5)
    assert shifted == pytest.approx(6 * 0.25, rel=1e-6)  # mean shift only: ‖Δμ‖²


def test_frechet_survives_singular_covariances(rng):
    a = rng.normal(size=(5, 16))  # N < D: rank-deficient covariance
    assert math.isfinite(frechet_distance_features(a, a + 1.0))
    with pytest.raises(ValueError):
        gaussian_stats(a[:1])


# --- BAS --------------------------------------------------------------------------------------------
def test_bas_aligned_is_one_and_shifted_less():
    onsets = np.array([10, 30, 55, 80])
    assert S.beat_alignment_score(onsets, onsets, sigma=3) == 1.0
    off = S.beat_alignment_score(onsets + 3, onsets, sigma=3)
    assert off == pytest.approx(math.exp(-9 / 18))
    assert S.beat_alignment_score(onsets + 6, onsets, sigma=3) < off
    assert math.isnan(S.beat_alignment_score(np.array([]), onsets, sigma=3))


def test_kinematic_beats_found_at_speed_minima_of_a_gesture():
    T = 100
    beats = np.array([20, 45, 70])
    kp = np.repeat(make_reference_keypoints(48 * 5, 64 * 5)[None], T, axis=0)
    # wrist/hand displacement whose speed is zero exactly at the beats: x = cumulative |t - beat|
    speed = np.min(np.abs(np.arange(T)[:, None] - beats[None]), axis=1).astype(float)
    pos = np.cumsum(speed) * 0.5
    kp[:, K.RIGHT_HAND, 0] += pos[:, None]
    kp[:, K.RIGHT_WRIST, 0] += pos
    sp = S.joint_speed(kp[..., :2], scale=PM.clip_torso(kp[..., :2]), smooth_sigma=1.0)
    found = S.kinematic_beats(sp, min_prominence=0.002)
    assert np.all(np.min(np.abs(found[:, None] - beats[None]), axis=1) <= 1), found
    assert len(found) == len(beats)
    assert S.beat_alignment_score(found, beats, sigma=3) > 0.9
    assert S.beat_alignment_score(found, beats + 12, sigma=3) < 0.1


# --- lip sync ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [-3, -1, 0, 2, 4])
def test_lipsync_offset_sign(k, rng):
    T = 120
    audio = np.convolve(rng.normal(size=T + 20), np.ones(4) / 4, mode="same")
    # mouth[t] = audio[t + k]: the mouth shows now what the audio does k frames later (leads).
    full = np.convolve(rng.normal(size=T + 40), np.ones(4) / 4, mode="same")
    audio = full[10:10 + T]
    mouth = full[10 + k:10 + k + T]
    res = S.lagged_correlation(mouth, audio, max_lag=4)
    assert res.offset == k
    assert res.r == pytest.approx(1.0, abs=1e-9)
    ctrl = S.lagged_correlation(mouth, S.circular_shift_control(audio), max_lag=4)
    assert ctrl.r < 0.6


def test_lipsync_on_keypoints_through_mouth_opening():
    T = 60
    seq = np.repeat(make_reference_keypoints(480, 640)[None], T, axis=0)
    env = np.sin(np.arange(T) / 3.0) + 1.0
    lower = [K.INNER_LIPS.start + 5, K.INNER_LIPS.start + 6, K.INNER_LIPS.start + 7]
    seq[:, lower, 1] += 5.0 * np.roll(env, -2)[:, None]  # mouth leads by 2 frames
    mouth = K.mouth_opening(seq[..., :2])
    res = S.lagged_correlation(mouth, env, max_lag=4)
    assert res.offset == 2 and res.r > 0.99


# --- pose metrics -----------------------------------------------------------------------------------
def test_pck_and_l1_identity_and_offset():
    gt = make_moving_pose(12, height=48 * 5, width=64 * 5).keypoints
    res = PM.pck_by_region(gt[..., :2], gt)
    assert all(v == 1.0 for v in res.values()), res
    assert PM.l1_error(gt, gt) == 0.0
    torso = K.torso_size(gt[..., :2].astype(np.float64))
    moved = gt.copy()
    moved[..., 0] += 0.07 * torso[:, None]  # between the two thresholds
    res = PM.pck_by_region(moved[..., :2], gt)
    assert res["pck@0.05"] == 0.0 and res["pck@0.1"] == 1.0
    assert PM.l1_error(moved, gt) == pytest.approx(0.035, rel=1e-3)  # mean of |dx| and |dy|=0
    low = gt.copy()
    low[:, K.HANDS, 2] = 0.0  # unconfident hands are not counted
    assert math.isnan(PM.pck(gt[..., :2], low, 0.1, joints=PM.REGIONS["hands"]))


def test_jitter_confidence_and_diversity():
    still = np.repeat(make_reference_keypoints(240, 320)[None], 10, axis=0)
    assert PM.jitter(still) == 0.0
    moving = make_moving_pose(10, 240, 320).keypoints
    assert PM.jitter(moving) > 0.0
    assert PM.mean_confidence(still, K.HANDS) == pytest.approx(0.95)
    f = np.ones((5, 4))
    assert PM.diversity(f) == 0.0
    assert PM.diversity(np.array([[0.0, 0.0], [1.0, 2.0]])) == 3.0


def test_normalise_clip_is_position_and_scale_free():
    kp = make_moving_pose(8, 240, 320).keypoints
    moved = kp.copy()
    moved[..., :2] = moved[..., :2] * 2.0 + 17.0
    np.testing.assert_allclose(PM.normalise_clip(kp), PM.normalise_clip(moved), atol=1e-5)
    assert PM.normalise_clip(kp).shape == (8, 123, 2)


# --- autoencoder + FGD ------------------------------------------------------------------------------
def test_pose_autoencoder_fgd_identity_shift_and_roundtrip(tmp_path):
    import torch

    from eval.pose_autoencoder import PoseAutoencoder, encode_clips, load_pose_autoencoder

    torch.manual_seed(0)  # test-only: initialise the tiny model reproducibly
    ae = PoseAutoencoder(window=8, hidden=16, latent_dim=4)
    clips = [make_moving_pose(20, 240, 320, seed=s).keypoints for s in range(4)]
    fa = np.concatenate(encode_clips(ae, clips, stride=2))
    assert fa.shape[1] == 4
    assert frechet_distance_features(fa, fa) == pytest.approx(0.0, abs=1e-6)
    shifted = [c.copy() for c in clips]
    for c in shifted:
        c[:, K.RIGHT_HAND, 1] += 40.0  # the hand moves away from its reference place
    fb = np.concatenate(encode_clips(ae, shifted, stride=2))
    assert frechet_distance_features(fa, fb) > 1e-4
    ae.save_pretrained(tmp_path / "ae")
    back = load_pose_autoencoder(tmp_path / "ae")
    np.testing.assert_allclose(np.concatenate(encode_clips(back, clips, stride=2)), fa, atol=1e-6)


def test_missing_autoencoder_checkpoint_raises(tmp_path):
    from csg.errors import WeightsNotFoundError
    from eval.pose_autoencoder import load_pose_autoencoder

    with pytest.raises(WeightsNotFoundError, match="config.json"):
        load_pose_autoencoder(tmp_path)


def test_train_autoencoder_lowers_loss():
    import torch

    from eval.pose_autoencoder import clip_windows, train_autoencoder

    clips = [make_moving_pose(24, 240, 320, seed=s).keypoints for s in range(3)]
    w = np.concatenate([clip_windows(PM.normalise_clip(c), 8, 4) for c in clips])
    kw = dict(window=8, hidden=16, latent_dim=4, batch_size=8)
    m1, log = train_autoencoder(w, epochs=8, generator=torch.Generator().manual_seed(0), **kw)
    assert log["train_loss"][-1] < log["train_loss"][0]
    # the generator alone decides initialisation and batches: same seed, same weights
    a, _ = train_autoencoder(w, epochs=1, generator=torch.Generator().manual_seed(1), **kw)
    b, _ = train_autoencoder(w, epochs=1, generator=torch.Generator().manual_seed(1), **kw)
    c, _ = train_autoencoder(w, epochs=1, generator=torch.Generator().manual_seed(2), **kw)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_clip_windows_cover_the_end_and_pad_short_clips():
    from eval.pose_autoencoder import clip_windows

    x = np.arange(10 * 2 * 2, dtype=np.float32).reshape(10, 2, 2)
    w = clip_windows(x, 4, 4)
    assert w.shape == (3, 4, 4)
    np.testing.assert_array_equal(w[-1], x[6:].reshape(4, 4))
    short = clip_windows(x[:3], 4, 4)
    np.testing.assert_array_equal(short[0, -1], short[0, -2])
