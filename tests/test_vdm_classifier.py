"""Stage-2 sync classifiers on vdm latents and PCE guidance in the vdm renderer (tiny models in code)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from csg.errors import WeightsNotFoundError
from tests.helpers import make_moving_pose, make_reference_pose
from tests.test_vdm import H, W, _photo, tiny_model, tiny_renderer


def _classifier(region="face", seed=0):
    from pose2video.vdm.classifier import VideoSyncClassifier

    den = tiny_model()
    torch.manual_seed(seed)
    return VideoSyncClassifier.from_denoiser(den, region, depth=1, head_width=8), den


def _batch(B=2, T=3, C=4, h=6, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, T, C, h, w, generator=g)
    audio = torch.randn(B, T, 3, 10, generator=g)
    mask = torch.zeros(B, T, h, w)
    mask[..., 2:4, 2:5] = 1.0
    return z, torch.tensor([10, 500]), audio, mask


def test_classifier_shapes_init_from_denoiser_and_save_load(tmp_path):
    from pose2video.vdm.classifier import load_classifier

    clf, den = _classifier()
    for name in ("patch_embed", "time_mlp", "audio_in"):
        for a, b in zip(getattr(clf, name).parameters(), getattr(den, name).parameters()):
            assert torch.equal(a, b)
    for a, b in zip(clf.blocks[0].parameters(), den.blocks[0].parameters()):
        assert torch.equal(a, b)
    z, t, audio, mask = _batch()
    clf.eval()
    out = clf.masked_logits(z, t, audio, mask)
    assert out.shape == (2,) and torch.isfinite(out).all()
    clf.save_pretrained(tmp_path / "classifier_face")
    back = load_classifier(tmp_path / "classifier_face")
    assert torch.allclose(back.masked_logits(z, t, audio, mask), out, atol=1e-6)
    assert not any(p.requires_grad for p in back.parameters())


def test_logits_depend_on_audio_and_on_the_region_only():
    clf, _ = _classifier()
    clf.eval()
    z, t, audio, mask = _batch()
    base = clf.masked_logits(z, t, audio, mask)
    assert not torch.allclose(clf.masked_logits(z, t, audio.flip(1), mask), base)
    z2 = z.clone()
    z2[..., 0, 0] += 5.0  # outside the region: zeroed by masked_logits
    assert torch.allclose(clf.masked_logits(z2, t, audio, mask), base, atol=1e-6)


def test_gradient_only_into_the_latent_and_only_inside_the_region():
    clf, _ = _classifier()
    z, t, audio, mask = _batch()
    g = clf.loss_grad(z, t, audio, mask)
    assert g.shape == z.shape and not g.requires_grad
    assert all(p.grad is None for p in clf.parameters())
    inside = mask[:, :, None].expand_as(g) > 0
    assert g[inside].abs().sum() > 0
    assert g[~inside].abs().max() == 0


def test_latent_masks_face_and_nonface_on_the_latent_grid():
    from pose2video.vdm.classifier import latent_masks

    pose = make_reference_pose(128, 128).keypoints[0]
    m = latent_masks(np.stack([pose, pose]), (128, 128), (16, 16))
    assert m["face"].shape == (2, 16, 16) and m["nonface"].shape == (2, 16, 16)
    assert 0 < m["face"].sum() < m["nonface"].sum()
    assert set(np.unique(m["face"])) <= {0.0, 1.0}


def _save_pair(root, seed=0):
    for i, region in enumerate(("face", "nonface")):
        clf, _ = _classifier(region, seed + i)
        clf.save_pretrained(root / f"classifier_{region}")


def _render(r, n=6, seed=0):
    state = r.prepare(_photo(), make_reference_pose(H, W))
    poses = make_moving_pose(n, H, W)
    t = np.arange(int(16000 * n / poses.fps)) / 16000
    audio = (np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    gen = torch.Generator().manual_seed(seed)
    return np.concatenate(list(r.render(state, poses, audio=audio, generator=gen, progress=False)))


@pytest.mark.parametrize("mode", ["sg", "dg"])
def test_guidance_changes_the_output_and_same_seed_same_output(tmp_path, mode):
    _save_pair(tmp_path)
    none = _render(tiny_renderer())
    opts = dict(guidance=mode, guidance_weights=str(tmp_path), lambda_nonface=50.0,
                lambda_face=50.0, guided_fraction=1.0)
    a = _render(tiny_renderer(**opts))
    b = _render(tiny_renderer(**opts))
    assert a.shape == none.shape
    assert np.array_equal(a, b)
    assert not np.array_equal(a, none)
    r0 = _render(tiny_renderer(**{**opts, "guided_fraction": 0.0}))
    assert np.array_equal(r0, none)  # r = 0 guides no step


def test_guide_runs_the_shared_equations(tmp_path):
    """The renderer's window guide is csg.diffusion.guidance.make_guide (config attached)."""
    from csg.diffusion.guidance import GuidanceConfig
    from pose2video.vdm.classifier import video_guide

    clf_f, _ = _classifier("face")
    clf_nf, _ = _classifier("nonface", 1)
    masks = {"face": np.ones((3, 6, 8), np.float32), "nonface": np.zeros((3, 6, 8), np.float32)}
    cfg = GuidanceConfig(mode="sg", lambda_face=1.0, lambda_nonface=1.0, guided_fraction=1.0)
    guide = video_guide(cfg, clf_f.eval(), clf_nf.eval(), torch.randn(1, 3, 3, 10), masks)
    assert guide.config == cfg
    from csg.diffusion.sampling import StepContext

    z = torch.randn(1, 3, 4, 6, 8)
    out = guide(lambda x: x, z, StepContext(i=0, num_steps=2, t=500, t_prev=0, sigma_t=0.9))
    assert out.shape == z.shape and not torch.equal(out, z)
    assert video_guide(GuidanceConfig(mode="none"), clf_f, clf_nf, torch.zeros(1, 3, 3, 10),
                       masks) is None


def test_missing_classifier_is_one_line_naming_path_and_command(tmp_path):
    with pytest.raises(WeightsNotFoundError) as e:
        tiny_renderer(guidance="sg", guidance_weights=str(tmp_path / "nope"))
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "nope") in msg
    assert "csg train classifier --stage video --region face" in msg


def test_bad_guidance_mode_is_a_config_error():
    from csg.errors import ConfigError

    with pytest.raises(ConfigError):
        tiny_renderer(guidance="loud")


def test_pairs_kinds_and_training_smoke(tmp_path):
    """make_pairs labels and a few training steps on a tiny cache, held-out accuracy per t."""
    from pose2video.vdm.classifier_data import (VideoClassifierModelConfig,
                                                VideoClassifierTrainConfig)
    from pose2video.vdm.classifier_train import train

    rng = np.random.default_rng(0)
    pose = make_reference_pose(64, 64).keypoints[0]
    cache = tmp_path / "cache"
    cache.mkdir()
    for i in range(6):
        np.savez(cache / f"c{i}.npz", latents=rng.normal(size=(16, 4, 8, 8)).astype(np.float16),
                 poses=np.repeat(pose[None], 16, 0).astype(np.float32),
                 audio=rng.normal(size=(16, 3, 10)).astype(np.float32),
                 maps=np.zeros((1, 3, 64, 64), np.uint8))
    r = tiny_renderer(steps=1)
    cfg = VideoClassifierTrainConfig(cache=str(cache), frames_per_clip=16, out=str(tmp_path / "o"),
                                     window_lengths=(3, 4), min_shift=4, pool_size=2,
                                     pool_frames=4, pool_steps=1, val_every=3, batch_size=4,
                                     max_steps=3, eval_every=2, eval_items=4, max_minutes=0,
                                     model=VideoClassifierModelConfig(1, 8))
    res = train(cfg, renderer=r)
    assert set(res["val"]) == {f"t/T={f:.2f}" for f in cfg.eval_t_fracs}
    assert (tmp_path / "o" / "final" / "config.json").is_file()
    assert (tmp_path / "o" / "pool_train.pt").is_file()


@pytest.mark.parametrize("W,L,shift", [(16, 8, 8), (16, 4, 8), (48, 6, 8), (10, 2, 3)])
def test_shift_starts_always_valid(W, L, shift):
    from pose2video.vdm.classifier_data import shift_starts

    a, b = shift_starts(W, L, shift, torch.Generator().manual_seed(0), 500)
    assert ((a - b).abs() >= shift).all()
    assert (a >= 0).all() and (b >= 0).all() and (a <= W - L).all() and (b <= W - L).all()
    assert (a < b).any() and (a > b).any()


def test_cli_stage_video_bad_data_is_one_line(tmp_path, capsys):
    from csg.cli import main
    from pose2video.vdm.renderer import EMBEDDED

    if not (EMBEDDED / "config.json").is_file():
        pytest.skip("no embedded vdm in this checkout")
    rc = main(["train", "classifier", "--stage", "video", "--region", "face",
               "--data", str(tmp_path / "cache"), "--out", str(tmp_path / "o"),
               "--set", f"data=[{tmp_path / 'nodata'}]"])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc != 0
    assert len(lines) == 1 and "manifest" in lines[0] and "Traceback" not in err
