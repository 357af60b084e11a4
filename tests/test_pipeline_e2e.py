"""End to end on CPU with a tiny stage-1 model built from a config in code, and the warp renderer."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from csg.cli import main
from tests.helpers import save_tiny_stage1, speech_like
from csg.pose import PoseSequence

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PHOTO = EXAMPLES / "images" / "moore_anyone-3.png"


@pytest.fixture(scope="module")
def tiny_stage1(tmp_path_factory):
    return save_tiny_stage1(tmp_path_factory.mktemp("tiny") / "stage1")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    sf.write(d / "speech.wav", speech_like(1.2), 16000)
    return {"ref": PHOTO, "audio": d / "speech.wav"}


def cli(capsys, *args):
    rc = main(["run", *map(str, args)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out


def test_api_runs_both_stages(tiny_stage1, inputs):
    import torch

    from csg.audio import load_audio
    from csg.image import load_image
    from pipeline import CoSpeechPipeline

    pipe = CoSpeechPipeline.from_pretrained(tiny_stage1)
    pipe = CoSpeechPipeline.from_config(pipe.config, ["render.max_side=96"], stage1_dir=tiny_stage1)
    image, wav = load_image(inputs["ref"]), load_audio(inputs["audio"])
    out = pipe(image, wav, sr=16000, generator=torch.Generator().manual_seed(3))
    assert out.poses.num_frames == 30  # round(1.2 s * 25 fps)
    assert (out.poses.height, out.poses.width) == image.shape[:2]
    assert out.frames.dtype == np.uint8 and out.frames.shape[0] == 30
    assert max(out.frames.shape[1:3]) <= 96 and out.frames.shape[3] == 3
    assert {"extract", "audio2pose", "render"} <= set(out.timings)
    np.testing.assert_allclose(out.poses.keypoints[0, :, :2],
                               pipe.extract_reference(image).keypoints[0, :, :2], atol=1.0)


def test_save_pretrained_round_trip(tiny_stage1, inputs, tmp_path):
    import torch

    from csg.audio import load_audio
    from csg.image import load_image
    from pipeline import CoSpeechPipeline

    image, wav = load_image(inputs["ref"]), load_audio(inputs["audio"])
    a = CoSpeechPipeline.from_pretrained(tiny_stage1)
    ref = a.extract_reference(image)
    pa = a.generate_poses(wav, 16000, ref, generator=torch.Generator().manual_seed(1),
                          progress=False)
    folder = a.save_pretrained(tmp_path / "saved")
    b = CoSpeechPipeline.from_pretrained(folder)
    pb = b.generate_poses(wav, 16000, ref, generator=torch.Generator().manual_seed(1),
                          progress=False)
    # weights round-trip exactly; outputs of separately loaded models agree to float tolerance
    sa, sb = a.audio2pose.model.state_dict(), b.audio2pose.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    np.testing.assert_allclose(pb.keypoints, pa.keypoints, rtol=0, atol=1e-3)
    pc = b.generate_poses(wav, 16000, ref, generator=torch.Generator().manual_seed(2),
                          progress=False)
    assert not np.array_equal(pa.keypoints, pc.keypoints)


def test_cli_writes_video_skeleton_and_record(capsys, tiny_stage1, inputs, tmp_path):
    from csg.video import probe_video

    out = tmp_path / "o" / "talk.mp4"
    args = ["--ref", inputs["ref"], "--audio", inputs["audio"], "-o", out, "--checkpoint",
            tiny_stage1, "--set", "render.max_side=96", "--seed", "7", "--quiet"]
    cli(capsys, *args)
    info = probe_video(out)
    assert info["num_frames"] == 30 and info["has_audio"]
    assert abs(info["duration"] - 1.2) < 0.05
    pose = PoseSequence.load(out.with_name("talk.pose.json"))
    assert pose.num_frames == 30
    record = json.loads(out.with_name("talk.run.json").read_text())
    assert record["seed"] == 7 and record["config"]["render"]["max_side"] == 96
    assert {"extract", "audio2pose", "render", "total"} <= set(record["timings"])
    assert "torch" in record["versions"]
    # same seed -> byte-identical skeleton and video
    first = out.with_name("talk.pose.json").read_bytes()
    video = out.read_bytes()
    cli(capsys, *args, "--overwrite")
    assert out.with_name("talk.pose.json").read_bytes() == first
    assert out.read_bytes() == video


def test_edit_and_rerender(capsys, tiny_stage1, inputs, tmp_path):
    from csg import keypoints as K
    from csg.video import probe_video

    out = tmp_path / "talk.mp4"
    base = ["--ref", inputs["ref"], "--audio", inputs["audio"], "--checkpoint", tiny_stage1,
            "--set", "render.max_side=96", "--quiet"]
    cli(capsys, *base, "-o", out)
    pose = PoseSequence.load(out.with_name("talk.pose.json"))
    k = pose.keypoints.copy()
    k[:, K.RIGHT_WRIST, 1] -= 40  # raise the right hand
    edited = pose.replace(keypoints=k[:20])  # and cut it shorter than the audio
    edited_path = tmp_path / "edited.json"
    edited.save(edited_path)
    out2 = tmp_path / "edited.mp4"
    rc = main(["run", *map(str, base[:-1]), "-o", str(out2), "--pose", str(edited_path)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "20 frames" in err and "trimmed" in err  # the length policy is said, not silent
    assert probe_video(out2)["num_frames"] == 20
    rerendered = PoseSequence.load(out2.with_name("edited.pose.json"))
    np.testing.assert_array_equal(rerendered.keypoints, edited.keypoints)


def test_sync_guidance_modes_reach_stage1(tiny_stage1, inputs, tmp_path):
    """--guidance sg / dg change the skeleton; none does not load classifiers at all."""
    import shutil

    import torch

    from audio2pose.classifier import SyncClassifier
    from csg.audio import load_audio
    from csg.features import AudioFeatureConfig, feature_dim
    from csg.image import load_image
    from pipeline import CoSpeechPipeline

    folder = tmp_path / "stage1"
    shutil.copytree(tiny_stage1, folder)
    for seed, region in enumerate(("face", "nonface")):
        torch.manual_seed(seed)  # test-only: fixes the random init of the tiny classifiers
        SyncClassifier(region=region, audio_dim=feature_dim(AudioFeatureConfig(n_mels=8, context=1)),
                       dim=16, layers=1, heads=2, ff_mult=2, dropout=0.0
                       ).eval().save_pretrained(folder / f"classifier_{region}")
    image, wav = load_image(inputs["ref"]), load_audio(inputs["audio"])
    results = {}
    for mode in ("none", "sg", "dg"):
        pipe = CoSpeechPipeline.from_config(overrides=[f"stage1.guidance={mode}",
                                                       "stage1.lambda_nonface=50",
                                                       "stage1.lambda_face=50"],
                                            stage1_dir=folder)
        ref = pipe.extract_reference(image) if not results else ref
        results[mode] = pipe.generate_poses(wav, 16000, ref, progress=False,
                                            generator=torch.Generator().manual_seed(0)).keypoints
    assert not np.allclose(results["none"], results["sg"])
    assert not np.allclose(results["sg"], results["dg"])
    missing = CoSpeechPipeline.from_config(overrides=["stage1.guidance=sg"], stage1_dir=tiny_stage1)
    from csg.errors import CsgError

    with pytest.raises(CsgError):
        missing.generate_poses(wav, 16000, ref, progress=False)
