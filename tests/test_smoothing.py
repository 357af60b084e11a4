"""csg.smoothing: the One-Euro filter (Casiez et al. 2012) and its per-region use."""
from __future__ import annotations

import numpy as np
import pytest

from csg import keypoints as K
from csg.smoothing import OneEuro, ease_from, one_euro, one_euro_regions


def test_constant_passes_unchanged_and_first_frame_is_kept():
    x = np.full((20, 3, 2), 5.0)
    np.testing.assert_allclose(one_euro(x, 25.0, OneEuro(1.0, 0.5)), x)
    y = np.random.default_rng(0).normal(size=(10, 4, 2))
    assert np.array_equal(one_euro(y, 25.0)[0], y[0])


def test_beta_zero_is_a_first_order_low_pass():
    """beta = 0: xhat_t = xhat_{t-1} + alpha (x_t - xhat_{t-1}), alpha = 1 / (1 + rate / (2 pi fc))."""
    x = np.zeros((6, 1, 1))
    x[1:] = 1.0  # a step
    out = one_euro(x, 25.0, OneEuro(min_cutoff=2.0, beta=0.0))[:, 0, 0]
    a = 1 / (1 + 25.0 / (2 * np.pi * 2.0))
    expect = 1 - (1 - a) ** np.arange(6)
    np.testing.assert_allclose(out, expect, rtol=1e-12)


def test_noise_is_reduced_and_fast_motion_lags_less_with_beta():
    rng = np.random.default_rng(1)
    t = np.arange(200) / 25.0
    clean = np.stack([np.sin(2 * np.pi * 0.5 * t), np.cos(2 * np.pi * 0.5 * t)], -1)[:, None]
    noisy = clean + rng.normal(0, 0.05, clean.shape)
    f = one_euro(noisy, 25.0, OneEuro(1.0, 0.0))
    jitter = lambda z: np.abs(np.diff(z, 2, axis=0)).mean()  # noqa: E731
    assert jitter(f) < 0.3 * jitter(noisy)
    ramp = np.linspace(0, 20, 50)[:, None, None] * np.ones((1, 1, 2))  # fast: 10 units/s
    lag0 = np.abs(one_euro(ramp, 25.0, OneEuro(1.0, 0.0)) - ramp)[-1].max()
    lag1 = np.abs(one_euro(ramp, 25.0, OneEuro(1.0, 1.0)) - ramp)[-1].max()
    assert lag1 < 0.5 * lag0


def test_regions_use_their_own_cutoffs():
    rng = np.random.default_rng(2)
    xy = np.zeros((50, K.NUM_KEYPOINTS, 2))
    xy[:, K.LEFT_SHOULDER] = [60, 0]
    xy[:, K.RIGHT_SHOULDER] = [-60, 0]
    xy[1:] += rng.normal(0, 1.0, xy[1:].shape)
    out = one_euro_regions(xy, 25.0, cutoffs={"body": OneEuro(0.5), "face": OneEuro(8.0)})
    d = lambda z, g: np.abs(np.diff(z[:, g], axis=0)).mean()  # noqa: E731
    assert d(out, K.BODY) < d(out, K.FACE) < d(xy, K.FACE)
    np.testing.assert_array_equal(out[:, K.HANDS], xy[:, K.HANDS])  # no "hands" entry: untouched
    with pytest.raises(ValueError):
        one_euro_regions(xy[:, :17], 25.0)


def test_ease_from_starts_at_the_reference_and_joins_the_motion():
    xy = np.ones((12, 3, 2)) * 10.0
    ref = np.zeros((3, 2))
    out = ease_from(xy, ref, 6)
    assert np.array_equal(out[0], ref) and np.array_equal(out[6:], xy[6:])
    steps = np.diff(out[:, 0, 0])
    assert np.all(steps >= 0) and steps.max() <= 10 * np.pi / 12 + 1e-9  # max slope of the ease
    assert steps[0] < steps[2]                                          # slow out of the reference


def test_pipeline_filter_and_ease_in_settings():
    """SamplingConfig.one_euro / ease_in: frame 0 stays the reference, the first steps shrink,
    and the defaults (off) leave the output exactly as before."""
    from dataclasses import replace

    import torch

    from csg.pose import PoseSequence
    from tests.helpers import make_reference_keypoints
    from tests.test_audio2pose_model import speech, tiny_audio2pose

    ref = PoseSequence(make_reference_keypoints()[None], 25.0, 640, 480)
    pipe = tiny_audio2pose()
    wav = speech(1.0)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain = pipe(wav, 16000, ref, generator=gen(), progress=False)
    pipe.sampling = replace(pipe.sampling, one_euro=True, ease_in=6)
    eased = pipe(wav, 16000, ref, generator=gen(), progress=False)
    assert np.array_equal(eased.keypoints[0], plain.keypoints[0])
    assert np.array_equal(eased.scores, plain.scores)
    step = lambda p: np.linalg.norm(np.diff(p.xy[:3], axis=0), axis=-1).mean()  # noqa: E731
    assert step(eased) < step(plain)
    assert eased.meta["ease_in"] == 6 and "ease_in" not in plain.meta


def test_one_euro_groups_is_one_euro_per_group_in_one_pass():
    from csg.smoothing import one_euro_groups

    x = np.random.default_rng(3).normal(size=(60, 10, 2)).cumsum(0)
    ga, gb = OneEuro(1.2, 2.0), OneEuro(4.0, 0.5)
    ia, ib = np.array([0, 3, 4]), np.array([7, 1])
    out = one_euro_groups(x, 25.0, [(ia, ga), (ib, gb)], scale=2.0)
    assert np.array_equal(out[:, ia], one_euro(x[:, ia], 25.0, ga, scale=2.0))
    assert np.array_equal(out[:, ib], one_euro(x[:, ib], 25.0, gb, scale=2.0))
    rest = np.setdiff1d(np.arange(10), np.concatenate([ia, ib]))
    assert np.array_equal(out[:, rest], x[:, rest])  # points in no group are copied
    with pytest.raises(ValueError, match="two groups"):
        one_euro_groups(x, 25.0, [(ia, ga), (np.array([4]), gb)])
    with pytest.raises(ValueError, match="d_cutoff"):
        one_euro_groups(x, 25.0, [(ia, ga), (ib, OneEuro(1.0, 0.0, d_cutoff=2.0))])
