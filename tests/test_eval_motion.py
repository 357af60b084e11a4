"""Known answers of eval.motion (generated vs real motion, issue #14) and its CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from csg import keypoints as K
from eval.motion import (compare_motion, motion_stats, moving_average, resample)


def _speaker(T: int = 150, fps: float = 25.0, seed: int = 0) -> np.ndarray:
    """A smooth synthetic upper body: shoulders 100 px apart, arms swinging, head bobbing, a
    mouth opening and closing."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / fps
    kp = np.zeros((T, K.NUM_KEYPOINTS, 3))
    kp[..., 2] = 1.0
    base = rng.uniform(-5, 5, (K.NUM_KEYPOINTS, 2)) + [200.0, 200.0]
    kp[..., :2] = base
    kp[:, K.LEFT_SHOULDER, :2] = [250, 200]
    kp[:, K.RIGHT_SHOULDER, :2] = [150, 200]
    kp[:, [K.LEFT_SHOULDER, K.RIGHT_SHOULDER], 0] += 2 * np.sin(2 * np.pi * 0.3 * t)[:, None]
    for j, side, ph in ((K.LEFT_ELBOW, 1, 0.0), (K.RIGHT_ELBOW, -1, 1.0)):
        kp[:, j, 0] = 200 + side * 70 + 8 * np.sin(2 * np.pi * 0.7 * t + ph)
        kp[:, j, 1] = 280 + 5 * np.sin(2 * np.pi * 0.5 * t + ph)
    for j, side, ph in ((K.LEFT_WRIST, 1, 0.3), (K.RIGHT_WRIST, -1, 1.7)):
        kp[:, j, 0] = 200 + side * 60 + 25 * np.sin(2 * np.pi * 0.9 * t + ph)
        kp[:, j, 1] = 330 - 30 * np.abs(np.sin(2 * np.pi * 0.6 * t + ph))
    for j in (K.NOSE, K.LEFT_EYE_C, K.RIGHT_EYE_C, K.LEFT_EAR, K.RIGHT_EAR):
        kp[:, j, 1] = 140 + 4 * np.sin(2 * np.pi * 0.4 * t)
    kp[:, K.FACE, 1] = 130 + np.linspace(0, 40, 68)[None] + 2 * np.sin(2 * np.pi * 0.4 * t)[:, None]
    op = 4 + 3 * np.sin(2 * np.pi * 3 * t)
    lips = K.INNER_LIPS.start
    kp[:, [lips + 5, lips + 6, lips + 7], 1] = kp[:, [lips + 1, lips + 2, lips + 3], 1] + op[:, None]
    return kp


def test_moving_average_keeps_length_and_constants():
    x = np.arange(10.0)[:, None] * 0 + 3.0
    assert np.allclose(moving_average(x, 5), 3.0) and moving_average(x, 5).shape == x.shape
    y = np.arange(10.0)
    assert np.allclose(moving_average(y, 5)[2:-2], y[2:-2])  # a line is its own average


def test_resample_is_identity_at_the_same_rate_and_linear_otherwise():
    kp = _speaker(60)
    assert np.array_equal(resample(kp, 25, 25), kp)
    line = np.arange(31.0)[:, None, None] * np.ones((1, 2, 3))  # value = frame index at 30 fps
    out = resample(line, 30, 25)
    assert np.allclose(out[:, 0, 0], np.arange(out.shape[0]) * 30 / 25)


def test_sequence_against_itself_gives_ratios_one_and_offsets_zero():
    kp = _speaker()
    rep = compare_motion(kp, 25.0, kp, 25.0)
    for k, v in rep["ratio"].items():
        assert v == pytest.approx(1.0, abs=1e-9), k
    assert rep["offset"]["elbow_spread"] == pytest.approx(0.0, abs=1e-12)
    assert rep["offset"]["hand_height"] == pytest.approx(0.0, abs=1e-12)
    assert rep["gen"]["startup_jump"] == pytest.approx(rep["real"]["startup_jump"])
    assert rep["checks"]["jitter"] and rep["checks"]["head_speed"] and rep["checks"]["mouth_mean"]


def test_white_noise_raises_the_jitter_ratio():
    kp = _speaker()
    noisy = kp.copy()
    noisy[..., :2] += np.random.default_rng(1).normal(0, 4.0, noisy[..., :2].shape)  # 4 % of sw
    rep = compare_motion(noisy, 25.0, kp, 25.0)
    assert rep["ratio"]["jitter"] > 1.3
    assert not rep["checks"]["jitter"]
    less = kp.copy()
    less[..., :2] += np.random.default_rng(1).normal(0, 0.5, less[..., :2].shape)
    assert 1.0 < compare_motion(less, 25.0, kp, 25.0)["ratio"]["jitter"] < rep["ratio"]["jitter"]


def test_known_posture_offsets_and_startup_jump():
    kp = _speaker()
    wide = kp.copy()
    wide[1:, K.LEFT_ELBOW, 0] += 35      # elbows 70 px further apart (0.7 sw) after frame 0
    wide[1:, K.RIGHT_ELBOW, 0] -= 35
    rep = compare_motion(wide, 25.0, kp, 25.0)
    real_spread = rep["real"]["elbow_spread"]
    assert rep["offset"]["elbow_spread"] == pytest.approx((real_spread + 0.7) / real_spread - 1, rel=1e-6)
    # frame 1 jumps: both elbows 0.35 sw, wrists still -> arm mean >= 0.175 sw
    assert rep["gen"]["startup_jump"] >= 0.17
    assert rep["offset"]["startup_jump_vs_step"] > 1.0 and not rep["checks"]["startup_jump"]
    lifted = kp.copy()
    lifted[:, [K.LEFT_WRIST, K.RIGHT_WRIST], 1] -= 50   # hands 0.5 sw higher everywhere
    assert compare_motion(lifted, 25.0, kp, 25.0)["offset"]["hand_height"] == pytest.approx(0.5)


def test_frozen_head_and_mouth_ratios():
    kp = _speaker()
    frozen = kp.copy()
    frozen[:, K.FACE] = kp[0, K.FACE]
    for j in (K.NOSE, K.LEFT_EYE_C, K.RIGHT_EYE_C, K.LEFT_EAR, K.RIGHT_EAR):
        frozen[:, j] = kp[0, j]
    rep = compare_motion(frozen, 25.0, kp, 25.0)
    assert rep["ratio"]["head_speed"] == pytest.approx(0.0, abs=1e-9)
    assert not rep["checks"]["head_speed"]
    st = motion_stats(kp, 25.0)
    assert 0 < st["mouth_std"] and 0 < st["periodicity"] <= 1


def test_cli_writes_a_report(tmp_path):
    from click.testing import CliRunner

    from csg.cli import cli
    from csg.pose import PoseSequence

    kp = _speaker(80).astype(np.float32)
    PoseSequence(kp, 25.0, 400, 400).save(tmp_path / "gen.json")
    np.savez(tmp_path / "real_mediapipe_kp.npz", coco_wholebody133_2d=kp, fps=np.float32(25.0))
    res = CliRunner().invoke(cli, ["eval", "motion", "--pred", str(tmp_path / "gen.json"), "--real",
                                   str(tmp_path / "real_mediapipe_kp.npz"), "-o",
                                   str(tmp_path / "rep"), "--no-plots"])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["clips"]["gen"]["ratio"]["jitter"] == pytest.approx(1.0)
    assert "jitter 1.00x" in res.output


def test_load_motion_refuses_bad_files(tmp_path):
    from csg.errors import InputError
    from eval.motion import load_motion

    np.savez(tmp_path / "x.npz", other=np.zeros(3))
    with pytest.raises(InputError, match="coco_wholebody133_2d"):
        load_motion(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", coco_wholebody133_2d=np.zeros((5, 17, 3)), fps=np.float32(25))
    with pytest.raises(InputError, match="133"):
        load_motion(tmp_path / "y.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(InputError, match="empty.npz: not a readable npz"):
        load_motion(tmp_path / "empty.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "y.npz").read_bytes()[:200])
    with pytest.raises(InputError, match="cut.npz: not a readable npz"):
        load_motion(tmp_path / "cut.npz")



@pytest.mark.parametrize("scale, ok", [(1.0, True), (0.33, False), (2.0, False)])
def test_mouth_mean_check_holds_within_1_3x_both_ways(scale, ok):
    """'Within 1.3x' of the real mean mouth opening: 0.33x fails as 2x does."""
    from audio2pose.postprocess import scale_mouth

    kp = _speaker()
    gen = kp.copy()
    gen[..., :2] = scale_mouth(kp[..., :2], scale)
    rep = compare_motion(gen, 25.0, kp, 25.0)
    r = rep["ratio"]["mouth_mean"]
    assert (r < 0.7 if scale < 1 else r > 1.5 if scale > 1 else r == pytest.approx(1.0))
    assert rep["checks"]["mouth_mean"] is ok
