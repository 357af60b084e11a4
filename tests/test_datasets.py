"""PoseWindowDataset / VideoWindowDataset and every bad-data case of the format."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from csg.data.dataset import PoseWindowDataset, VideoWindowDataset
from csg.data.manifest import read_manifest, save_npz
from csg.data.synth import SynthConfig, make_corpus
from csg.errors import ConfigError, DataError

H, W = 48, 64


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("ds")
    make_corpus(r, SynthConfig(clips=2, seconds=2.4, seed=3, size_hw=(H, W), frames=True,
                               espeak=False, clips_per_speaker=2), workers=1, progress=False)
    return r


@pytest.fixture
def copy(root, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(root, dst)
    return dst


def test_pose_windows(root):
    ds = PoseWindowDataset(root, "train", window=20, stride=10)
    # 2 clips x 60 frames: starts 0, 10, ..., 40 -> 5 windows each
    assert len(ds) == 10
    item = ds[6]
    assert item["audio"].shape[0] == 20 and item["audio"].dtype == torch.float32
    assert item["poses"].shape == (20, 133, 3) and item["ref"].shape == (133, 3)
    assert (item["clip_id"], item["start"]) == ("synth_00001", 10)
    again = PoseWindowDataset(root, "train", window=20, stride=10)[6]
    assert torch.equal(item["audio"], again["audio"]) and torch.equal(item["poses"], again["poses"])


def test_pose_augment_is_seeded(root):
    plain = PoseWindowDataset(root, window=20)[1]["audio"]
    a = PoseWindowDataset(root, window=20, augment=True, seed=1)
    b = PoseWindowDataset(root, window=20, augment=True, seed=1)
    c = PoseWindowDataset(root, window=20, augment=True, seed=2)
    assert torch.equal(a[1]["audio"], b[1]["audio"])
    assert not torch.equal(a[1]["audio"], plain) and not torch.equal(a[1]["audio"], c[1]["audio"])
    assert torch.equal(a[1]["poses"], PoseWindowDataset(root, window=20)[1]["poses"])


def test_video_windows(root):
    ds = VideoWindowDataset(root, "train", window=8, size=(24, 40))
    assert len(ds) == 2 * (60 // 8)
    item = ds[1]
    assert item["frames"].shape == (8, 3, 24, 40) and item["ref_frame"].shape == (3, 24, 40)
    assert -1.0 <= item["frames"].min() and item["frames"].max() <= 1.0
    assert item["frames"].std() > 0.05
    full = VideoWindowDataset(root, "train", window=8)[1]
    assert full["frames"].shape == (8, 3, H, W)
    np.testing.assert_allclose(item["poses"][..., 0], full["poses"][..., 0] * 40 / W, rtol=1e-5)
    np.testing.assert_allclose(item["poses"][..., 1], full["poses"][..., 1] * 24 / H, rtol=1e-5)


def test_missing_npz(copy):
    (copy / "clips" / "synth_00001.npz").unlink()
    with pytest.raises(DataError, match="synth_00001.*not found"):
        PoseWindowDataset(copy, window=20)


def test_corrupt_npz(copy):
    (copy / "clips" / "synth_00000.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="synth_00000.*corrupt"):
        PoseWindowDataset(copy, window=20)


def test_length_mismatch(copy):
    p = copy / "clips" / "synth_00000.npz"
    z = dict(np.load(p))
    z["audio"] = z["audio"][:-100]
    np.savez(p, **z)
    with pytest.raises(DataError, match="synth_00000.*samples"):
        PoseWindowDataset(copy, window=20)
    with pytest.raises(DataError, match="synth_00000"):
        save_npz(p, poses=z["poses"], audio=z["audio"], ref=z["ref"], fps=25.0, width=W, height=H)


def test_clip_shorter_than_window(root):
    with pytest.raises(DataError, match="synth_00000: 60 frames is shorter than the pose window of "
                                        "61"):
        PoseWindowDataset(root, window=61)


def test_bad_manifest_and_empty_split(copy):
    with pytest.raises(DataError, match="no clips in split 'val'"):
        PoseWindowDataset(copy, "val", window=20)
    lines = (copy / "manifest.jsonl").read_text().splitlines()
    d = json.loads(lines[0])
    del d["fps"]
    (copy / "manifest.jsonl").write_text(json.dumps(d) + "\n")
    with pytest.raises(DataError, match=r"manifest.jsonl:1: missing field\(s\) fps"):
        read_manifest(copy)


def test_missing_video(copy):
    (copy / "clips" / "synth_00000.mp4").unlink()
    with pytest.raises(DataError, match="synth_00000: video .* not found"):
        VideoWindowDataset(copy, window=8)
    assert len(PoseWindowDataset(copy, window=20)) == 10  # the pose data does not need it


def test_ref_start_makes_some_windows_start_at_their_own_reference(root):
    plain = PoseWindowDataset(root, window=20, stride=10)
    every = PoseWindowDataset(root, window=20, stride=10, ref_start=1.0, seed=4)
    half = PoseWindowDataset(root, window=20, stride=10, ref_start=0.5, seed=4)
    clip_ref = torch.from_numpy(plain.clips[0].ref)
    mid = [i for i, (_, s) in enumerate(plain.windows) if s > 0]
    for i, (_, s) in enumerate(plain.windows):
        assert torch.equal(plain[i]["ref"], torch.from_numpy(plain.clips[plain.windows[i][0]].ref))
        if s > 0:  # the window's own first frame (the synthetic clips have reliable anchors)
            body = np.r_[0:23, 91:133]
            assert torch.equal(every[i]["ref"][body], every[i]["poses"][0][body])
            face = every[i]["ref"][23:91].numpy()  # the reference's face, moved by the nose tip
            clip = every.clips[every.windows[i][0]]
            shift = every[i]["poses"][0][53, :2].numpy() - clip.ref[53, :2]
            np.testing.assert_allclose(face[:, :2], clip.ref[23:91, :2] + shift, atol=1e-4)
        else:  # frame 0 keeps the clip's clean reference
            assert torch.equal(every[i]["ref"], torch.from_numpy(every.clips[every.windows[i][0]].ref))
    took = [torch.equal(half[i]["ref"][:23], half[i]["poses"][0][:23]) for i in mid]
    assert 0 < sum(took) < len(mid)  # a share, drawn from the seed
    assert took == [torch.equal(half[i]["ref"][:23], half[i]["poses"][0][:23]) for i in mid]
    assert not torch.equal(every[mid[0]]["ref"], clip_ref)
    with pytest.raises(ConfigError, match="ref_start"):
        PoseWindowDataset(root, window=20, ref_start=1.5)
