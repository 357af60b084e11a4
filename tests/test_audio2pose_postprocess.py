"""Stage-1 output steps (issue #14): mouth scale, arm-only One-Euro, idle head/torso motion."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from audio2pose.postprocess import (ARM_POINTS, MOUTH_LEVEL, level_mouth, mouth_level_target,
                                    one_euro_arms, scale_mouth)
from csg import keypoints as K
from tests.helpers import make_reference_keypoints


def _ref_xy():
    return make_reference_keypoints()[:, :2].astype(np.float64)


def _talking(T=40, shift=(0.0, 0.0)):
    """A head moving by ``shift`` px per frame whose mouth opens and closes (lower lip, chin)."""
    ref = _ref_xy()
    xy = np.repeat(ref[None], T, 0)
    xy += np.arange(T)[:, None, None] * np.asarray(shift)
    lower = np.r_[K.FACE.start + 5:K.FACE.start + 12, K.FACE.start + 55:K.FACE.start + 60,
                  K.FACE.start + 65:K.FACE.start + 68]
    xy[:, lower, 1] += 6.0 * (0.5 - 0.5 * np.cos(np.linspace(0, 6 * np.pi, T)))[:, None]
    return ref, xy


def test_scale_mouth_scales_the_opening_about_a_closed_mouth():
    ref, xy = _talking(shift=(0.7, -0.3))
    gap = lambda a: K.mouth_opening(a) * K.face_height(a)  # noqa: E731  (pixels)
    half = scale_mouth(xy, 0.5)
    np.testing.assert_allclose(gap(half[1:]), 0.5 * gap(xy[1:]), rtol=1e-6)
    assert np.array_equal(half[0], xy[0])                     # frame 0 is the reference
    assert np.array_equal(scale_mouth(xy, 1.0), xy)
    shut = scale_mouth(xy, 0.0)
    np.testing.assert_allclose(gap(shut[1:]), 0.0, atol=1e-9)
    moved = np.abs(half - xy).max(axis=(0, 2)) > 1e-9         # only lower face points move
    assert set(np.flatnonzero(moved)) <= set(range(K.FACE.start, K.FACE.stop))
    assert not moved[K.FACE.start + 62] and moved[K.FACE.start + 66] and moved[K.FACE.start + 8]


def _with_gap(xy, gap_px):
    """xy (133, 2) with the three lower inner-lip points ``gap_px`` below the upper ones."""
    out = np.array(xy, np.float64, copy=True)
    up = K.INNER_LIPS.start + np.array([1, 2, 3])
    lo = K.INNER_LIPS.start + np.array([7, 6, 5])
    out[lo] = out[up] + np.array([0.0, gap_px])
    return out


def test_mouth_level_target_known_answers():
    ref = _ref_xy()
    fh = float(K.face_height(ref))
    a, b, floor = MOUTH_LEVEL
    # an open photo: exp(a) * o ** b, o = 0.06 of the face height
    np.testing.assert_allclose(mouth_level_target(_with_gap(ref, 0.06 * fh)),
                               np.exp(a) * 0.06 ** b, rtol=1e-9)
    # a closed photo reads the floor: exp(-1.919) * 0.005 ** 0.4 = 0.0174 with the fitted level
    closed = mouth_level_target(_with_gap(ref, 0.0))
    np.testing.assert_allclose(closed, np.exp(a) * floor ** b, rtol=1e-9)
    np.testing.assert_allclose(mouth_level_target(_with_gap(ref, 0.0), (np.log(0.04), 0.0, 0.005)),
                               0.04, rtol=1e-12)                  # b = 0: a constant level
    np.testing.assert_allclose(mouth_level_target(_with_gap(ref, 0.05 * fh), (0.0, 1.0, 0.005)),
                               0.05, rtol=1e-9)                   # b = 1, a = 0: the photo's own
    assert mouth_level_target(_with_gap(ref, 0.1 * fh)) > mouth_level_target(_with_gap(ref, 0.02 * fh))


def test_level_mouth_hits_the_target_mean_and_keeps_the_time_course():
    ref, xy = _talking(shift=(0.4, 0.2))
    for target in (0.02, 0.05, 0.12):
        out = level_mouth(xy, target)
        mo = K.mouth_opening(out[1:])
        np.testing.assert_allclose(mo.mean(), target, rtol=1e-6)
        assert np.array_equal(out[0], xy[0])
        assert np.corrcoef(mo, K.mouth_opening(xy[1:]))[0, 1] > 0.999  # same time course
    closed = np.repeat(_with_gap(ref, 0.0)[None], 5, 0)
    assert np.array_equal(level_mouth(closed, 0.05), closed)             # nothing to scale
    assert np.array_equal(level_mouth(xy[:1], 0.05), xy[:1])


def test_one_euro_arms_filters_only_arms_and_hands():
    g = np.random.default_rng(0)
    ref = _ref_xy()
    xy = ref[None] + g.normal(0, 2.0, (60, K.NUM_KEYPOINTS, 2))
    xy[0] = ref
    out = one_euro_arms(xy, 25.0)
    arms = np.r_[ARM_POINTS, K.indices(K.HANDS)]
    rest = np.setdiff1d(np.arange(K.NUM_KEYPOINTS), arms)
    assert np.array_equal(out[:, rest], xy[:, rest]) and np.array_equal(out[0], xy[0])
    jit = lambda a: np.abs(np.diff(a[:, arms], axis=0)).mean()  # noqa: E731
    assert jit(out) < 0.6 * jit(xy)


def test_idle_motion_starts_at_zero_moves_head_and_torso_not_hips():
    from csg.data.synth_audio import procedural_speech, sample_voice
    from csg.data.synth_motion import idle_motion
    from eval.motion import motion_stats

    g = np.random.default_rng(3)
    wav, _ = procedural_speech(6.0, sample_voice(g), g)
    ref = make_reference_keypoints()
    d = idle_motion(wav, 16000, 25.0, 150, ref[:, :2], generator=np.random.default_rng(1))
    assert d.shape == (150, K.NUM_KEYPOINTS, 2) and np.all(d[0] == 0)
    assert np.abs(d[:, [K.LEFT_HIP, K.RIGHT_HIP]]).max() < 1e-9
    again = idle_motion(wav, 16000, 25.0, 150, ref[:, :2], generator=np.random.default_rng(1))
    assert np.array_equal(d, again)
    kp = np.repeat(ref[None].astype(np.float64), 150, 0)
    kp[..., :2] += d
    st = motion_stats(kp, 25.0, ref.astype(np.float64))
    assert 0.03 < st["head_speed"] < 0.4 and st["torso_speed"] > 0.01      # sw/s: real-like
    # mouth closed: the opening changes only through the head's turning, not by opening
    assert np.abs(K.mouth_opening(kp[..., :2]) - K.mouth_opening(ref[:, :2])).max() < 0.02
    half = idle_motion(wav, 16000, 25.0, 150, ref[:, :2], generator=np.random.default_rng(1),
                       gain=0.5)
    np.testing.assert_allclose(np.abs(half).max(), 0.5 * np.abs(d).max(), rtol=0.2)


def test_pipeline_output_steps_are_off_by_default_and_keep_frame_zero():
    import torch

    from csg.pose import PoseSequence
    from tests.test_audio2pose_model import speech, tiny_audio2pose

    ref = PoseSequence(make_reference_keypoints()[None], 25.0, 640, 480)
    pipe = tiny_audio2pose()
    wav = speech(1.0)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain = pipe(wav, 16000, ref, generator=gen(), progress=False)
    pipe.sampling = replace(pipe.sampling, one_euro_arms=True, mouth_scale=0.5, idle=1.0)
    out = pipe(wav, 16000, ref, generator=gen(), progress=False)
    again = pipe(wav, 16000, ref, generator=gen(), progress=False)
    assert np.array_equal(out.keypoints, again.keypoints)               # deterministic
    assert np.array_equal(out.keypoints[0], plain.keypoints[0])         # frame 0: the reference
    assert np.array_equal(out.scores, plain.scores)
    assert not np.array_equal(out.keypoints, plain.keypoints)
    assert out.meta["mouth_scale"] == 0.5 and out.meta["idle"] == 1.0 and out.meta["one_euro_arms"]
    assert "idle" not in plain.meta


def test_embedded_checkpoints_resolve_by_name(tmp_path, monkeypatch):
    import pytest

    import audio2pose.pipeline as P
    from csg.errors import WeightsNotFoundError
    from tests.test_audio2pose_model import tiny_audio2pose

    monkeypatch.setattr(P, "WEIGHTS_DIR", tmp_path / "weights")
    tiny_audio2pose().save_pretrained(tmp_path / "weights" / "mini")
    (tmp_path / "weights" / "notes").mkdir()
    assert P.embedded_checkpoints() == ["mini"]
    assert P.resolve_checkpoint("mini") == tmp_path / "weights" / "mini"
    assert P.Audio2PosePipeline.from_pretrained("mini").model is not None
    with pytest.raises(WeightsNotFoundError, match="not found"):
        P.resolve_checkpoint("notes")


def test_embedded_student_checkpoint_generates_by_name():
    """The shipped few-step student (audio2pose/weights/student): small, 1 step without CFG,
    the default's output steps, usable by name."""
    import pytest

    from audio2pose import generate_poses
    from audio2pose.pipeline import WEIGHTS_DIR, Audio2PosePipeline
    from csg.pose import PoseSequence
    from tests.test_audio2pose_model import speech

    if not (WEIGHTS_DIR / "student" / "audio2pose.json").is_file():
        pytest.skip("no embedded student in this checkout")
    size = (WEIGHTS_DIR / "student" / "model" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert size < 8 * 2 ** 20
    pipe = Audio2PosePipeline.from_pretrained("student")
    default = Audio2PosePipeline.from_pretrained(None)
    assert pipe.sampling.steps == 1 and pipe.sampling.cfg_scale == 1.0
    assert replace(pipe.sampling, steps=0, cfg_scale=0) == replace(default.sampling, steps=0, cfg_scale=0)
    ref = PoseSequence(make_reference_keypoints()[None], 25.0, 640, 480)
    p = generate_poses(speech(0.6), 16000, ref, checkpoint="student", seed=0)
    assert p.num_frames == 15 and np.array_equal(p.keypoints[0], ref.keypoints[0])
    assert p.meta["steps"] == 1
