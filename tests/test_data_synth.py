"""The synthetic corpus: format, determinism, alignment rules, rule-based baseline."""
from __future__ import annotations

import json

import numpy as np
import pytest

from csg import keypoints as K
from csg.audio import SAMPLE_RATE, frame_bounds
from csg.data.manifest import load_clip, read_manifest
from csg.data.synth import SynthConfig, make_corpus, speaker_splits
from csg.data.synth_audio import ENV_RATE, procedural_speech, sample_voice
from csg.data.synth_motion import Style, perform, rule_based_poses, sample_shape


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(clips=3, seconds=3.0, seed=7, size_hw=(48, 64), frames=True, espeak=False,
                      clips_per_speaker=1)
    make_corpus(root, cfg, workers=1, progress=False)
    return root, cfg


def test_corpus_format(corpus):
    root, cfg = corpus
    recs = read_manifest(root)
    assert [r.id for r in recs] == ["synth_00000", "synth_00001", "synth_00002"]
    assert sorted(r.split for r in recs) == ["test", "train", "val"]
    for r in recs:
        clip = load_clip(root, r)
        assert (r.height, r.width) == (48, 64) and r.num_frames == 75
        assert clip.poses.shape == (75, 133, 3) and clip.poses.dtype == np.float32
        assert clip.audio.shape == (frame_bounds(75, SAMPLE_RATE, 25.0)[-1],)
        assert (root / r.video).is_file()
        with np.load(root / r.npz, allow_pickle=False) as z:
            assert set(z.files) == {"poses", "audio", "ref", "fps", "width", "height"}
        s = clip.poses[..., 2]
        assert 0 <= s.min() and s.max() <= 1
    stats = json.loads((root / "stats.json").read_text())
    assert len(stats["audio_mean"]) > 0 and np.asarray(stats["pose_std"]).shape == (133, 2)


def test_same_seed_same_arrays(corpus, tmp_path):
    root, cfg = corpus
    make_corpus(tmp_path, SynthConfig(**{**cfg.__dict__, "frames": False}), workers=1,
                progress=False)
    for r in read_manifest(tmp_path):
        a, b = np.load(root / r.npz), np.load(tmp_path / r.npz)
        for k in ("poses", "audio", "ref"):
            np.testing.assert_array_equal(a[k], b[k])
    other = tmp_path / "other"
    make_corpus(other, SynthConfig(**{**cfg.__dict__, "frames": False, "seed": 8}), workers=1,
                progress=False)
    assert not np.array_equal(np.load(other / r.npz)["audio"], np.load(root / r.npz)["audio"])


def test_speaker_splits_deterministic_and_complete():
    a = speaker_splits(20, 3)
    assert a == speaker_splits(20, 3) and (a.count("train"), a.count("val"), a.count("test")) == (
        16, 2, 2)


def _lag_frames(x, y, max_lag):
    """Lag (frames) maximising corr(x[t], y[t + lag]): positive when x leads y."""
    best = max(range(-max_lag, max_lag + 1),
               key=lambda L: np.corrcoef(x[max(0, -L):len(x) - max(0, L)],
                                         y[max(0, L):len(y) - max(0, -L)])[0, 1])
    return best


def test_mouth_leads_the_sound():
    """Mouth opening correlates with articulation and leads it by the style's lead."""
    g = np.random.default_rng(0)
    wav, ev = procedural_speech(8.0, sample_voice(g), g)
    b = sample_shape(g, (480, 640))
    fps = 100.0  # one frame per envelope step, so a 60 ms lead is 6 frames
    poses, _ = perform(ev, b, Style(lead=0.06), 800, fps, g, noisy=False)
    mo = K.mouth_opening(poses[..., :2])
    assert np.corrcoef(mo[:-6], ev.articulation[6:800])[0, 1] > 0.95
    assert _lag_frames(mo, ev.articulation[:800], 15) == 6


def test_wrist_moves_more_during_speech_and_rests_in_pauses():
    moving, resting = [], []
    for seed in (1, 2, 3):  # pooled over three speakers: one draw may have almost no pause
        g = np.random.default_rng(seed)
        wav, ev = procedural_speech(8.0, sample_voice(g), g)
        poses, ref = perform(ev, sample_shape(g, (480, 640)), Style(gesture_prob=1.0), 200, 25.0,
                             g, noisy=False)
        t = (np.arange(199) + 1) / 25.0
        speed = np.linalg.norm(np.diff(poses[:, [K.LEFT_WRIST, K.RIGHT_WRIST], :2], axis=0),
                               axis=-1)
        speech = np.zeros(199, bool)
        for a, c in ev.phrases:  # a phrase's first stroke is prepared up to 0.7 s before it
            speech |= (t >= a - 0.7) & (t < c + 0.3)
        moving.append(speed[speech])
        resting.append(speed[~speech])
        assert np.abs(ref[:, :2] - poses[0, :, :2]).max() < 0.3 * K.torso_size(ref[:, :2])
    assert np.concatenate(moving).mean() > 2 * np.concatenate(resting).mean()


def test_rule_based_poses_keep_reference_identity():
    from tests.helpers import make_reference_keypoints

    ref = make_reference_keypoints(48 * 10, 64 * 10)
    g = np.random.default_rng(0)
    wav, _ = procedural_speech(4.0, sample_voice(g), g)
    a = rule_based_poses(wav, SAMPLE_RATE, 25.0, ref, generator=np.random.default_rng(1))
    b = rule_based_poses(wav, SAMPLE_RATE, 25.0, ref, generator=np.random.default_rng(1))
    assert a.shape == (100, 133, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[..., 2], np.broadcast_to(ref[:, 2], (100, 133)))
    # silence at the start: the face stays where ref has it (within the idle sway)
    mo = K.mouth_opening(a[..., :2])
    assert mo.max() > mo[:3].max() + 0.02
    assert np.median(np.abs(a[:, K.NOSE, :2] - ref[K.NOSE, :2])) < 0.3 * K.torso_size(ref[:, :2])


def test_events_at_envelope_rate():
    g = np.random.default_rng(2)
    wav, ev = procedural_speech(3.0, sample_voice(g), g)
    assert wav.shape == (48000,) and ev.articulation.shape == (3 * ENV_RATE,)
    assert np.all(np.diff(ev.phrases.ravel()) >= 0) and len(ev.stress_times) >= 1


def test_espeak_voice_when_installed():
    from csg.data.synth_audio import espeak_available, espeak_speech

    if not espeak_available():
        pytest.xfail("espeak-ng is not installed here (apt-get install espeak-ng)")
    wav, ev = espeak_speech(4.0, np.random.default_rng(0))
    assert wav.shape == (64000,) and np.abs(wav).max() > 0.1
    assert len(ev.phrases) >= 1 and ev.articulation.max() > 0.5


def test_cli_synth_size_and_errors(tmp_path):
    from csg.cli import main

    out = tmp_path / "c"
    assert main(["data", "synth", "--out", str(out), "--clips", "2", "--seconds", "2",
                 "--size", "48", "64", "--no-frames", "--no-espeak", "--workers", "1"]) == 0
    recs = read_manifest(out)
    assert [(r.height, r.width, r.video) for r in recs] == [(48, 64, None)] * 2
    assert main(["data", "synth", "--out", str(tmp_path / "d"), "--clips", "1", "--seconds", "2",
                 "--size", "32", "--no-frames", "--no-espeak", "--workers", "1"]) == 0
    assert (read_manifest(tmp_path / "d")[0].height, read_manifest(tmp_path / "d")[0].width) == (
        32, 32)
    assert main(["data", "prepare", "--videos", str(tmp_path), "--out", str(tmp_path / "p")]) == 2
