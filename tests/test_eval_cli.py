"""``csg eval pose | video | compare`` end to end on tiny inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from csg.cli import main
from tests.helpers import make_moving_pose


def _audio(path, seconds=1.6, sr=16000, seed=0):
    from csg.audio import save_audio

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    bursts = (np.sin(2 * np.pi * 2.5 * t) > 0.3).astype(np.float32)  # syllable-like bursts
    wav = 0.3 * bursts * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.normal(size=t.size)
    save_audio(path, wav.astype(np.float32), sr)
    return path


@pytest.fixture
def pose_inputs(tmp_path):
    pred, gt, aud = tmp_path / "pred", tmp_path / "gt", tmp_path / "audio"
    for d in (pred, gt, aud):
        d.mkdir()
    for i, name in enumerate(["a", "b"]):
        make_moving_pose(40, 48 * 5, 64 * 5, seed=i).save(gt / f"{name}.pose.json")
        make_moving_pose(40, 48 * 5, 64 * 5, seed=10 + i).save(pred / f"{name}.pose.json")
        _audio(aud / f"{name}.wav", seed=i)
    return pred, gt, aud


@pytest.fixture
def tiny_ae(tmp_path):
    import torch

    from eval.pose_autoencoder import PoseAutoencoder

    torch.manual_seed(0)  # test-only: reproducible tiny weights
    PoseAutoencoder(window=8, hidden=8, latent_dim=3).save_pretrained(tmp_path / "ae")
    return tmp_path / "ae"


def test_eval_pose_cli_writes_report(pose_inputs, tiny_ae, tmp_path, capsys):
    pred, gt, aud = pose_inputs
    out = tmp_path / "rep"
    rc = main(["eval", "pose", "--pred", str(pred), "--gt", str(gt), "--audio", str(aud),
               "-o", str(out), "--fgd-checkpoint", str(tiny_ae)])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    s = rep["summary"]
    for k in ("fgd", "diversity", "bas", "bas_shift", "bas_other", "lipsync_r", "lipsync_offset",
              "lipsync_r_shift", "jitter", "hkc", "l1", "pck@0.05", "pck@0.1"):
        assert k in s, k
    assert rep["settings"]["autoencoder_checkpoint"] == str(tiny_ae)
    assert set(rep["per_clip"]) == {"a", "b"}
    for f in ("report.md", "lipsync_a.png", "beats_a.png", "pck_regions.png"):
        assert (out / f).is_file(), f
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rep.")]  # temp dir cleaned
    assert "report:" in capsys.readouterr().out


def test_eval_pose_cli_identical_sets_give_fgd_zero(pose_inputs, tiny_ae, tmp_path):
    _, gt, _ = pose_inputs
    out = tmp_path / "same"
    assert main(["eval", "pose", "--pred", str(gt), "--gt", str(gt), "-o", str(out),
                 "--fgd-checkpoint", str(tiny_ae)]) == 0
    s = json.loads((out / "report.json").read_text())["summary"]
    assert s["fgd"] == pytest.approx(0.0, abs=1e-6)
    assert s["pck@0.05"] == 1.0 and s["l1"] == 0.0


@pytest.mark.parametrize("args, needle", [
    (["--pred", "{tmp}/nope.pose.json"], "nope.pose.json"),
    (["--pred", "{pred}", "--audio", "{tmp}/noaudio"], "noaudio"),
    (["--pred", "{pred}", "--fgd-checkpoint", "{tmp}"], "config.json"),
])
def test_eval_pose_cli_bad_input_one_line(pose_inputs, tmp_path, capsys, args, needle):
    pred, _, _ = pose_inputs
    args = [a.format(tmp=tmp_path, pred=pred) for a in args]
    rc = main(["eval", "pose", *args, "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc != 0
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_eval_pose_cli_unpaired_audio(pose_inputs, tmp_path, capsys):
    pred, _, aud = pose_inputs
    (aud / "b.wav").unlink()
    rc = main(["eval", "pose", "--pred", str(pred), "--audio", str(aud), "--no-fgd",
               "-o", str(tmp_path / "r")])
    assert rc != 0 and "paired by name" in capsys.readouterr().err


def _tiny_dataset(root):
    from csg.data.manifest import CLIPS_DIR, ClipRecord, save_npz, write_manifest

    from csg.audio import frame_bounds, load_audio

    (root / CLIPS_DIR).mkdir(parents=True)
    recs = []
    for i in range(2):
        seq = make_moving_pose(40, 48 * 5, 64 * 5, seed=i)
        wav = load_audio(_audio(root / f"a{i}.wav", seed=i))
        n = int(frame_bounds(40, 16000, 25.0)[-1])
        save_npz(root / CLIPS_DIR / f"c{i}.npz", poses=seq.keypoints, audio=wav[:n],
                 ref=seq.keypoints[0], fps=25.0, width=seq.width, height=seq.height)
        recs.append(ClipRecord(id=f"c{i}", npz=f"{CLIPS_DIR}/c{i}.npz", video=None, fps=25.0,
                               num_frames=40, width=seq.width, height=seq.height, speaker=f"s{i}",
                               split="test", source="synth", seconds=1.6))
    write_manifest(root, recs)
    return root


def test_eval_compare_cli_gt_and_pluggable(tmp_path, tiny_ae, capsys):
    root = _tiny_dataset(tmp_path / "ds")
    out = tmp_path / "cmp"
    rc = main(["eval", "compare", "--data", str(root), "--split", "test", "--variant", "gt=gt",
               "--variant", "rule=rule", "-o", str(out), "--fgd-checkpoint", str(tiny_ae)])
    assert rc == 0, capsys.readouterr().err
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["gt", "rule"]
    assert rows[0]["fgd"] == pytest.approx(0.0, abs=1e-6) and rows[0]["pck@0.1"] == 1.0
    assert rows[1]["fgd"] > 0.0
    assert "| variant |" in (out / "report.md").read_text()


def test_compare_variant_parsing_and_errors():
    from csg.errors import InputError
    from eval.compare import parse_variant

    assert parse_variant("sg=guidance:sg,steps:10") == ("sg", {"kind": "model", "guidance": "sg",
                                                               "steps": 10})
    assert parse_variant("r=rule") == ("r", {"kind": "rule"})
    for bad in ("nospec", "x=guidance", "x=steps:ten"):
        with pytest.raises(InputError):
            parse_variant(bad)


@pytest.mark.slow
def test_eval_video_cli_runs_mediapipe(tmp_path, capsys):
    from csg.draw import draw_pose
    from csg.video import write_video

    seq = make_moving_pose(6, 96, 128)
    frames = [draw_pose(k, (96, 128)) for k in seq.keypoints]
    write_video(tmp_path / "v.mp4", frames, 25.0)
    seq.save(tmp_path / "d.pose.json")
    rc = main(["eval", "video", "--video", str(tmp_path / "v.mp4"), "--pose",
               str(tmp_path / "d.pose.json"), "--gt", str(tmp_path / "v.mp4"), "-o",
               str(tmp_path / "vr")])
    assert rc == 0, capsys.readouterr().err
    s = json.loads((tmp_path / "vr" / "report.json").read_text())["summary"]
    assert s["psnr_gt"] == "inf" and s["ssim_gt"] == 1.0
    assert (tmp_path / "vr" / "pck_regions.png").is_file()


def test_eval_video_cli_missing_video_one_line(tmp_path, capsys):
    make_moving_pose(4, 48, 64).save(tmp_path / "d.pose.json")
    rc = main(["eval", "video", "--video", str(tmp_path / "none.mp4"), "--pose",
               str(tmp_path / "d.pose.json"), "-o", str(tmp_path / "vr")])
    err = capsys.readouterr().err
    assert rc != 0 and err.startswith("error: ") and "none.mp4" in err and err.count("\n") == 1


def test_compare_model_variant_goes_through_the_pipeline_api(tmp_path, monkeypatch):
    import audio2pose

    from csg.pose import PoseSequence
    from eval.compare import load_split, make_generator, parse_variant, run_variants

    calls = []

    class FakePipeline:  # stands in for audio2pose.Audio2PosePipeline (the real one needs weights)
        @classmethod
        def from_pretrained(cls, path=None, *, device="cpu"):
            calls.append(("load", path))
            return cls()

        def __call__(self, wav, sr, ref, *, steps, cfg_scale, generator, guide, progress, seed):
            calls.append(("gen", steps, cfg_scale, seed, guide))
            T = len(wav) * 25 // sr
            return PoseSequence(np.repeat(ref.keypoints, T, 0), 25.0, ref.width, ref.height)

    monkeypatch.setattr(audio2pose, "Audio2PosePipeline", FakePipeline, raising=False)
    clips = load_split(_tiny_dataset(tmp_path / "ds"), "test")
    name, opts = parse_variant("m=checkpoint:ck,steps:3,cfg:1.5")
    rows, _ = run_variants(clips, {name: make_generator(opts)}, seed=7)
    assert calls == [("load", "ck"), ("gen", 3, 1.5, 7, None), ("gen", 3, 1.5, 8, None)]
    assert rows[0]["variant"] == "m" and rows[0]["jitter"] == 0.0  # a frozen reference pose
    from csg.errors import InputError

    with pytest.raises(InputError, match="unknown"):
        make_generator(parse_variant("m=temperature:2")[1])
