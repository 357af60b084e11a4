"""csg data prepare on a video the test makes: avatar frames with a scene cut, a lost person,
exact audio, crops, resume. The skeletons come from a fake extractor (the ``extractor`` parameter)
that replays the synthetic poses, so the test checks splitting and bookkeeping, not MediaPipe."""
from __future__ import annotations

import numpy as np
import pytest

from csg.audio import SAMPLE_RATE, frame_bounds
from csg.data.manifest import load_clip, read_manifest
from csg.data.prepare import (PrepareConfig, crop_box, passes_gates, prepare_videos,
                              scene_cuts, segments)
from csg.data.synth import SynthConfig, speaker
from csg.data.synth_audio import procedural_speech
from csg.data.synth_frames import draw_avatar
from csg.data.synth_motion import perform
from csg.video import VideoWriter, probe_video

H, W, FPS, T = 96, 128, 25.0, 100
LOST = range(70, 75)


class FakeExtractor:
    """Replays known poses frame by frame; None (person lost) on LOST frames."""

    calls = 0

    def __init__(self, poses):
        self.poses, self.i = poses, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def __call__(self, frame):
        assert frame.shape == (H, W, 3)
        FakeExtractor.calls += 1
        i, self.i = self.i, self.i + 1
        return None if i in LOST else self.poses[i].copy()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """videos/alice/talk.mp4: 100 frames, shot A (frames 0-49) then shot B (another look)."""
    d = tmp_path_factory.mktemp("videos")
    cfg = SynthConfig(size_hw=(H, W), seed=5)
    a, b = speaker(cfg, 0, False), speaker(cfg, 1, False)
    g = np.random.default_rng(0)
    wav, ev = procedural_speech(T / FPS, a["voice"], g)
    poses, _ = perform(ev, a["shape"], a["style"], T, FPS, g, noisy=False)
    (d / "alice").mkdir()
    with VideoWriter(d / "alice" / "talk.mp4", FPS, (H, W), audio=wav) as vw:
        for i, k in enumerate(poses):
            vw.write(draw_avatar(k, a["look"] if i < 50 else b["look"]))
    return d, poses, wav


def test_prepare_splits_at_cut_and_lost_person(videos, tmp_path):
    d, poses, wav = videos
    cfg = PrepareConfig(size_hw=(48, 64), min_seconds=0.6, min_face=0.0, min_body=0.0)
    recs = prepare_videos(d, tmp_path, cfg, extractor=lambda: FakeExtractor(poses), progress=False)
    assert [r.num_frames for r in recs] == [50, 20, 25]           # cut at 50, lost 70-74
    assert {r.speaker for r in recs} == {"alice"} and len({r.split for r in recs}) == 1
    assert read_manifest(tmp_path) == sorted(recs, key=lambda r: r.id)
    for r in recs:
        clip = load_clip(tmp_path, r)
        assert (clip.height, clip.width) == (48, 64)
        assert clip.audio.shape == (frame_bounds(r.num_frames, SAMPLE_RATE, FPS)[-1],)
        assert probe_video(tmp_path / r.video)["num_frames"] == r.num_frames
        np.testing.assert_array_equal(clip.ref, clip.poses[0])
    # audio of the second clip is the source audio from frame 50 (AAC round trip: correlation)
    c2 = load_clip(tmp_path, recs[1]).audio
    src = wav[frame_bounds(T, SAMPLE_RATE, FPS)[50]:][:len(c2)]
    assert np.corrcoef(c2, src)[0, 1] > 0.9
    # poses are mapped into the crop: the confident points land inside the 48x64 frame
    p = load_clip(tmp_path, recs[0]).poses
    conf = p[..., 2] > 0.3
    assert p[..., 0][conf].min() >= -1 and p[..., 0][conf].max() <= 65
    assert p[..., 1][conf].min() >= -1 and p[..., 1][conf].max() <= 49


def test_resume_skips_done_videos(videos, tmp_path):
    d, poses, _ = videos
    cfg = PrepareConfig(size_hw=None, min_seconds=0.6, min_face=0.0, min_body=0.0, frames=False)
    first = prepare_videos(d, tmp_path, cfg, extractor=lambda: FakeExtractor(poses),
                           progress=False)
    FakeExtractor.calls = 0
    again = prepare_videos(d, tmp_path, cfg, extractor=lambda: FakeExtractor(poses),
                           progress=False)
    assert FakeExtractor.calls == 0 and again == first
    assert all(r.video is None and (r.height, r.width) == (H, W) for r in again)
    prepare_videos(d, tmp_path, cfg, resume=False, extractor=lambda: FakeExtractor(poses),
                   progress=False)
    assert FakeExtractor.calls == T


def test_gates_and_segments():
    kp = np.zeros((133, 3), np.float32)
    kp[:, :2] = (32, 24)
    kp[:, 2] = 0.95
    cfg = PrepareConfig()
    assert passes_gates(kp, (48, 64), cfg)
    kp[23:91, 2] = 0.85                       # face below the 0.9 gate
    assert not passes_gates(kp, (48, 64), cfg) and not passes_gates(None, (48, 64), cfg)
    ok = np.array([1, 1, 1, 0, 1, 1, 1, 1, 1, 1], bool)
    cuts = np.zeros(10, bool)
    cuts[7] = True
    assert segments(ok, cuts, 2) == [(0, 3), (4, 7), (7, 10)]
    assert segments(ok, cuts, 4) == []
    h = np.eye(4)[[0, 0, 1, 1]]
    assert scene_cuts(h, 0.5).tolist() == [False, False, True, False]


def test_crop_box_keeps_aspect_and_frame():
    poses = np.zeros((2, 133, 3), np.float32)
    poses[..., 2] = 1
    poses[0, :, :2] = (10, 10)
    poses[1, :, :2] = (40, 30)              # x 10-40, y 10-30
    y, x, h, w = crop_box(poses, (48, 64), (48, 64), 0.1)
    assert abs(h / w - 0.75) < 0.05 and 0 <= y and y + h <= 48 and 0 <= x and x + w <= 64
    assert x <= 10 and x + w >= 40 and y <= 10 and y + h >= 30


@pytest.mark.slow
def test_prepare_with_mediapipe_on_avatar(tmp_path):
    """The real extractor finds the avatar and its skeleton lands near the truth (IASA gates on)."""
    from csg import keypoints as K

    h, w, n = 256, 320, 60
    cfg = SynthConfig(size_hw=(h, w), seed=11)
    sp = speaker(cfg, 0, False)
    g = np.random.default_rng(0)
    wav, ev = procedural_speech(n / FPS, sp["voice"], g)
    poses, _ = perform(ev, sp["shape"], sp["style"], n, FPS, g, noisy=False)
    (tmp_path / "v").mkdir()
    with VideoWriter(tmp_path / "v" / "bob.mp4", FPS, (h, w), audio=wav) as vw:
        for k in poses:
            vw.write(draw_avatar(k, sp["look"]))
    recs = prepare_videos(tmp_path / "v", tmp_path / "out",
                          PrepareConfig(size_hw=None, min_seconds=1.0, frames=False),
                          progress=False)
    assert recs and sum(r.num_frames for r in recs) >= n // 2
    clip = load_clip(tmp_path / "out", recs[0])
    body = [K.NOSE, K.LEFT_SHOULDER, K.RIGHT_SHOULDER, K.LEFT_ELBOW, K.RIGHT_ELBOW]
    L = len(clip.poses)  # where in the video the clip starts is not stored: take the best offset
    err = min(np.median(np.linalg.norm(clip.poses[:, body, :2] - poses[s:s + L, body, :2], axis=-1))
              for s in range(n - L + 1))
    assert err < 0.15 * K.torso_size(poses[0, :, :2])
