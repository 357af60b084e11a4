"""`csg run` on bad input: one clear line, a non-zero exit, no file where the output should be."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from csg.cli import main
from tests.helpers import make_reference_pose

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PHOTO = EXAMPLES / "images" / "moore_anyone-3.png"


def speech_like(seconds: float = 1.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.3 * env * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


@pytest.fixture
def inputs(tmp_path):
    wav = tmp_path / "speech.wav"
    sf.write(wav, speech_like(), 16000)
    return {"ref": PHOTO, "audio": wav, "out": tmp_path / "out" / "talk.mp4"}


def run_cli(capsys, args):
    rc = main(["run", *map(str, args)])
    err = capsys.readouterr().err
    return rc, err


def assert_clean_failure(rc, err, needle, out_dir: Path):
    assert rc != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    assert needle.lower() in lines[0].lower(), err
    assert "Traceback" not in err
    if out_dir.exists():
        leftovers = [p.name for p in out_dir.iterdir() if not p.name.startswith("existing")]
        assert leftovers == [], leftovers


def test_missing_photo(capsys, inputs):
    rc, err = run_cli(capsys, ["--ref", inputs["out"].parent / "nope.jpg", "--audio",
                               inputs["audio"], "-o", inputs["out"]])
    assert_clean_failure(rc, err, "not found", inputs["out"].parent)


def test_missing_audio(capsys, inputs, tmp_path):
    rc, err = run_cli(capsys, ["--ref", inputs["ref"], "--audio", tmp_path / "nope.wav",
                               "-o", inputs["out"]])
    assert_clean_failure(rc, err, "not found", inputs["out"].parent)


def test_photo_that_is_not_an_image(capsys, inputs, tmp_path):
    fake = tmp_path / "fake.jpg"
    fake.write_text("this is not a jpeg")
    rc, err = run_cli(capsys, ["--ref", fake, "--audio", inputs["audio"], "-o", inputs["out"]])
    assert_clean_failure(rc, err, "fake.jpg", inputs["out"].parent)


def test_audio_that_is_not_audio(capsys, inputs):
    rc, err = run_cli(capsys, ["--ref", inputs["ref"], "--audio", inputs["ref"],
                               "-o", inputs["out"]])
    assert_clean_failure(rc, err, inputs["ref"].name, inputs["out"].parent)


def test_silent_audio(capsys, inputs, tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    rc, err = run_cli(capsys, ["--ref", inputs["ref"], "--audio", silent, "-o", inputs["out"]])
    assert_clean_failure(rc, err, "silent", inputs["out"].parent)


def test_audio_longer_than_limit(capsys, inputs):
    rc, err = run_cli(capsys, ["--ref", inputs["ref"], "--audio", inputs["audio"],
                               "-o", inputs["out"], "--set", "limits.max_audio_seconds=0.5"])
    assert_clean_failure(rc, err, "max_audio_seconds", inputs["out"].parent)


def test_photo_with_no_person(capsys, inputs, tmp_path):
    import cv2

    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 200, np.uint8))
    rc, err = run_cli(capsys, ["--ref", blank, "--audio", inputs["audio"], "-o", inputs["out"]])
    assert_clean_failure(rc, err, "no person", inputs["out"].parent)


def test_existing_output_without_overwrite(capsys, inputs):
    inputs["out"].parent.mkdir(parents=True)
    existing = inputs["out"].parent / "existing.mp4"
    existing.write_bytes(b"keep me")
    rc, err = run_cli(capsys, ["--ref", inputs["ref"], "--audio", inputs["audio"], "-o", existing])
    assert_clean_failure(rc, err, "--overwrite", inputs["out"].parent)
    assert existing.read_bytes() == b"keep me"


def test_unwritable_output_folder(capsys, inputs, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    # Root ignores permission bits, so the folder also reports itself unwritable through
    # os.access, which is what csg consults.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False
                        if Path(p) == locked else real_access(p, mode, *a, **k))
    rc, err = run_cli(capsys, ["--ref", inputs["ref"], "--audio", inputs["audio"],
                               "-o", locked / "talk.mp4"])
    assert_clean_failure(rc, err, "not writable", locked)


def test_output_folder_that_cannot_be_created(capsys, inputs, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("a file, not a folder")
    rc, err = run_cli(capsys, ["--ref", inputs["ref"], "--audio", inputs["audio"],
                               "-o", blocker / "sub" / "talk.mp4"])
    assert_clean_failure(rc, err, "cannot create", tmp_path / "nothing-here")


def test_pose_canvas_mismatch(capsys, inputs, tmp_path):
    pose = make_reference_pose(height=480, width=640)  # the photo is 614x922
    pose_path = tmp_path / "edited.json"
    pose.save(pose_path)
    rc, err = run_cli(capsys, ["--ref", inputs["ref"], "--audio", inputs["audio"],
                               "-o", inputs["out"], "--pose", pose_path])
    assert_clean_failure(rc, err, "canvas", inputs["out"].parent)


def test_broken_pose_json(capsys, inputs, tmp_path):
    pose_path = tmp_path / "edited.json"
    pose_path.write_text('{"format": "csg.pose", "version": 1, "frames": [}')
    rc, err = run_cli(capsys, ["--ref", inputs["ref"], "--audio", inputs["audio"],
                               "-o", inputs["out"], "--pose", pose_path])
    assert_clean_failure(rc, err, "invalid JSON", inputs["out"].parent)


def test_unknown_config_key(capsys, inputs):
    rc, err = run_cli(capsys, ["--ref", inputs["ref"], "--audio", inputs["audio"],
                               "-o", inputs["out"], "--set", "stage1.stepz=3"])
    assert_clean_failure(rc, err, "stepz", inputs["out"].parent)
