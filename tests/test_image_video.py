"""csg.image and csg.video: round trips, atomic writes, clear errors."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from csg.errors import ImageError, InputError, OutputError
from csg.image import load_image, save_image
from csg.video import VideoWriter, atomic_output, probe_video, read_audio_track, read_video

H, W = 48, 64


def _frames(n, h=H, w=W):
    out = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, : (i * 5) % w + 4, 0] = 200  # a red bar that grows, so frames differ
        f[h // 2:, :, 2] = 120
        out.append(f)
    return out


# --- images -----------------------------------------------------------------------------------
def test_image_round_trip_png_keeps_hw_and_rgb(tmp_path, rng):
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    p = save_image(tmp_path / "a.png", img)
    back = load_image(p)
    assert back.shape == (H, W, 3) and back.dtype == np.uint8
    np.testing.assert_array_equal(back, img)
    assert [f.name for f in tmp_path.iterdir()] == ["a.png"]


def test_image_alpha_over_white_and_gray(tmp_path):
    bgra = np.zeros((H, W, 4), np.uint8)
    bgra[..., 2] = 255  # red in BGR order
    bgra[:, : W // 2, 3] = 255  # left half opaque, right half transparent
    cv2.imwrite(str(tmp_path / "alpha.png"), bgra)
    img = load_image(tmp_path / "alpha.png")
    np.testing.assert_array_equal(img[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(img[0, -1], [255, 255, 255])
    cv2.imwrite(str(tmp_path / "gray.png"), np.full((H, W), 77, np.uint8))
    g = load_image(tmp_path / "gray.png")
    assert g.shape == (H, W, 3) and (g == 77).all()


def test_image_errors(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "none.png")
    (tmp_path / "fake.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(ImageError, match="fake.jpg: not a readable image"):
        load_image(tmp_path / "fake.jpg")
    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((100, 200, 3), np.uint8))
    with pytest.raises(ImageError, match=r"200x100.*limit of 0.01 MP"):
        load_image(tmp_path / "big.png", max_pixels=10_000)
    cv2.imwrite(str(tmp_path / "big.jpg"), np.zeros((100, 200, 3), np.uint8))
    with pytest.raises(ImageError, match="200x100"):
        load_image(tmp_path / "big.jpg", max_pixels=10_000)
    with pytest.raises(OutputError, match="exists"):
        save_image(tmp_path / "big.png", np.zeros((H, W, 3), np.uint8), overwrite=False)


# --- atomic outputs ---------------------------------------------------------------------------
def test_atomic_output_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match="does not exist"):
        with atomic_output(tmp_path / "missing" / "x.bin"):
            pass


# --- video ------------------------------------------------------------------------------------
def test_video_round_trip_with_audio(tmp_path):
    import av

    sr = 16000
    t = np.arange(int(0.4 * sr)) / sr
    audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    p = tmp_path / "v.mp4"
    frames = _frames(10)
    with VideoWriter(p, 25, (H, W), audio=audio, audio_sr=sr) as vw:
        for f in frames:
            vw.write(f)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["v.mp4"]
    with av.open(str(p)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        vs = c.streams.video[0]
        assert (vs.codec_context.height, vs.codec_context.width) == (H, W)
        assert vs.codec_context.name == "h264"
        assert sum(1 for _ in c.decode(video=0)) == 10
    info = probe_video(p)
    assert info["num_frames"] == 10 and info["fps"] == 25
    assert (info["height"], info["width"]) == (H, W) and info["has_audio"]
    assert abs(info["audio_duration"] - 0.4) < 1 / 25
    back = list(read_video(p))
    assert len(back) == 10 and back[0].shape == (H, W, 3)
    assert np.abs(back[5].astype(int) - frames[5]).mean() < 8  # lossy but close
    assert np.abs(back[5].astype(int) - frames[0]).mean() > 10  # and it is frame 5, not 0
    wav, wsr = read_audio_track(p)
    assert wsr == 16000 and abs(wav.shape[0] / wsr - 0.4) < 1 / 25
    assert len(list(read_video(p, max_frames=3))) == 3


def test_video_audio_trimmed_to_frames_and_fractional_fps(tmp_path):
    p = tmp_path / "ntsc.mp4"
    audio = np.full(16000 * 2, 0.1, np.float32)  # 2 s of audio for 0.5 s of video
    with VideoWriter(p, 29.97, (H, W), audio=audio) as vw:
        for f in _frames(15):
            vw.write(f)
    info = probe_video(p)
    assert info["num_frames"] == 15 and abs(info["fps"] - 29.97) < 1e-3
    assert abs(info["audio_duration"] - 15 / 29.97) < 1 / 29.97


def test_video_odd_size_is_padded_to_even(tmp_path):
    p = tmp_path / "odd.mp4"
    with VideoWriter(p, 25, (47, 63)) as vw:
        for f in _frames(3, 47, 63):
            vw.write(f)
    info = probe_video(p)
    assert (info["height"], info["width"]) == (48, 64) and not info["has_audio"]


def test_video_nothing_left_on_error(tmp_path):
    p = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(p, 25, (H, W)) as vw:
            for f in _frames(4):
                vw.write(f)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(p, 25, (H, W)) as vw:
            vw.write(np.zeros((W, H, 3), np.uint8))  # swapped H/W
    assert list(tmp_path.iterdir()) == []


def test_video_without_frames_saves_nothing(tmp_path):
    with pytest.raises(OutputError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4", 25, (H, W)):
            pass
    assert list(tmp_path.iterdir()) == []


def test_video_output_checks_happen_in_constructor(tmp_path):
    p = tmp_path / "exists.mp4"
    p.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="exists.*--overwrite"):
        VideoWriter(p, 25, (H, W))
    assert p.read_bytes() == b"keep me"
    with pytest.raises(OutputError, match="does not exist"):
        VideoWriter(tmp_path / "no" / "v.mp4", 25, (H, W))
    with VideoWriter(p, 25, (H, W), overwrite=True) as vw:
        vw.write(_frames(1)[0])
    assert probe_video(p)["num_frames"] == 1


def test_read_errors(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.mp4: not a readable video"):
        probe_video(tmp_path / "bad.mp4")
    with pytest.raises(InputError, match="not found"):
        next(read_video(tmp_path / "missing.mp4"))
