"""CoSpeechPipeline wiring (#12 point 4): per-stage generators, renderer protocol v2 calls, device
and options reaching the renderer, the component index of save_pretrained. A stochastic fake
renderer (frames drawn from the generator) makes the noise visible; stage 1 is a tiny model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.bad_input import H, W, make_scene, speech_like


class NoiseRenderer:
    """Protocol v2; each frame is generator noise plus the pose's mean x, so both matter."""

    name = "noise"
    needs = "nothing"
    window = 1
    overlap = 0

    def __init__(self, device="cpu", dtype=None, **options):
        self.device, self.dtype, self.options = device, dtype, options
        self.calls: list[dict] = []

    def prepare(self, ref_image, ref_pose=None):
        self.calls.append({"prepare": ref_image.shape})
        return {"hw": ref_image.shape[:2]}

    def render(self, state, poses, *, audio=None, generator=None, callback=None, progress=True,
               chunk=16):
        import torch

        self.calls.append({"audio": None if audio is None else len(audio), "frames": len(poses),
                           "chunk": chunk})
        h, w = state["hw"]
        assert (poses.height, poses.width) == (h, w)
        for a in range(0, len(poses), chunk):
            b = min(a + chunk, len(poses))
            noise = torch.rand((b - a, h, w, 3), generator=generator).numpy()
            x = poses.keypoints[a:b, :, 0].mean(axis=1)[:, None, None, None] / w
            yield np.clip((noise * 0.5 + x * 0.5) * 255, 0, 255).astype(np.uint8)


@pytest.fixture
def fake_registry(monkeypatch):
    """`get_renderer("noise", ...)` builds a NoiseRenderer and records its keyword arguments."""
    import pose2video.cli as pcli

    built: list[NoiseRenderer] = []
    real = pcli.get_renderer

    def get_renderer(name, **kwargs):
        if name != "noise":
            return real(name, **kwargs)
        r = NoiseRenderer(**kwargs)
        built.append(r)
        return r

    monkeypatch.setattr(pcli, "get_renderer", get_renderer)
    return built


@pytest.fixture(scope="module")
def tiny_stage1(tmp_path_factory):
    import torch

    from audio2pose.config import SamplingConfig
    from audio2pose.model import PoseDenoiser
    from audio2pose.pipeline import Audio2PosePipeline
    from csg.features import AudioFeatureConfig, feature_dim

    torch.manual_seed(0)  # test-only: fixes the random init of the tiny model
    feats = AudioFeatureConfig(n_mels=8, context=1)
    model = PoseDenoiser(audio_dim=feature_dim(feats), dim=32, depth=1, heads=2, ff_mult=2)
    # small motion statistics: the random model's skeletons stay near the reference, as a trained
    # model's do (the warp renderer refuses a person far off the photo)
    model.set_coord_stats(torch.zeros(133, 2), torch.full((133, 2), 0.05))
    pipe = Audio2PosePipeline(model, feats, 25.0, SamplingConfig(window=16, overlap=4, steps=2))
    return pipe.save_pretrained(tmp_path_factory.mktemp("tiny") / "stage1")


@pytest.fixture
def scene(tmp_path):
    from csg.image import load_image
    from csg.pose import PoseSequence

    s = make_scene(tmp_path)
    return {"image": load_image(s["photo"]), "ref": PoseSequence.load(s["ref"]),
            "wav": speech_like(0.8), "paths": s}


def _pipe(tiny_stage1, *overrides, **components):
    from pipeline import CoSpeechPipeline

    return CoSpeechPipeline.from_config(overrides=["render.renderer=noise", "render.max_side=64",
                                                   *overrides], stage1_dir=tiny_stage1,
                                        **components)


def test_rerendering_a_skeleton_uses_the_same_stage2_noise(tiny_stage1, scene, fake_registry):
    """Both stages get their own generator from one seed: rendering the run's own skeleton again
    (no stage 1 this time) gives the same frames; another seed gives other frames."""
    pipe = _pipe(tiny_stage1)
    full = pipe(scene["image"], scene["wav"], ref_pose=scene["ref"], seed=3)
    again = pipe(scene["image"], scene["wav"], ref_pose=scene["ref"], poses=full.poses, seed=3)
    np.testing.assert_array_equal(again.frames, full.frames)
    other = pipe(scene["image"], scene["wav"], ref_pose=scene["ref"], poses=full.poses, seed=4)
    assert not np.array_equal(other.frames, full.frames)
    # stage 1 keeps the plain seed, as `csg pose generate --seed 3` does
    import torch

    direct = pipe.generate_poses(scene["wav"], 16000, scene["ref"], progress=False,
                                 generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(direct.keypoints, full.poses.keypoints)


def test_stage_seeds_are_fixed_and_distinct():
    from csg.seeds import stage_seed

    assert stage_seed(7, "audio2pose") == 7
    assert stage_seed(7, "render") == stage_seed(7, "render") != stage_seed(8, "render")
    assert 0 <= stage_seed(2 ** 64 - 1, "render") < 2 ** 64
    with pytest.raises(ValueError):
        stage_seed(1, "other")


def test_protocol_v2_calls_device_options_and_audio_rate(tiny_stage1, scene, fake_registry,
                                                         tmp_path):
    """prepare once at the working size, render with audio resampled to 16 kHz, the chunk, the
    config's device, and the options of render.config."""
    cfg = tmp_path / "noise.yaml"
    cfg.write_text("strength: 0.5\n")
    pipe = _pipe(tiny_stage1, f"render.config={cfg}", "render.dtype=float16")
    pipe.audio2pose  # stage 1 loaded on the CPU first; the renderer is built on first use
    object.__setattr__(pipe.config, "device", "meta")  # any name: it must just be passed on
    wav8k = speech_like(0.8, sr=8000)
    out = pipe(scene["image"], wav8k, sr=8000, ref_pose=scene["ref"], output_type="iterator",
               chunk=5)
    r = fake_registry[-1]
    assert r.device == "meta" and r.dtype == "float16" and r.options == {"strength": 0.5}
    assert r.calls == [{"prepare": (48, 64, 3)}]  # prepared once, before the frames are pulled
    chunks = list(out.frames)
    assert [len(c) for c in chunks] == [5, 5, 5, 5]
    assert r.calls[1] == {"audio": 12800, "frames": 20, "chunk": 5}  # 0.8 s at 16 kHz


def test_save_pretrained_writes_a_component_index(tiny_stage1, scene, fake_registry, tmp_path):
    import shutil

    import torch

    from audio2pose.classifier import SyncClassifier
    from csg.features import AudioFeatureConfig, feature_dim
    from pipeline import CoSpeechPipeline

    stage1 = tmp_path / "stage1"
    shutil.copytree(tiny_stage1, stage1)
    for seed, region in enumerate(("face", "nonface")):
        torch.manual_seed(seed)  # test-only: fixes the random init of the tiny classifiers
        SyncClassifier(region=region, audio_dim=feature_dim(AudioFeatureConfig(n_mels=8,
                                                                               context=1)),
                       dim=16, layers=1, heads=2, ff_mult=2, dropout=0.0
                       ).eval().save_pretrained(stage1 / f"classifier_{region}")
    cfg = tmp_path / "noise.yaml"
    cfg.write_text("strength: 0.25\nmodel: some/hub-id\n")
    a = _pipe(stage1, f"render.config={cfg}", "seed=11")
    folder = a.save_pretrained(tmp_path / "saved")
    index = json.loads((folder / "csg_pipeline.json").read_text())
    assert index["format"] == "csg.pipeline" and index["version"] == 2
    assert index["audio2pose"] == "audio2pose"
    assert index["classifiers"] == {"face": "audio2pose/classifier_face",
                                    "nonface": "audio2pose/classifier_nonface"}
    assert index["renderer"] == {"name": "noise", "options": {"strength": 0.25,
                                                              "model": "some/hub-id"},
                                 "weights": {"model": "some/hub-id"}}
    assert index["run_config"]["seed"] == 11
    b = CoSpeechPipeline.from_pretrained(folder)
    assert b.config.render.renderer == "noise" and b.config.seed == 11
    assert b.renderer_options() == {"strength": 0.25, "model": "some/hub-id"}
    assert b.guide("sg") is not None  # the classifiers were found through the index
    b.renderer()
    assert fake_registry[-1].options == {"strength": 0.25, "model": "some/hub-id"}
    ra = a(scene["image"], scene["wav"], ref_pose=scene["ref"])
    rb = b(scene["image"], scene["wav"], ref_pose=scene["ref"])
    np.testing.assert_allclose(rb.poses.keypoints, ra.poses.keypoints, atol=1e-3)
    # a damaged index names what is missing
    shutil.rmtree(folder / "audio2pose" / "classifier_face")
    from csg.errors import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="face classifier"):
        CoSpeechPipeline.from_pretrained(folder)


def test_saved_pipeline_carries_local_renderer_weights(tiny_stage1, fake_registry, tmp_path):
    """A renderer option pointing at a local weights folder is copied into the saved pipeline, so
    the folder can move (or the original weights go) and from_pretrained still finds them."""
    import shutil

    from pipeline import CoSpeechPipeline

    w = tmp_path / "my_weights"
    w.mkdir()
    (w / "model.safetensors").write_bytes(b"weights")
    cfg = tmp_path / "noise.yaml"
    cfg.write_text(f"weights: {w}\ncodec_path: ''\nstrength: 1.0\n")
    saved = _pipe(tiny_stage1, f"render.config={cfg}").save_pretrained(tmp_path / "saved")
    index = json.loads((saved / "csg_pipeline.json").read_text())
    assert index["renderer"]["weights"] == {"weights": "renderer/weights", "codec_path": ""}
    assert index["renderer"]["options"]["weights"] == "renderer/weights"
    moved = tmp_path / "elsewhere" / "pipe"
    shutil.move(str(saved), moved)
    shutil.rmtree(w)
    b = CoSpeechPipeline.from_pretrained(moved)
    opts = b.renderer_options()
    assert opts["weights"] == str(moved / "renderer" / "weights") and opts["codec_path"] == ""
    assert (moved / "renderer" / "weights" / "model.safetensors").read_bytes() == b"weights"
    b.save_pretrained(moved)  # saving onto itself keeps everything
    assert (moved / "renderer" / "weights" / "model.safetensors").is_file()
    assert (moved / "audio2pose").is_dir()
    c = CoSpeechPipeline.from_pretrained(moved)
    assert c.renderer_options()["weights"] == str(moved / "renderer" / "weights")


def test_bad_renderer_option_fails_before_stage_1(tiny_stage1, scene, monkeypatch, tmp_path):
    from csg.errors import ConfigError
    from pipeline import CoSpeechPipeline

    def boom(*a, **k):
        raise AssertionError("stage 1 ran before the renderer options were checked")

    monkeypatch.setattr(CoSpeechPipeline, "generate_poses", boom)
    monkeypatch.setattr(CoSpeechPipeline, "extract_reference", boom)
    bad = tmp_path / "bad.yaml"
    bad.write_text("no_such_option: 1\n")
    pipe = CoSpeechPipeline.from_config(overrides=[f"render.config={bad}"],
                                        stage1_dir=tiny_stage1)
    with pytest.raises(ConfigError, match="no_such_option"):
        pipe(scene["image"], scene["wav"])
    assert (H, W) == scene["image"].shape[:2]


def test_render_weights_reach_the_renderer_options_and_a_renderer_without_weights_refuses(tmp_path):
    """`--set render.weights=DIR` becomes the renderer's `weights` option; warp has none, so it
    fails when the renderer is built (before any stage), with one config line."""
    from csg.config import replace_config
    from csg.errors import ConfigError
    from pipeline import CoSpeechPipeline
    from pipeline.config import load_run_config

    cfg = replace_config(load_run_config(), ["render.renderer=vdm", f"render.weights={tmp_path}"])
    assert CoSpeechPipeline(config=cfg).renderer_options()["weights"] == str(tmp_path)
    bad = replace_config(load_run_config(), [f"render.weights={tmp_path}"])
    with pytest.raises(ConfigError, match="weights"):
        CoSpeechPipeline(config=bad).renderer()


def test_render_guidance_reaches_the_vdm_options_and_is_checked(tmp_path):
    """`--set render.guidance=sg|dg` becomes the vdm renderer's `guidance` option (stage-2 PCE);
    a value outside none|sg|dg is a config error naming the key; warp refuses the option."""
    from csg.config import replace_config
    from csg.errors import ConfigError
    from pipeline import CoSpeechPipeline
    from pipeline.config import load_run_config

    for mode in ("sg", "dg", "none"):
        cfg = replace_config(load_run_config(), ["render.renderer=vdm", f"render.guidance={mode}"])
        assert CoSpeechPipeline(config=cfg).renderer_options()["guidance"] == mode
    unset = CoSpeechPipeline(config=load_run_config(overrides=["render.renderer=vdm"]))
    assert "guidance" not in unset.renderer_options()  # the renderer YAML's own value stays
    with pytest.raises(ConfigError, match="render.guidance"):
        load_run_config(overrides=["render.guidance=maybe"])
    bad = replace_config(load_run_config(), ["render.guidance=sg"])
    with pytest.raises(ConfigError, match="guidance"):
        CoSpeechPipeline(config=bad).renderer()


def test_stage1_checkpoint_by_embedded_name_and_classifiers_of_the_default():
    """`stage1.checkpoint` takes the embedded names (`student`, `default`); the student ships no
    sync classifiers, so guidance uses the embedded default's; a user's folder is used as given."""
    from audio2pose.pipeline import WEIGHTS_DIR
    from pipeline import CoSpeechPipeline

    for name in ("student", "default"):
        pipe = CoSpeechPipeline.from_config(overrides=[f"stage1.checkpoint={name}"])
        assert pipe._stage1_folder() == WEIGHTS_DIR / name
        assert pipe._classifier_folder() == WEIGHTS_DIR / "default"
        assert (pipe._classifier_folder() / "classifier_face").is_dir()
