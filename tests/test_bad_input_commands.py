"""Issue #11 B for the other commands (`csg pose generate | draw | convert | validate`, `csg render`,
`csg data synth`, `csg eval video`, `csg train audio2pose`) and the output rules of csg.outputs.
Each failure: non-zero exit, one clear line, no traceback, no file left, nothing else touched."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from csg.cli import main
from tests.bad_input import (H, W, assert_one_clear_line, assert_untouched, make_scene, snapshot,
                             speech_like)


@pytest.fixture
def scene(tmp_path):
    return make_scene(tmp_path)


def csg(capsys, args):
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def _must_not_run(*a, **k):
    raise AssertionError("work started before the options were checked")


# --- csg pose generate: options checked before any model is loaded -------------------------------
def _generate(scene, out, *extra):
    return ["pose", "generate", "--audio", scene["audio"], "--ref", scene["ref"], "-o", out,
            "--quiet", *extra]


@pytest.mark.parametrize("flag,value,needle", [
    ("--steps", "0", "--steps"), ("--steps", "-1", "--steps"), ("--steps", "100000", "--steps"),
    ("--cfg", "nan", "--cfg"), ("--cfg", "inf", "--cfg"), ("--cfg", "1e30", "--cfg"),
    ("--lambda-face", "nan", "--lambda-face"), ("--lambda-nonface", "-inf", "--lambda-nonface"),
    ("--lambda-diff", "1e300", "--lambda-diff"), ("--seed", str(2 ** 64), "--seed"),
    ("--seed", "-1", "--seed"), ("--max-audio-seconds", "nan", "--max-audio-seconds"),
    ("--max-audio-seconds", "0", "--max-audio-seconds"), ("--device", "nonsense", "unknown device"),
    ("--device", "cuda", "no CUDA GPU"), ("--device", "cuda:1", "no CUDA GPU")])
def test_generate_options_out_of_range(capsys, scene, tmp_path, monkeypatch, flag, value, needle):
    import torch

    from audio2pose import pipeline as a2p

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only machine
    monkeypatch.setattr(a2p.Audio2PosePipeline, "from_pretrained", _must_not_run)
    before = snapshot(tmp_path)
    rc, err = csg(capsys, _generate(scene, tmp_path / "p.json", flag, value))
    assert_one_clear_line(rc, err, needle)
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_generate_refuses_nan_audio(capsys, scene, tmp_path, monkeypatch, bad):
    from audio2pose import pipeline as a2p

    monkeypatch.setattr(a2p.Audio2PosePipeline, "from_pretrained", _must_not_run)
    wav = speech_like()
    wav[10] = bad
    sf.write(scene["audio"], wav, 16000, subtype="FLOAT")
    before = snapshot(tmp_path)
    rc, err = csg(capsys, _generate(scene, tmp_path / "p.json"))
    assert_one_clear_line(rc, err, "NaN or infinite sample")
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize("which", ["--audio", "--ref"])
def test_generate_output_that_is_an_input(capsys, scene, tmp_path, which):
    target = scene["audio"] if which == "--audio" else scene["ref"]
    before = snapshot(tmp_path)
    rc, err = csg(capsys, _generate(scene, target, "--overwrite"))
    assert_one_clear_line(rc, err, "destroy the input")
    assert_untouched(before, tmp_path)


def test_generate_into_a_fifo(capsys, scene, tmp_path):
    fifo = tmp_path / "p.json"
    os.mkfifo(fifo)
    before = snapshot(tmp_path)
    rc, err = csg(capsys, _generate(scene, fifo, "--overwrite"))
    assert_one_clear_line(rc, err, "FIFO")
    assert_untouched(before, tmp_path)


# --- csg render -----------------------------------------------------------------------------------
def _render(scene, out, *extra):
    return ["render", "--ref", scene["photo"], "--pose", scene["pose"], "--ref-pose", scene["ref"],
            "--config", scene["yaml"], "-o", out, "--quiet", *extra]


def test_render_refuses_nan_audio_before_encoding(capsys, scene, tmp_path):
    """NaN audio used to surface as `avcodec_send_frame() returned 22`."""
    wav = speech_like()
    wav[50] = np.nan
    sf.write(scene["audio"], wav, 16000, subtype="FLOAT")
    before = snapshot(tmp_path)
    rc, err = csg(capsys, _render(scene, tmp_path / "r.mp4", "--audio", scene["audio"]))
    assert_one_clear_line(rc, err, "NaN or infinite sample")
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize("which", ["--pose", "--ref", "--audio"])
def test_render_output_that_is_an_input(capsys, scene, tmp_path, which):
    target = {"--pose": scene["pose"], "--ref": scene["photo"], "--audio": scene["audio"]}[which]
    before = snapshot(tmp_path)
    rc, err = csg(capsys, _render(scene, target, "--audio", scene["audio"], "--overwrite"))
    assert_one_clear_line(rc, err, "destroy the input")
    assert_untouched(before, tmp_path)


def test_render_into_a_fifo_or_folder(capsys, scene, tmp_path):
    fifo = tmp_path / "r.mp4"
    os.mkfifo(fifo)
    before = snapshot(tmp_path)
    rc, err = csg(capsys, _render(scene, fifo, "--overwrite"))
    assert_one_clear_line(rc, err, "FIFO")
    assert_untouched(before, tmp_path)


def test_render_full_disk(capsys, scene, tmp_path, monkeypatch):
    from csg import video

    def enospc(self, frame):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(video.VideoWriter, "write", enospc)
    before = snapshot(tmp_path)
    rc, err = csg(capsys, _render(scene, tmp_path / "r.mp4"))
    line = assert_one_clear_line(rc, err, "no space left on device")
    assert "r.mp4" in line and "nothing was written" in line
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize("flag,value,needle", [("--seed", str(2 ** 64), "--seed"),
                                               ("--max-side", "-1", "--max-side"),
                                               ("--device", "gpu7", "unknown device")])
def test_render_options_out_of_range(capsys, scene, tmp_path, flag, value, needle):
    before = snapshot(tmp_path)
    rc, err = csg(capsys, _render(scene, tmp_path / "r.mp4", flag, value))
    assert_one_clear_line(rc, err, needle)
    assert_untouched(before, tmp_path)


def test_render_works_at_the_working_size(capsys, tmp_path):
    """`csg render` resizes a large photo like `csg run` does (render.max_side, 512 by default)
    instead of rendering at the photo's full size."""
    import cv2

    from csg.image import save_image
    from csg.video import probe_video
    from tests.bad_input import textured
    from tests.helpers import make_moving_pose, make_reference_pose

    big_h, big_w = 1200, 1600
    save_image(tmp_path / "big.png", cv2.resize(textured(), (big_w, big_h)))
    make_reference_pose(height=big_h, width=big_w).save(tmp_path / "ref.json")
    make_moving_pose(3, height=big_h, width=big_w).save(tmp_path / "pose.json")
    (tmp_path / "w.yaml").write_text("segment: false\nmouth: false\n")
    args = ["render", "--ref", tmp_path / "big.png", "--pose", tmp_path / "pose.json",
            "--ref-pose", tmp_path / "ref.json", "--config", tmp_path / "w.yaml", "--quiet"]
    rc, err = csg(capsys, args + ["-o", tmp_path / "a.mp4", "--max-side", "128"])
    assert rc == 0, err
    info = probe_video(tmp_path / "a.mp4")
    assert (info["width"], info["height"]) == (128, 96) and info["num_frames"] == 3
    from csg.canvas import working_size

    assert working_size(big_h, big_w, 512) == (384, 512)  # the default, as in `csg run`


def test_render_names_the_photo_without_a_person(capsys, scene, tmp_path):
    """Without --ref-pose, `csg render` extracts the photo's skeleton as `csg run` does (on the
    full photo) and a photo with no person is one line naming that photo's path."""
    args = ["render", "--ref", scene["photo"], "--pose", scene["pose"], "--config",
            scene["yaml"], "--quiet", "-o", tmp_path / "r.mp4"]
    before = snapshot(tmp_path)
    rc, err = csg(capsys, args)
    assert_one_clear_line(rc, err, str(scene["photo"]))
    assert "no person" in err or "person" in err
    assert_untouched(before, tmp_path)


def test_render_same_seed_same_bytes(capsys, scene, tmp_path):
    for name in ("a.mp4", "b.mp4"):
        rc, err = csg(capsys, _render(scene, tmp_path / name, "--audio", scene["audio"],
                                      "--seed", "5"))
        assert rc == 0, err
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


# --- skeleton files: absurd numbers and nesting ---------------------------------------------------
def _pose_doc(scene) -> dict:
    return json.loads(scene["pose"].read_text())


@pytest.mark.parametrize("key,value,needle", [
    ("fps", 1e-9, "fps must be a positive number"), ("fps", 0, "fps must be a positive number"),
    ("fps", 1e9, "fps must be a positive number"),
    ("width", 1_000_000, "at most 16384"), ("height", 100_000, "at most 16384")])
def test_pose_file_with_absurd_numbers(capsys, scene, tmp_path, key, value, needle):
    d = _pose_doc(scene)
    d[key] = value
    scene["pose"].write_text(json.dumps(d))
    before = snapshot(tmp_path)
    for cmd in (["pose", "validate", scene["pose"]],
                ["pose", "draw", scene["pose"], "-o", tmp_path / "d.mp4"]):
        rc, err = csg(capsys, cmd)
        assert_one_clear_line(rc, err, needle)
    assert_untouched(before, tmp_path)


def test_pose_draw_refuses_a_huge_canvas(capsys, scene, tmp_path):
    """A 16000 x 16000 canvas is a valid skeleton file, but drawing it would take 768 MB a frame
    (and the unbounded version tried 5 PiB)."""
    d = _pose_doc(scene)
    d["width"] = d["height"] = 16000
    scene["pose"].write_text(json.dumps(d))
    before = snapshot(tmp_path)
    for out in ("d.mp4", "d.png"):
        rc, err = csg(capsys, ["pose", "draw", scene["pose"], "-o", tmp_path / out])
        assert_one_clear_line(rc, err, "too large to draw")
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize("cmd", ["validate", "draw", "convert"])
def test_deeply_nested_json(capsys, tmp_path, cmd):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    args = {"validate": ["pose", "validate", deep],
            "draw": ["pose", "draw", deep, "-o", tmp_path / "d.png"],
            "convert": ["pose", "convert", deep, "-o", tmp_path / "c.json", "--to", "csg",
                        "--width", "64", "--height", "64"]}[cmd]
    before = snapshot(tmp_path)
    rc, err = csg(capsys, args)
    assert_one_clear_line(rc, err, "nested too deeply")
    assert_untouched(before, tmp_path)


def test_pose_draw_output_that_is_an_input(capsys, scene, tmp_path):
    voice = scene["dir"] / "voice.mp4"
    voice.write_bytes(b"an input the user wants to keep")
    before = snapshot(tmp_path)
    rc, err = csg(capsys, ["pose", "draw", scene["pose"], "--audio", voice, "-o", voice,
                           "--overwrite"])
    assert_one_clear_line(rc, err, "destroy the input")
    assert_untouched(before, tmp_path)


# --- csg pose convert: BODY_25 both ways ----------------------------------------------------------
def test_convert_body25_round_trip_keeps_the_feet(capsys, scene, tmp_path):
    from csg import keypoints as K
    from csg.pose import PoseSequence

    src = PoseSequence.load(scene["pose"])
    assert (src.scores[:, K.FEET] > 0).all()
    rc, err = csg(capsys, ["pose", "convert", scene["pose"], "-o", tmp_path / "op", "--body",
                           "body25"])
    assert rc == 0, err
    frame0 = json.loads((tmp_path / "op" / "frame_000000_keypoints.json").read_text())
    assert len(frame0["people"][0]["pose_keypoints_2d"]) == 25 * 3
    rc, err = csg(capsys, ["pose", "convert", tmp_path / "op", "-o", tmp_path / "back.json",
                           "--fps", "25"])
    assert rc == 0, err
    back = PoseSequence.load(tmp_path / "back.json")
    np.testing.assert_allclose(back.keypoints[:, K.FEET], src.keypoints[:, K.FEET], atol=1e-3)
    # COCO-18 (the editors' form) still drops them, as documented
    rc, err = csg(capsys, ["pose", "convert", scene["pose"], "-o", tmp_path / "op18"])
    assert rc == 0, err
    rc, err = csg(capsys, ["pose", "convert", tmp_path / "op18", "-o", tmp_path / "b18.json"])
    assert rc == 0, err
    assert (PoseSequence.load(tmp_path / "b18.json").scores[:, K.FEET] == 0).all()


@pytest.mark.parametrize("flag,value", [("--fps", "nan"), ("--fps", "0"), ("--width", "0"),
                                        ("--height", "10000000")])
def test_convert_options_out_of_range(capsys, scene, tmp_path, flag, value):
    before = snapshot(tmp_path)
    rc, err = csg(capsys, ["pose", "convert", scene["pose"], "-o", tmp_path / "op", flag, value])
    assert_one_clear_line(rc, err, flag)
    assert_untouched(before, tmp_path)


def test_convert_to_csg_refuses_a_wrong_extension(capsys, scene, tmp_path):
    op = tmp_path / "op"
    assert csg(capsys, ["pose", "convert", scene["pose"], "-o", op])[0] == 0
    before = snapshot(tmp_path)
    rc, err = csg(capsys, ["pose", "convert", op, "-o", tmp_path / "back.txt"])
    assert_one_clear_line(rc, err, "must be a .json file")
    assert_untouched(before, tmp_path)


def test_a_short_input_file_is_not_reported_as_ctrl_c(capsys, scene, monkeypatch):
    """click turns any EOFError (pickle, np.load, torch.load of an empty file) into Abort; the CLI
    must not say "aborted" with Ctrl-C's exit code 130."""
    from csg.pose import PoseSequence

    def short(*a, **k):
        raise EOFError("Ran out of input")

    monkeypatch.setattr(PoseSequence, "load", short)
    rc, err = csg(capsys, ["pose", "validate", scene["pose"]])
    line = assert_one_clear_line(rc, err, "empty or truncated", exit_code=2)
    assert "aborted" not in line


# --- csg data synth --size ------------------------------------------------------------------------
@pytest.mark.parametrize("size", ["100000", "3000x256", "8"])
def test_synth_size_is_bounded_and_leaves_nothing(capsys, tmp_path, size):
    before = snapshot(tmp_path)
    rc = main(["data", "synth", "--out", str(tmp_path / "ds"), "--clips", "1", "--size", size])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and "unexpected" not in err
    errors = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and "--size" in errors[0], err
    assert not (tmp_path / "ds").exists()
    assert_untouched(before, tmp_path)


def test_synth_config_bounds_the_size_too():
    from csg.data.synth import SynthConfig
    from csg.errors import ConfigError

    with pytest.raises(ConfigError, match="2048"):
        SynthConfig(size_hw=(100000, 100000))


def test_failed_synth_removes_the_folder_it_created(capsys, tmp_path, monkeypatch):
    from csg.data import synth

    def boom(root, cfg, **k):
        (Path(root) / "clips").mkdir(parents=True)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(synth, "make_corpus", boom)
    before = snapshot(tmp_path)
    rc, err = csg(capsys, ["data", "synth", "--out", tmp_path / "new" / "ds", "--clips", "1"])
    assert_one_clear_line(rc, err, "no space left on device")
    assert not (tmp_path / "new").exists()
    assert_untouched(before, tmp_path)


# --- csg eval video: a still image is not a video -------------------------------------------------
@pytest.mark.parametrize("name", ["photo.png", "photo_as.mp4"])
def test_eval_video_refuses_a_still_image(capsys, scene, tmp_path, monkeypatch, name):
    import shutil

    from eval import video_eval

    monkeypatch.setattr(video_eval, "detect_keypoints", _must_not_run)
    still = scene["dir"] / name
    if name != "photo.png":
        shutil.copy(scene["photo"], still)
    before = snapshot(tmp_path)
    rc, err = csg(capsys, ["eval", "video", "--video", still, "--pose", scene["pose"], "-o",
                           tmp_path / "rep"])
    assert_one_clear_line(rc, err, "still image")
    assert_untouched(before, tmp_path)


# --- csg train audio2pose finds its default config from any folder --------------------------------
def test_default_training_config_found_from_another_folder(tmp_path, monkeypatch):
    from csg.config import PROJECT_ROOT, find_config
    from csg.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    assert find_config("configs/audio2pose/base.yaml") == \
        PROJECT_ROOT / "configs" / "audio2pose" / "base.yaml"
    with pytest.raises(ConfigError, match="not found"):
        find_config("configs/audio2pose/nope.yaml")


def test_failed_training_leaves_no_run_folder(capsys, tmp_path, monkeypatch):
    """`csg train audio2pose` from another folder: the default config is found, and a --data with
    no training clips fails with one line before the run folder (config.yaml) is written."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "manifest.jsonl").write_text("")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    rc, err = csg(capsys, ["train", "audio2pose", "--data", tmp_path / "empty", "--out",
                           tmp_path / "run1"])
    assert rc != 0 and err.count("error:") == 1 and "Traceback" not in err, err
    assert "unexpected" not in err and not (tmp_path / "run1").exists()
    assert_untouched(before, tmp_path)


# --- csg.outputs rules, directly ------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/dev/null", "/dev/csg-never.mp4", "/proc/self/csg.json",
                                  "/sys/csg.json"])
def test_system_paths_are_refused_without_touching_them(path):
    """Only stat calls: nothing under /dev, /proc or /sys is opened for writing."""
    from csg.errors import OutputError
    from csg.outputs import check_output_path

    with pytest.raises(OutputError, match="refusing to write under"):
        check_output_path(path, overwrite=True)


def test_output_set_is_all_or_none(tmp_path):
    from csg.outputs import OutputSet

    a, b = tmp_path / "x" / "a.bin", tmp_path / "x" / "b.bin"
    with pytest.raises(RuntimeError):
        with OutputSet({"a": a, "b": b}) as out:
            out.temp("a").write_bytes(b"A")
            raise RuntimeError("failed before b")
    assert not (tmp_path / "x").exists()
    with OutputSet({"a": a, "b": b}) as out:
        out.temp("a").write_bytes(b"A")
        out.temp("b").write_bytes(b"B")
        assert not a.exists() and not b.exists()
    assert a.read_bytes() == b"A" and b.read_bytes() == b"B"
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["a.bin", "b.bin"]
    assert oct(a.stat().st_mode & 0o777) != oct(0o600)  # ordinary permissions, not mkstemp's


def test_output_set_lock_excludes_a_second_writer(tmp_path):
    from csg.errors import OutputError
    from csg.outputs import OutputSet, atomic_write_text

    p = tmp_path / "a.json"
    with OutputSet({"a": p}):
        with pytest.raises(OutputError, match="another csg command"):
            atomic_write_text(p, "{}")
    atomic_write_text(p, "{}")  # released
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.json"]


def test_single_file_writers_report_a_full_disk(tmp_path, monkeypatch):
    """Every writer (skeleton JSON of `csg pose generate`, images, datasets) goes through
    atomic_output: a full disk is one OutputError naming the file, and nothing is left."""
    from csg.errors import OutputError
    from csg.outputs import atomic_write_text

    def enospc(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", enospc)
    with pytest.raises(OutputError, match=r"p\.json: No space left on device.*nothing was written"):
        atomic_write_text(tmp_path / "p.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_output_lock_holds_across_processes(tmp_path):
    """A second process (another `csg run` writing the same name) is refused while the first
    writes; the name is free again once the first is done."""
    import subprocess
    import sys

    from csg.errors import OutputError
    from csg.outputs import atomic_write_text

    p = tmp_path / "talk.mp4"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom csg.outputs import OutputSet\n"
         f"with OutputSet({{'-o': {str(p)!r}}}) as out:\n"
         "    out.temp('-o').write_bytes(b'first')\n"
         "    print('held', flush=True)\n"
         "    sys.stdin.readline()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[1])
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match="another csg command is writing"):
            atomic_write_text(p, "second")
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0
    assert p.read_bytes() == b"first"
    atomic_write_text(p, "second")
    assert p.read_text() == "second"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["talk.mp4"]


# --- found by a bad-input sweep (2026-12-04) ------------------------------------------------------
@pytest.mark.parametrize("args,needle", [
    (lambda s, t: ["render", "--ref", s["photo"], "--pose", s["pose"], "--ref-pose", s["ref"],
                   "--config", s["yaml"], "-o", t / "v.txt", "--quiet"], "must be a .mp4 file"),
    (lambda s, t: ["pose", "extract", "--image", s["photo"], "-o", t / "ref.png"],
     "must be a .json file"),
    (lambda s, t: ["pose", "generate", "--audio", s["audio"], "--ref", s["ref"], "-o",
                   t / "p.txt", "--quiet"], "must be a .json file"),
    (lambda s, t: ["render", "--ref", s["photo"], "--pose", s["pose"], "--ref-pose", s["ref"],
                   "--config", s["yaml"], "-o", t / "v.mp4", "--max-side", "3", "--quiet"],
     "at least 64 px"),
])
def test_outputs_and_sizes_checked_before_work(capsys, scene, tmp_path, args, needle):
    before = snapshot(tmp_path)
    rc, err = csg(capsys, args(scene, tmp_path))
    assert_one_clear_line(rc, err, needle)
    assert_untouched(before, tmp_path)


def test_pose_extract_never_overwrites_its_photo(capsys, scene, tmp_path):
    before = snapshot(tmp_path)
    rc, err = csg(capsys, ["pose", "extract", "--image", scene["photo"], "-o", scene["photo"],
                           "--overwrite"])
    assert_one_clear_line(rc, err, "input")
    assert_untouched(before, tmp_path)


def test_truncated_png_is_one_line(capsys, scene, tmp_path):
    data = scene["photo"].read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    rc, err = csg(capsys, ["pose", "extract", "--image", cut, "-o", tmp_path / "r.json"])
    assert_one_clear_line(rc, err, "truncated")
    assert not (tmp_path / "r.json").exists()


def test_set_mistakes_name_the_override_not_the_file(capsys, scene, tmp_path):
    from tests.bad_input import run_args

    rc, err = csg(capsys, run_args(scene, tmp_path / "v.mp4", "--set", "nope=1"))
    assert_one_clear_line(rc, err, "--set: unknown key(s) nope")
    rc, err = csg(capsys, run_args(scene, tmp_path / "v.mp4", "--set", "stage1.steps=abc"))
    assert_one_clear_line(rc, err, "--set stage1.steps: expected int")


def test_skeleton_without_confident_points(capsys, scene, tmp_path, caplog):
    import logging

    from csg.pose import PoseSequence

    poses = PoseSequence.load(scene["pose"])
    kp = poses.keypoints.copy()
    kp[..., 2] = 0.0
    PoseSequence(kp, fps=poses.fps, width=poses.width, height=poses.height).save(tmp_path / "z.json")
    args = ["render", "--ref", scene["photo"], "--pose", tmp_path / "z.json", "--ref-pose",
            scene["ref"], "--config", scene["yaml"], "-o", tmp_path / "v.mp4", "--quiet"]
    rc, err = csg(capsys, args)
    assert_one_clear_line(rc, err, "no frame has confident keypoints")
    assert not (tmp_path / "v.mp4").exists()
    kp = poses.keypoints.copy()
    kp[6:, :, 2] = 0.0  # the second half only
    PoseSequence(kp, fps=poses.fps, width=poses.width, height=poses.height).save(tmp_path / "h.json")
    args[4] = tmp_path / "h.json"
    with caplog.at_level(logging.WARNING, logger="pose2video.warp"):
        rc, _ = csg(capsys, args)
    assert rc == 0 and "6 of 12 frames (first: 6) have no confident keypoints" in caplog.text


def test_no_person_error_names_the_photo(capsys, scene, tmp_path):
    from csg.image import save_image

    grey = tmp_path / "grey.png"
    save_image(grey, np.full((H, W, 3), 128, np.uint8))
    rc, err = csg(capsys, ["pose", "generate", "--audio", scene["audio"], "--ref", grey, "-o",
                           tmp_path / "p.json", "--quiet"])
    assert_one_clear_line(rc, err, f"{grey}: no person found")


@pytest.mark.parametrize("args,needle", [
    (["run", "--ref"], "requires an argument"),
    (["nope"], "No such command"),
    (["pose", "generate", "--steps", "x"], "not a valid integer")])
def test_click_usage_errors_are_one_line(capsys, args, needle):
    rc, err = csg(capsys, args)
    assert_one_clear_line(rc, err, needle)
    assert "--help" in err


def test_png_with_bytes_after_its_end_chunk_still_loads(scene, tmp_path):
    from csg.image import load_image

    padded = tmp_path / "padded.png"
    padded.write_bytes(scene["photo"].read_bytes() + b"\0" * 100)
    assert load_image(padded).shape[:2] == (H, W)


# --- csg train renderer / csg distill decoder: checked before a run folder is written -------------
@pytest.mark.parametrize("setting,needle", [
    ("max_steps=-1", "max_steps"), ("lr=-1", "lr"), ("batch_size=0", "batch_size"),
    ("frames_per_clip=0", "frames_per_clip"), ("carry=9", "carry"), ("drop_pose=2", "drop_pose"),
    ("mixed_precision=fp8", "mixed_precision")])
def test_train_renderer_options_out_of_range(capsys, tmp_path, setting, needle):
    before = snapshot(tmp_path)
    rc, err = csg(capsys, ["train", "renderer", "--data", tmp_path, "--out", tmp_path / "run",
                           "--set", setting])
    assert_one_clear_line(rc, err, needle)
    assert_untouched(before, tmp_path)


def test_train_renderer_bad_data_leaves_no_run_folder(capsys, tmp_path):
    (tmp_path / "talk.mp4").write_text("not a video")
    (tmp_path / "afile").write_text("x")
    before = snapshot(tmp_path)
    for args, needle in (
            (["--video", tmp_path / "talk.mp4"], "talk.mp4"),
            (["--data", tmp_path / "missing"], "missing"),
            (["--data", tmp_path], "manifest not found")):  # an empty folder: no dataset
        rc, err = csg(capsys, ["train", "renderer", *args, "--out", tmp_path / "run"])
        assert_one_clear_line(rc, err, needle)
        assert_untouched(before, tmp_path)
    rc, err = csg(capsys, ["train", "renderer", "--data", tmp_path, "--out", tmp_path / "afile"])
    assert_one_clear_line(rc, err, "is a file")
    assert_untouched(before, tmp_path)


def test_distill_decoder_refuses_a_file_that_is_not_pairs(capsys, tmp_path):
    (tmp_path / "pairs.pt").write_text("text")
    before = snapshot(tmp_path)
    rc, err = csg(capsys, ["distill", "decoder", "--pairs", tmp_path / "pairs.pt",
                           "--out", tmp_path / "dec"])
    assert_one_clear_line(rc, err, "not a pairs file")
    assert_untouched(before, tmp_path)
