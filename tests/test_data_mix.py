"""csg.data.mix: training mixes with per-clip loss masks (synthetic bodies + real faces)."""
from __future__ import annotations

import numpy as np

from csg import keypoints as K
from csg.audio import SAMPLE_RATE, frame_bounds
from csg.data.manifest import ClipRecord, load_clip, read_manifest, save_npz, write_manifest
from csg.data.mix import build_mix, load_loss_mask, observed_mask, pingpong, resample_poses


def _root(tmp, name, T, fps, face_only, source):
    root = tmp / name
    (root / "clips").mkdir(parents=True)
    rng = np.random.default_rng(T)
    poses = np.concatenate([rng.uniform(10, 90, (T, 133, 2)), np.ones((T, 133, 1))], -1)
    if face_only:
        poses[:, 7:23, 2] = 0.0     # elbows..feet unseen
        poses[:, K.HANDS, 2] = 0.0
    n = frame_bounds(T, SAMPLE_RATE, fps)[-1]
    save_npz(root / "clips/a.npz", poses=poses, audio=rng.normal(0, .1, n).astype(np.float32),
             ref=poses[0], fps=fps, width=100, height=100)
    write_manifest(root, [ClipRecord("a", "clips/a.npz", None, fps, T, 100, 100, "s", "train",
                                     source, T / fps)])
    return root


def test_observed_mask_keeps_face_head_and_shoulders_of_a_face_crop():
    poses = np.ones((10, 133, 3))
    poses[:, 7:23, 2] = 0
    poses[:, K.HANDS, 2] = 0
    m = observed_mask(poses)
    assert m[K.FACE].min() == 1 and m[:7].min() == 1
    assert m[7:23].max() == 0 and m[K.HANDS].max() == 0


def test_resample_and_pingpong_lengths_and_alignment():
    p = np.arange(23, dtype=np.float32)[:, None, None] * np.ones((1, 133, 3), np.float32)
    r = resample_poses(p, 22.0, 25.0)
    assert r.shape[0] == 26 and np.allclose(r[:, 0, 0], np.arange(26) * 22 / 25)  # same 1 s span
    T = 10
    audio = np.arange(frame_bounds(T, SAMPLE_RATE, 25.0)[-1], dtype=np.float32)
    pp, aa = pingpong(p[:T], audio, 25.0, 25)
    assert pp.shape[0] == 25 and len(aa) == frame_bounds(25, SAMPLE_RATE, 25.0)[-1]
    assert list(pp[:, 0, 0][:12]) == list(range(10)) + [8, 7]   # forwards, then back, no jump
    assert np.abs(np.diff(pp[:, 0, 0])).max() == 1


def test_build_mix_masks_the_face_clips_only(tmp_path):
    synth = _root(tmp_path, "synth", 60, 25.0, False, "synth")
    face = _root(tmp_path, "face", 40, 30.0, True, "prepared")
    build_mix(tmp_path / "mix", [(str(synth), "whole"), (str(face), "observed", 3)],
              min_frames=50)
    recs = {r.id: r for r in read_manifest(tmp_path / "mix")}
    assert sorted(recs) == ["face__a", "face__a#1", "face__a#2", "synth__a"]
    assert load_loss_mask(tmp_path / "mix" / recs["synth__a"].npz) is None
    m = load_loss_mask(tmp_path / "mix" / recs["face__a"].npz)
    assert m[K.FACE].min() == 1 and m[K.LEFT_WRIST] == 0
    c = load_clip(tmp_path / "mix", recs["face__a"])
    assert c.fps == 25.0 and c.poses.shape[0] >= 50   # 40 frames at 30 fps -> 33 at 25, ping-ponged


def test_photo_face_ref_moves_a_frames_face_onto_the_reference_nose():
    from csg.data.mix import photo_face_ref

    rng = np.random.default_rng(0)
    poses = np.concatenate([rng.uniform(0, 100, (20, 133, 2)), np.ones((20, 133, 1))], -1)
    poses = poses.astype(np.float32)
    ref = poses[0].copy()
    out = photo_face_ref(poses, ref, np.random.default_rng(3))
    assert np.allclose(out[K.NOSE_TIP, :2], ref[K.NOSE_TIP, :2])
    assert np.array_equal(out[:K.FACE.start], ref[:K.FACE.start])      # body untouched
    t = int(np.random.default_rng(3).integers(0, 20))
    d = out[K.FACE, :2] - poses[t, K.FACE, :2]
    assert np.allclose(d, d[0], atol=1e-4)                              # the frame's face, shifted
