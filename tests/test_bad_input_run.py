"""Issue #11 B through `csg run`: outputs that must not be written, signals, full disks, locks,
numbers out of range and broken inputs. Each case: non-zero exit, one clear line, no traceback, no
file left, nothing outside the output touched. Stage 1 is skipped (a given skeleton) unless the case
is about it, so every case takes about a second."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from csg.cli import main
from tests.bad_input import (assert_one_clear_line, assert_untouched, make_scene, run_args,
                             snapshot, speech_like)


@pytest.fixture
def scene(tmp_path):
    return make_scene(tmp_path)


def csg(capsys, args):
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def test_scene_renders(capsys, scene, tmp_path):
    """The baseline the failure cases start from: the same command succeeds."""
    out = tmp_path / "o" / "talk.mp4"
    rc, err = csg(capsys, run_args(scene, out))
    assert rc == 0, err
    assert sorted(p.name for p in out.parent.iterdir()) == ["talk.mp4", "talk.pose.json",
                                                            "talk.run.json"]


# --- outputs that are not regular files ----------------------------------------------------------
def _fifo(p: Path) -> Path:
    os.mkfifo(p)
    return p


def _folder(p: Path) -> Path:
    p.mkdir()
    return p


def _dev_null_link(p: Path) -> Path:
    p.symlink_to("/dev/null")  # never written through: the real /dev/null is not touched
    return p


def _socket(p: Path) -> Path:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(p))
    except OSError:
        pytest.skip("path too long for a unix socket here")
    finally:
        s.close()
    return p


@pytest.mark.parametrize("option", ["-o", "--pose-out"])
@pytest.mark.parametrize("kind,make,needle", [
    ("fifo", _fifo, "FIFO"), ("folder", _folder, "folder"), ("socket", _socket, "socket"),
    ("dev_null_link", _dev_null_link, "/dev")])
def test_output_that_is_not_a_regular_file(capsys, scene, tmp_path, option, kind, make, needle):
    import stat

    target = make(tmp_path / ("t.mp4" if option == "-o" else "t.json"))
    mode = os.lstat(target).st_mode
    out = tmp_path / "talk.mp4"
    args = run_args(scene, out, "--overwrite")
    if option == "-o":
        args[args.index("-o") + 1] = str(target)
    else:
        args += ["--pose-out", str(target)]
    before = snapshot(tmp_path)
    rc, err = csg(capsys, args)
    assert_one_clear_line(rc, err, needle)
    assert os.lstat(target).st_mode == mode and stat.S_IFMT(mode) != stat.S_IFREG
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize("path", ["/proc/csg-test-p.json", "/sys/csg-test.json",
                                  "/dev/csg-test-never-created.json"])
def test_pose_out_under_system_folders(capsys, scene, tmp_path, path):
    """`--pose-out /proc/p.json` used to keep out.mp4: now refused before any work."""
    before = snapshot(tmp_path)
    rc, err = csg(capsys, run_args(scene, tmp_path / "talk.mp4", "--pose-out", path))
    assert_one_clear_line(rc, err, "refusing to write under")
    assert not Path(path).exists()
    assert_untouched(before, tmp_path)


# --- outputs that collide with each other or with an input ---------------------------------------
@pytest.mark.parametrize("pose_out", ["talk.mp4", "talk.run.json"])
def test_outputs_that_collide(capsys, scene, tmp_path, pose_out):
    out = tmp_path / "talk.mp4"
    before = snapshot(tmp_path)
    rc, err = csg(capsys, run_args(scene, out, "--pose-out", tmp_path / pose_out))
    assert_one_clear_line(rc, err, "same file")
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize("how", ["same path", "relative path", "symlink", "hard link"])
def test_output_that_is_an_input(capsys, scene, tmp_path, monkeypatch, how):
    """`--audio speech.wav -o speech.wav --overwrite` used to replace the speech with the video."""
    audio = scene["audio"]
    if how == "same path":
        target = audio
    elif how == "relative path":
        monkeypatch.chdir(tmp_path)
        target = Path("in/../in/speech.wav")
    elif how == "symlink":
        target = tmp_path / "link.wav"
        target.symlink_to(audio)
    else:
        target = tmp_path / "hard.wav"
        os.link(audio, target)
    before = snapshot(tmp_path)
    rc, err = csg(capsys, run_args(scene, target, "--overwrite"))
    assert_one_clear_line(rc, err, "destroy the input")
    assert_untouched(before, tmp_path)


def test_pose_out_that_is_the_input_pose(capsys, scene, tmp_path):
    before = snapshot(tmp_path)
    rc, err = csg(capsys, run_args(scene, tmp_path / "talk.mp4", "--pose-out", scene["pose"],
                                   "--overwrite"))
    assert_one_clear_line(rc, err, "--pose")
    assert_untouched(before, tmp_path)


# --- signals, stale temporary files, locks, full disk --------------------------------------------
def _fail_at_frame(monkeypatch, n: int, action):
    from csg import video

    real = video.VideoWriter.write

    def write(self, frame):
        if self.num_frames == n:
            action()
        return real(self, frame)

    monkeypatch.setattr(video.VideoWriter, "write", write)


@pytest.mark.parametrize("sig,code,needle", [(signal.SIGTERM, 143, "terminated"),
                                             (signal.SIGINT, 130, "interrupted")])
def test_signal_while_rendering_leaves_nothing(capsys, scene, tmp_path, monkeypatch, sig, code,
                                               needle):
    out = tmp_path / "new" / "talk.mp4"
    # Ctrl-C as a terminal delivers it: a shell starts background jobs (CI, `cmd &`) with SIGINT
    # ignored, which Python and csg rightly respect, so give this process the default handler
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _signal_run(capsys, tmp_path, monkeypatch, scene, out, sig, code, needle)
    finally:
        signal.signal(signal.SIGINT, previous)


def _signal_run(capsys, tmp_path, monkeypatch, scene, out, sig, code, needle):
    _fail_at_frame(monkeypatch, 3, lambda: os.kill(os.getpid(), sig))
    before = snapshot(tmp_path)
    rc, err = csg(capsys, run_args(scene, out))
    assert_one_clear_line(rc, err, needle, exit_code=code)
    assert not (tmp_path / "new").exists()  # the folder this run created is gone too
    assert_untouched(before, tmp_path)
    assert signal.getsignal(signal.SIGTERM) is not None  # the CLI restored the handler


def test_stale_temp_files_of_a_killed_run_are_removed(capsys, scene, tmp_path):
    """After a SIGKILL, the next run writing the same name removes the temporary files it left
    (and only those: another output's temporary file of the same folder stays)."""
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    stale = [out_dir / ".talk.ab12cd_e.tmp.mp4", out_dir / ".talk.pose.zz9yy8xx.tmp.json",
             out_dir / ".talk.run.q1w2e3r4.tmp.json"]
    other = [out_dir / ".other.ab12cd_e.tmp.mp4", out_dir / ".talk.txt", out_dir / "keep.mp4"]
    for p in stale + other:
        p.write_bytes(b"x")
    rc, err = csg(capsys, run_args(scene, out_dir / "talk.mp4"))
    assert rc == 0, err
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in other)
    assert sorted(p.name for p in out_dir.iterdir() if p not in other) == \
        ["talk.mp4", "talk.pose.json", "talk.run.json"]


def test_an_output_being_written_is_locked(capsys, scene, tmp_path):
    """Two runs writing the same -o: the second refuses instead of mixing outputs."""
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    fd = os.open(out_dir / ".talk.pose.json.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = snapshot(tmp_path)
        rc, err = csg(capsys, run_args(scene, out_dir / "talk.mp4"))
        assert_one_clear_line(rc, err, "another csg command is writing")
        assert_untouched(before, tmp_path)
    finally:
        os.close(fd)


@pytest.mark.parametrize("where", ["video", "pose json"])
def test_full_disk_says_which_output_and_writes_nothing(capsys, scene, tmp_path, monkeypatch,
                                                        where):
    def enospc(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "video":
        _fail_at_frame(monkeypatch, 2, enospc)
    else:  # the video is finished by then: it must not be kept without its JSON
        from csg.pose import PoseSequence

        monkeypatch.setattr(PoseSequence, "to_json", enospc)
    out = tmp_path / "o" / "talk.mp4"
    before = snapshot(tmp_path)
    rc, err = csg(capsys, run_args(scene, out))
    line = assert_one_clear_line(rc, err, "no space left on device")
    assert "talk.mp4" in line and "nothing was written" in line
    assert not (tmp_path / "o").exists()
    assert_untouched(before, tmp_path)


def test_failure_keeps_existing_outputs_when_overwriting(capsys, scene, tmp_path, monkeypatch):
    """With --overwrite, a run that fails half-way leaves the previous outputs as they were."""
    out = tmp_path / "o" / "talk.mp4"
    rc, err = csg(capsys, run_args(scene, out))
    assert rc == 0, err
    before = snapshot(tmp_path)
    _fail_at_frame(monkeypatch, 5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    rc, err = csg(capsys, run_args(scene, out, "--overwrite"))
    assert_one_clear_line(rc, err, "terminated")
    assert_untouched(before, tmp_path)


# --- numbers and names out of range: refused before any work -------------------------------------
@pytest.mark.parametrize("override,needle", [
    ("fps=0", "fps"), ("fps=-25", "fps"), ("fps=.nan", "fps"), ("fps=1e9", "fps"),
    ("stage1.steps=0", "stage1.steps"), ("stage1.steps=-1", "stage1.steps"),
    ("stage1.steps=100000", "stage1.steps"), ("stage1.cfg_scale=.nan", "cfg_scale"),
    ("stage1.cfg_scale=.inf", "cfg_scale"), ("stage1.cfg_scale=1e30", "cfg_scale"),
    ("stage1.lambda_face=.nan", "lambda_face"), ("stage1.guided_fraction=2", "guided_fraction"),
    ("seed=18446744073709551616", "seed"), ("seed=-1", "seed"),
    ("limits.max_audio_seconds=.nan", "max_audio_seconds"),
    ("limits.max_audio_seconds=0", "max_audio_seconds"), ("render.max_side=-5", "max_side"),
    ("device=nonsense", "unknown device"), ("stage1.guidance=maybe", "guidance")])
def test_config_values_out_of_range(capsys, scene, tmp_path, monkeypatch, override, needle):
    from pipeline.pipeline import CoSpeechPipeline

    monkeypatch.setattr(CoSpeechPipeline, "__init__", _must_not_run)
    before = snapshot(tmp_path)
    rc, err = csg(capsys, run_args(scene, tmp_path / "o" / "talk.mp4", "--set", override))
    assert_one_clear_line(rc, err, needle)
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize("flag,value,needle", [
    ("--seed", str(2 ** 64), "--seed"), ("--seed", "-3", "--seed"),
    ("--device", "nonsense", "unknown device"), ("--device", "cuda", "no CUDA GPU"),
    ("--device", "cuda:0", "no CUDA GPU")])
def test_cli_options_out_of_range(capsys, scene, tmp_path, monkeypatch, flag, value, needle):
    import torch

    from pipeline.pipeline import CoSpeechPipeline

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only machine
    monkeypatch.setattr(CoSpeechPipeline, "__init__", _must_not_run)
    before = snapshot(tmp_path)
    rc, err = csg(capsys, run_args(scene, tmp_path / "o" / "talk.mp4", flag, value))
    assert_one_clear_line(rc, err, needle)
    assert_untouched(before, tmp_path)


def _must_not_run(*a, **k):
    raise AssertionError("work started before the options were checked")


# --- broken inputs -------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_audio_with_nan_or_inf_samples(capsys, scene, tmp_path, bad):
    wav = speech_like()
    wav[4000] = bad
    sf.write(scene["audio"], wav, 16000, subtype="FLOAT")
    out = tmp_path / "new" / "talk.mp4"
    before = snapshot(tmp_path)
    rc, err = csg(capsys, run_args(scene, out))
    assert_one_clear_line(rc, err, "NaN or infinite sample")
    assert not (tmp_path / "new").exists()  # nor the folder the run created
    assert_untouched(before, tmp_path)


def test_audio_with_nan_reaching_stage_1_is_refused(capsys, scene, tmp_path, monkeypatch):
    """Without --pose too: stage 1 is never reached."""
    from pipeline.pipeline import CoSpeechPipeline

    monkeypatch.setattr(CoSpeechPipeline, "generate_poses", _must_not_run)
    wav = speech_like()
    wav[100:200] = np.nan
    sf.write(scene["audio"], wav, 16000, subtype="FLOAT")
    args = run_args(scene, tmp_path / "o" / "talk.mp4")
    i = args.index("--pose")
    del args[i:i + 2]
    before = snapshot(tmp_path)
    rc, err = csg(capsys, args)
    assert_one_clear_line(rc, err, "NaN or infinite sample")
    assert_untouched(before, tmp_path)


def _loop_config(d: Path) -> Path:
    (d / "a.yaml").write_text("base: b.yaml\nseed: 1\n")
    (d / "b.yaml").write_text("base: a.yaml\nfps: 25\n")
    return d / "a.yaml"


def _self_config(d: Path) -> Path:
    (d / "self.yaml").write_text("base: self.yaml\n")
    return d / "self.yaml"


def _binary_config(d: Path) -> Path:
    (d / "bin.yaml").write_bytes(bytes(range(256)) * 4)
    return d / "bin.yaml"


def _png_config(d: Path) -> Path:
    import shutil

    shutil.copy(d / "photo.png", d / "cfg.yaml")
    return d / "cfg.yaml"


@pytest.mark.parametrize("make,needle", [(_loop_config, "loops"), (_self_config, "loops"),
                                         (_binary_config, "not a text file"),
                                         (_png_config, "not a text file")])
def test_config_file_that_loops_or_is_not_text(capsys, scene, tmp_path, make, needle):
    cfg = make(scene["dir"])
    before = snapshot(tmp_path)
    rc, err = csg(capsys, run_args(scene, tmp_path / "o" / "talk.mp4", "--config", cfg))
    assert_one_clear_line(rc, err, needle)
    assert_untouched(before, tmp_path)


def _deep(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("option", ["--pose", "--ref-pose"])
def test_deeply_nested_json(capsys, scene, tmp_path, option):
    deep = scene["dir"] / "deep.json"
    deep.write_text(_deep())
    args = run_args(scene, tmp_path / "o" / "talk.mp4")
    args[args.index(option) + 1] = str(deep)
    before = snapshot(tmp_path)
    rc, err = csg(capsys, args)
    assert_one_clear_line(rc, err, "nested too deeply")
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize("fps", [1e-9, 0.5, 1e6])
def test_pose_json_with_an_absurd_fps(capsys, scene, tmp_path, fps):
    """A 1e-9 fps skeleton used to ask for 59.6 GiB of audio padding."""
    d = json.loads(scene["pose"].read_text())
    d["fps"] = fps
    scene["pose"].write_text(json.dumps(d))
    before = snapshot(tmp_path)
    rc, err = csg(capsys, run_args(scene, tmp_path / "o" / "talk.mp4"))
    assert_one_clear_line(rc, err, "fps must be a positive number in [1, 240]")
    assert_untouched(before, tmp_path)


# --- renderer options: resolved like `csg render`, checked before stage 1 ------------------------
def test_bad_renderer_option_fails_fast_before_stage_1(capsys, scene, tmp_path, monkeypatch):
    from pipeline.pipeline import CoSpeechPipeline

    monkeypatch.setattr(CoSpeechPipeline, "generate_poses", _must_not_run)
    monkeypatch.setattr(CoSpeechPipeline, "extract_reference", _must_not_run)
    scene["yaml"].write_text("segment: false\nbogus_option: 3\n")
    args = run_args(scene, tmp_path / "o" / "talk.mp4")
    i = args.index("--pose")
    del args[i:i + 2]  # stage 1 would run if the option were not checked first
    before = snapshot(tmp_path)
    t0 = time.perf_counter()
    rc, err = csg(capsys, args)
    assert time.perf_counter() - t0 < 5.0
    assert_one_clear_line(rc, err, "bogus_option")
    assert_untouched(before, tmp_path)


def test_unknown_renderer_fails_before_stage_1(capsys, scene, tmp_path, monkeypatch):
    from pipeline.pipeline import CoSpeechPipeline

    monkeypatch.setattr(CoSpeechPipeline, "generate_poses", _must_not_run)
    before = snapshot(tmp_path)
    rc, err = csg(capsys, run_args(scene, tmp_path / "o" / "talk.mp4", "--renderer", "nope"))
    assert_one_clear_line(rc, err, "not registered")
    assert_untouched(before, tmp_path)


def test_packaged_renderer_config_works_from_any_folder(capsys, scene, tmp_path, monkeypatch):
    """`csg run --set render.config=configs/pose2video/warp.yaml` (relative to the project) from
    another working folder; the record shows the resolved renderer options were used."""
    monkeypatch.chdir(tmp_path)
    args = run_args(scene, tmp_path / "o" / "talk.mp4")
    args[args.index(f"render.config={scene['yaml']}")] = \
        "render.config=configs/pose2video/warp.yaml"
    rc, err = csg(capsys, args)
    assert rc == 0, err
    assert (tmp_path / "o" / "talk.mp4").stat().st_size > 0
