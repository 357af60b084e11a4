"""csg.draw and the ``csg pose draw | validate | convert`` commands."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from csg import keypoints as K
from csg.cli import main
from csg.draw import OP18_COLORS, draw_pose, draw_sequence, op18, sizes_for
from csg.image import load_image
from csg.pose import PoseSequence
from tests.helpers import make_moving_pose, make_reference_keypoints

H, W = 96, 128  # non-square


def _near(img, xy, color, r=1, tol=60):
    x, y = int(round(xy[0])), int(round(xy[1]))
    patch = img[max(y - r, 0):y + r + 1, max(x - r, 0):x + r + 1].reshape(-1, 3).astype(int)
    return bool((np.abs(patch - np.array(color)).max(axis=1) <= tol).any())


# --- drawing ----------------------------------------------------------------------------------
def test_draw_pose_shape_colours_and_orientation():
    kp = make_reference_keypoints(H, W)
    img = draw_pose(kp, (H, W))
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    assert img[0, 0].sum() == 0 and img.max() == 255  # black canvas, something drawn
    body = op18(kp)
    np.testing.assert_allclose(body[1, :2], kp[[K.LEFT_SHOULDER, K.RIGHT_SHOULDER], :2].mean(0))
    # body joint dots have their OpenPose colours: right elbow is OP18 joint 3, left knee 12
    assert _near(img, kp[K.RIGHT_ELBOW], OP18_COLORS[3], r=0, tol=40)
    assert _near(img, kp[K.LEFT_KNEE], OP18_COLORS[12], r=0, tol=40)
    assert _near(img, kp[K.RIGHT_HAND.start + 8], (0, 0, 255), r=0, tol=40)  # blue hand tip
    # face dots are white
    assert _near(img, kp[K.FACE.start + 8], (255, 255, 255), r=0, tol=10)
    # a swapped (W, H) canvas would put the right knee elsewhere: check the knee pixel is lit
    assert img[int(kp[K.RIGHT_KNEE, 1]), int(kp[K.RIGHT_KNEE, 0])].sum() > 100


def test_low_scores_fade_then_vanish():
    kp = make_reference_keypoints(H, W)
    hands_only = np.zeros_like(kp)
    hands_only[K.RIGHT_HAND] = kp[K.RIGHT_HAND]
    full = draw_pose(hands_only, (H, W)).astype(int).sum()
    hands_only[K.RIGHT_HAND, 2] = 0.5
    faded = draw_pose(hands_only, (H, W)).astype(int).sum()
    hands_only[K.RIGHT_HAND, 2] = 0.2  # below the 0.3 threshold
    gone = draw_pose(hands_only, (H, W))
    assert full > faded > 0.3 * full and gone.sum() == 0
    assert draw_pose(hands_only, (H, W), threshold=0.1).sum() > 0


def test_canvas_is_copied_and_sizes_scale():
    kp = make_reference_keypoints(H, W)
    canvas = np.full((H, W, 3), 40, np.uint8)
    out = draw_pose(kp, (H, W), canvas=canvas)
    assert (canvas == 40).all() and out[0, 0].tolist() == [40, 40, 40] and (out != 40).any()
    with pytest.raises(ValueError, match=r"\(96, 128, 3\)"):
        draw_pose(kp, (H, W), canvas=np.zeros((W, H, 3), np.uint8))
    assert sizes_for((1024, 2048))["stick"] == 8 and sizes_for((48, 64))["stick"] == 1


def test_draw_sequence_rescales():
    pose = make_moving_pose(4, height=H, width=W)
    frames = list(draw_sequence(pose))
    assert len(frames) == 4 and frames[0].shape == (H, W, 3)
    assert not np.array_equal(frames[0], frames[2])  # the wrist waves
    half = next(draw_sequence(pose, (H // 2, W // 2)))
    assert half.shape == (H // 2, W // 2, 3) and half.sum() > 0


# --- CLI --------------------------------------------------------------------------------------
@pytest.fixture
def pose_file(tmp_path):
    p = tmp_path / "pose.json"
    make_moving_pose(12, height=H, width=W).save(p)
    return p


def test_cli_draw_mp4_with_audio(tmp_path, pose_file, capsys):
    import av

    wav = tmp_path / "a.wav"
    sf.write(wav, (0.2 * np.sin(np.arange(44100) / 10)).astype(np.float32), 44100)  # 1 s > 0.48 s
    out = tmp_path / "out.mp4"
    rc = main(["pose", "draw", str(pose_file), "-o", str(out), "--audio", str(wav), "-q"])
    assert rc == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    with av.open(str(out)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        a = c.streams.audio[0]
        audio_s = float(a.duration * a.time_base)
        n = sum(1 for _ in c.decode(video=0))
    assert n == 12 and abs(audio_s - 12 / 25) < 1 / 25
    rc = main(["pose", "draw", str(pose_file), "-o", str(out)])
    assert rc != 0 and "--overwrite" in capsys.readouterr().err


def test_cli_draw_png(tmp_path, pose_file, capsys):
    out = tmp_path / "f.png"
    assert main(["pose", "draw", str(pose_file), "-o", str(out), "--frame", "3"]) == 0
    img = load_image(out)
    pose = PoseSequence.load(pose_file)
    np.testing.assert_array_equal(img, draw_pose(pose.keypoints[3], (H, W)))
    rc = main(["pose", "draw", str(pose_file), "-o", str(tmp_path / "g.png"), "--frame", "99"])
    err = capsys.readouterr().err
    assert rc != 0 and "--frame 99" in err and not (tmp_path / "g.png").exists()


def test_cli_draw_makes_a_missing_folder_and_removes_it_on_failure(tmp_path, pose_file, capsys):
    """As csg run and csg render: a missing output folder is made; a command that fails leaves
    no folder behind."""
    bad = tmp_path / "nope" / "deeper" / "g.png"
    rc = main(["pose", "draw", str(pose_file), "-o", str(bad), "--frame", "99"])
    err = capsys.readouterr().err
    assert rc != 0 and err.startswith("error:") and "--frame 99" in err and "Traceback" not in err
    assert not (tmp_path / "nope").exists()
    out = tmp_path / "new" / "out.mp4"
    assert main(["pose", "draw", str(pose_file), "-o", str(out), "-q"]) == 0
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["out.mp4"]
    blocked = tmp_path / "file.txt"
    blocked.write_text("x")
    rc = main(["pose", "draw", str(pose_file), "-o", str(blocked / "out.png")])
    err = capsys.readouterr().err
    assert rc != 0 and "is a file" in err and "Traceback" not in err


def test_cli_validate(pose_file, tmp_path, capsys):
    assert main(["pose", "validate", str(pose_file)]) == 0
    assert capsys.readouterr().out.strip() == "ok: 12 frames, 25 fps, 128x96, 0.48 s"
    d = json.loads(pose_file.read_text())
    d["frames"][3][100][1] = "oops"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    rc = main(["pose", "validate", str(bad)])
    err = capsys.readouterr().err
    assert rc != 0 and err.startswith("error:") and "frame 3, keypoint 100" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_convert_round_trip(tmp_path, pose_file, capsys):
    folder = tmp_path / "op"
    assert main(["pose", "convert", str(pose_file), "-o", str(folder)]) == 0, \
        capsys.readouterr().err
    assert len(list(folder.glob("*.json"))) == 12
    back = tmp_path / "back.json"
    assert main(["pose", "convert", str(folder), "-o", str(back), "--to", "csg"]) == 0
    a, b = PoseSequence.load(pose_file), PoseSequence.load(back)
    assert b.num_frames == 12 and (b.width, b.height) == (W, H)
    np.testing.assert_allclose(b.keypoints[:, K.BODY], a.keypoints[:, K.BODY], atol=1e-3)
    rc = main(["pose", "convert", str(folder), "-o", str(back)])
    assert rc != 0 and "--overwrite" in capsys.readouterr().err
