"""The diffusers adapter with tiny components built from configs in code (no weights, offline)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from csg.errors import ConfigError, WeightsNotFoundError
from pose2video.base import get_renderer
from tests.helpers import make_moving_pose, make_reference_pose

H, W = 48, 64


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models are slower with several threads on a busy machine (spin-waiting): use one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_tokenizer(tmp_path):
    """A CLIPTokenizer from a vocab and merges written here (as diffusers' tests do)."""
    from transformers import CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["<|startoftext|>", "<|endoftext|>", "!"] + letters + [c + "</w>" for c in letters]
    vocab = {t: i for i, t in enumerate(tokens)}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"),
                         model_max_length=77)


def tiny_components(tmp_path, *, motion: bool = False) -> dict:
    """UNet / ControlNet / VAE / CLIP text encoder with a handful of channels, seeded."""
    import torch
    from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler, MotionAdapter,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)  # test-only: deterministic tiny weights
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=16,
                                in_channels=4, out_channels=4, cross_attention_dim=32,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                norm_num_groups=8)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    vae = AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                        norm_num_groups=8)
    text = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1,
                                        hidden_size=32, intermediate_size=37,
                                        num_attention_heads=4, num_hidden_layers=2,
                                        vocab_size=64, max_position_embeddings=77))
    comps = dict(unet=unet, controlnet=controlnet, vae=vae, text_encoder=text,
                 tokenizer=tiny_tokenizer(tmp_path),
                 scheduler=DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False))
    if motion:
        comps["motion_adapter"] = MotionAdapter(block_out_channels=(32, 64),
                                                motion_layers_per_block=1,
                                                motion_num_attention_heads=2,
                                                motion_norm_num_groups=8,
                                                motion_max_seq_length=16)
    return comps


def tiny_options(tmp_path, **over) -> dict:
    opts = dict(components=tiny_components(tmp_path), steps=2, resolution=64, window=3,
                guidance_scale=2.0, prompt="a person", negative_prompt="",
                warp={"segment": False})
    opts.update(over)
    return opts


def _photo() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def _render(renderer, poses, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    state = renderer.prepare(_photo(), make_reference_pose(H, W))
    return np.concatenate(list(renderer.render(state, poses, generator=g, progress=False)))


@pytest.mark.parametrize("init", ["warp", "noise"])
def test_tiny_controlnet_shapes_and_determinism(tmp_path, init):
    r = get_renderer("diffusers", **tiny_options(tmp_path, init=init))
    poses = make_moving_pose(4, H, W)
    a = _render(r, poses, 3)
    b = _render(r, poses, 3)
    c = _render(r, poses, 4)
    assert a.shape == (4, H, W, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 0.5  # another seed, another video
    assert a.std() > 1.0  # not a blank image


def test_strength_controls_how_much_noise_is_injected(tmp_path):
    """Low img2img strength injects less noise into the warp frame than high strength, so its
    frames depend less on the seed. (The tiny VAE is random, so distances to the warp frame itself
    say nothing: both outputs are far from it.)"""
    poses = make_moving_pose(2, H, W)
    comps = tiny_components(tmp_path)

    def seed_spread(strength):
        r = get_renderer("diffusers", **tiny_options(tmp_path, components=comps,
                                                     strength=strength))
        a, b = (_render(r, poses, k).astype(int) for k in (0, 1))
        return np.abs(a - b).mean()

    assert seed_spread(0.1) < seed_spread(1.0)


@pytest.mark.slow
def test_tiny_animatediff_window(tmp_path):
    comps = tiny_components(tmp_path, motion=True)
    r = get_renderer("diffusers", **tiny_options(tmp_path, components=comps, window=4))
    assert r.window == 4 and r.overlap == 0
    out = _render(r, make_moving_pose(4, H, W), 0)
    assert out.shape == (4, H, W, 3) and out.dtype == np.uint8


def test_missing_weights_names_the_field(tmp_path):
    r = get_renderer("diffusers", controlnet=str(tmp_path / "no-such-controlnet"))
    with pytest.raises(WeightsNotFoundError, match="controlnet=.*no-such-controlnet"):
        r.pipeline()


def test_missing_hub_id_is_offline_error():
    r = get_renderer("diffusers", base_model="nobody/not-a-model", controlnet="nobody/none")
    with pytest.raises(WeightsNotFoundError, match="huggingface-cli download"):
        r.pipeline()


def test_bad_options_raise_config_error():
    with pytest.raises(ConfigError, match="init"):
        get_renderer("diffusers", init="magic")
    with pytest.raises(ConfigError, match="unknown key"):
        get_renderer("diffusers", stepz=3)


def test_device_and_dtype_come_from_the_factory_keywords():
    r = get_renderer("diffusers", device="cuda:1")
    assert r.device == "cuda:1" and r.dtype == "float16" and r.window == 1
    r = get_renderer("diffusers", device="cpu", dtype="bfloat16", window=5)
    assert r.device == "cpu" and r.dtype == "bfloat16" and r.window == 1  # no motion adapter
    assert get_renderer("diffusers").dtype == "float32"
    with pytest.raises(ConfigError, match="dtype"):
        get_renderer("diffusers", dtype="int8")
    with pytest.raises(ConfigError, match="unknown key"):
        get_renderer("diffusers", gpu="cuda")


def test_render_size_keeps_aspect_in_multiples_of_8():
    from pose2video.diffusers_renderer import render_size

    assert render_size((48, 64), 64) == (48, 64)
    assert render_size((922, 614), 512) == (512, 344)
    h, w = render_size((1920, 1080), 512)
    assert h == 512 and w % 8 == 0 and abs(w / h - 1080 / 1920) < 0.02
