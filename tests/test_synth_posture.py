"""Issue-#14 corpus rules: the reference is the clean first frame, gestures stay around the
speaker's own rest posture, head and torso move."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from csg import keypoints as K
from csg.data.synth_audio import procedural_speech, sample_voice
from csg.data.synth_motion import Style, perform, sample_shape
from eval.motion import motion_stats


def test_front_posture_reference_is_frame_zero_and_gestures_stay_near_rest():
    g = np.random.default_rng(4)
    wav, ev = procedural_speech(8.0, sample_voice(g), g)
    b = replace(sample_shape(g, (480, 640)), rest="front", rest_x=0.5, rest_y=1.0)
    poses, ref = perform(ev, b, Style(gesture_prob=1.0), 200, 25.0, g, noisy=False)
    np.testing.assert_allclose(poses[0, :, :2], ref[:, :2], atol=1e-3)
    st = motion_stats(poses.astype(np.float64), 25.0, ref.astype(np.float64))
    assert abs(st["hand_height"] - st["ref_hand_height"]) < 0.35      # shoulder widths
    assert abs(st["elbow_spread"] / st["ref_elbow_spread"] - 1) < 0.25
    assert st["head_speed"] > 0.03 and st["torso_speed"] > 0.02        # sw/s: not frozen
    assert st["wrist_speed"] > st["head_speed"]


def test_rest_postures_are_sampled_with_their_ranges():
    shapes = [sample_shape(np.random.default_rng(i), (256, 256)) for i in range(200)]
    kinds = [s.rest for s in shapes]
    assert 0.4 < kinds.count("front") / 200 < 0.7 and "sides" in kinds and "clasped" in kinds
    fr = [s for s in shapes if s.rest == "front"]
    assert all(0.3 <= s.rest_y <= 1.7 and 0.25 <= s.rest_x <= 0.9 for s in fr)
    assert K.NUM_KEYPOINTS == 133
