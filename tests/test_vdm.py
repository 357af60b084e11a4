"""The ``vdm`` renderer with tiny components built in code: codec, denoiser, windows, renderer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from csg.errors import DataError, WeightsNotFoundError
from tests.helpers import make_moving_pose, make_reference_pose

SHARED = Path(__file__).resolve().parents[2] / "shared"
H, W = 48, 64  # non-square photo (H x W) so swaps show


# --- tiny parts ----------------------------------------------------------------------------------
def tiny_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4,
                         block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4)


def tiny_codec():
    from pose2video.vdm.codec import DiffusersVaeCodec

    return DiffusersVaeCodec(vae=tiny_vae())


def tiny_model(**kw):
    from pose2video.vdm.model import VdmDenoiser

    torch.manual_seed(0)
    cfg = dict(latent_channels=4, patch_size=2, width=32, depth=1, heads=2, audio_dim=10,
               audio_context=1, pose_guider_channels=4, max_frames=16)
    cfg.update(kw)
    m = VdmDenoiser(**cfg)
    with torch.no_grad():  # a zero-initialised model predicts zeros: give the output layers weight
        for p in m.parameters():
            if p.abs().sum() == 0 and p.dim() > 0:
                p.normal_(0, 0.02)
    return m


TINY_NOTE = {"codec": "autoencoder_kl", "size": 64, "window": 4, "carry": 2,
             "features": {"n_mels": 8, "context": 1}}


def tiny_options(**kw) -> dict:
    """get_renderer("vdm", **tiny_options()) without any weights on disk."""
    opts = {"model": tiny_model(), "note": dict(TINY_NOTE), "latent_codec": tiny_codec(),
            "steps": 2, "cfg_pose": 2.0, "cfg_audio": 1.5}
    opts.update(kw)
    return opts


def tiny_renderer(**kw):
    from pose2video.vdm.renderer import vdm_factory

    return vdm_factory(**tiny_options(**kw))


def _photo(h=H, w=W) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1) % 256
    return (base + rng.integers(0, 30, (h, w, 3))).clip(0, 255).astype(np.uint8)


def _render(r, poses, seed=0, audio=None, chunk=16, h=H, w=W):
    state = r.prepare(_photo(h, w), make_reference_pose(h, w))
    gen = torch.Generator().manual_seed(seed)
    return list(r.render(state, poses, audio=audio, generator=gen, progress=False, chunk=chunk))


# --- codec ---------------------------------------------------------------------------------------
def test_taef2_loads_strictly_and_round_trips_shapes():
    from pose2video.vdm.codec import Taef2Codec

    c = Taef2Codec()
    x = torch.rand(1, 3, 16, 24)
    z = c.encode(x)
    assert z.shape == (1, 32, 2, 3)
    y = c.decode(z)
    assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1


def test_taef2_strict_load_refuses_a_wrong_state_dict(tmp_path):
    from safetensors.torch import load_file, save_file

    from pose2video.vdm.codec import TAEF2_DIR, Taef2Codec

    for name in ("encoder", "decoder"):
        sd = load_file(str(TAEF2_DIR / f"taef2_{name}.safetensors"))
        if name == "decoder":
            sd.pop(next(iter(sd)))  # one tensor missing
        save_file(sd, str(tmp_path / f"taef2_{name}.safetensors"))
    with pytest.raises(RuntimeError, match="Missing key"):
        Taef2Codec(tmp_path)


def test_taef2_missing_weights_one_line(tmp_path):
    from pose2video.vdm.codec import Taef2Codec

    with pytest.raises(WeightsNotFoundError, match=str(tmp_path)):
        Taef2Codec(tmp_path)


def test_small_decoder_shapes_cost_and_one_line_when_missing(tmp_path):
    from pose2video.vdm.codec import Taef2Codec, Taef2LiteCodec, build_codec

    c = Taef2LiteCodec(weights=False)
    z = torch.randn(2, 32, 3, 5)
    y = c.decode(z)
    assert y.shape == (2, 3, 24, 40) and 0 <= float(y.min()) and float(y.max()) <= 1
    big = sum(p.numel() for p in Taef2Codec(weights=False).decoder.parameters())
    assert sum(p.numel() for p in c.decoder.parameters()) * 5 < big
    with pytest.raises(WeightsNotFoundError, match=f"{tmp_path}.*csg distill decoder"):
        build_codec("taef2_lite", str(tmp_path))
    (tmp_path / "decoder.json").write_text("{not json")  # a hand-edited note: one line
    with pytest.raises(WeightsNotFoundError, match="not a small decoder note"):
        build_codec("taef2_lite", str(tmp_path))


def test_shipped_small_decoder_decodes_an_example_photo():
    """The shipped small decoder (pose2video/weights/taef2_lite, loaded by default, strict) decodes
    TAEF2 latents of a real photo close to TAEF2's own decoding (24.5 dB when it was trained)."""
    import cv2

    from csg.image import load_image
    from pose2video.vdm.codec import Taef2Codec, build_codec
    from pose2video.vdm.decoder_distill import psnr

    img = load_image(Path(__file__).resolve().parents[1] / "examples/images/moore_anyone-3.png")
    s = min(img.shape[:2])
    img = cv2.resize(img[:s, :s], (128, 128), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    lite, full = build_codec("taef2_lite", ""), Taef2Codec()
    with torch.inference_mode():
        z = full.encoder(x)
        assert psnr(lite.decode(z), full.decoder(z).clamp(0, 1)) > 22.0
        assert psnr(lite.decode(z), x) > 22.0


def test_decoder_distillation_learns_and_exports(tmp_path):
    """A short run on random latents lowers the loss against TAEF2's decodings, exports weights
    the codec loads, and records the held-out PSNR it reports."""
    import json

    from pose2video.vdm.codec import Taef2LiteCodec
    from pose2video.vdm.decoder_distill import DecoderDistillConfig, distill_decoder, psnr

    rng = np.random.default_rng(0)
    (tmp_path / "cache").mkdir()
    lat = (rng.normal(0, 1, (40, 32, 3, 3)) * np.linspace(0.2, 2, 32)[None, :, None, None])
    np.savez(tmp_path / "cache" / "a.npz", latents=lat.astype(np.float16))
    cfg = DecoderDistillConfig(cache=(str(tmp_path / "cache"),), out=str(tmp_path / "run"),
                               batch_size=8, max_steps=60, warmup=5, lr=3e-3, log_every=10,
                               save_every=1000, noisy_copies=1, holdout=5,
                               channels=(32, 16, 8))
    out = distill_decoder(cfg, echo=lambda s: None)
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < 0.6 * rows[0]["loss"]
    note = json.loads((out / "decoder.json").read_text())
    assert note["latents"] == 80 and note["held_out"] == 16 and note["channels"] == [32, 16, 8]
    c = Taef2LiteCodec(out)  # builds the widths decoder.json names
    data = torch.load(out / "targets.pt")
    held = data["latents"][::5]
    got = psnr(c.decode(held), data["rgb"][::5].float() / 255)
    assert abs(got - note["held_out_psnr_vs_taef2"]) < 0.05  # float16 export: same decoder


def test_decoder_loss_edge_term_punishes_blur_not_offsets():
    from pose2video.vdm.decoder_distill import decoder_loss

    t = torch.zeros(1, 3, 16, 16)
    t[..., :, 8:] = 1.0  # one vertical edge
    blur = t.clone()
    blur[..., :, 6:10] = torch.tensor([0.2, 0.4, 0.6, 0.8])  # the edge spread over 4 pixels
    shift = (t + 0.05).clamp(max=1.0)
    base = decoder_loss(blur, t)
    assert torch.isclose(decoder_loss(blur, t, edge=0.0), base)
    assert decoder_loss(blur, t, edge=1.0) > base + 0.01  # blur: a gradient error
    # a uniform offset where it is not clamped changes no gradient but the edge columns'
    d_edge = decoder_loss(shift, t, edge=1.0) - decoder_loss(shift, t)
    assert 0 <= float(d_edge) < 0.01


def test_media_crops_from_videos_and_photos(tmp_path):
    from csg.image import save_image
    from csg.video import write_video
    from pose2video.vdm.decoder_distill import media_crops, media_files, random_crops

    rng = np.random.default_rng(0)
    frame = np.zeros((60, 90, 3), np.uint8)
    frame[:, :45] = 255  # left half white
    crops = random_crops(frame, 200, 16, rng)
    assert crops.shape == (200, 16, 16, 3) and crops.dtype == np.uint8
    left = crops[:, 8, 0, 0].astype(int) - crops[:, 8, -1, 0]
    assert (left > 0).any() and (left < 0).any()  # mirrored crops exist, unmirrored too
    save_image(tmp_path / "a.png", frame)
    write_video(tmp_path / "b.mp4", [frame] * 10, fps=25)
    (tmp_path / "notes.txt").write_text("not media")
    files = media_files((str(tmp_path),))
    assert [f.name for f in files] == ["a.png", "b.mp4"]
    out = media_crops(files, 8, 16, rng)
    assert out.shape == (2 + 8, 16, 16, 3)
    with pytest.raises(DataError, match="no such file"):
        media_files((str(tmp_path / "missing"),))


def test_decoder_distill_config_and_sources_fail_in_one_line(tmp_path):
    """A bare --set value for a list, bad widths, a named cache folder that is missing, and no
    source at all: one clear error each, before any encoding."""
    from csg.config import load_config
    from csg.errors import ConfigError
    from pose2video.vdm.decoder_distill import DecoderDistillConfig, distill_decoder, held_out

    with pytest.raises(ConfigError, match="expected a list"):
        load_config(DecoderDistillConfig, None, ["media=../shared/x"])
    with pytest.raises(ConfigError, match="expected a list"):
        load_config(DecoderDistillConfig, None, ["channels=64"])
    run = str(tmp_path / "run")
    with pytest.raises(DataError, match="three positive widths"):
        distill_decoder(DecoderDistillConfig(channels=(64, 32), out=run))
    with pytest.raises(DataError, match="nope: no such latent cache folder"):
        distill_decoder(DecoderDistillConfig(cache=(str(tmp_path / "nope"),), out=run))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no latents: give --cache"):
        distill_decoder(DecoderDistillConfig(cache=(str(tmp_path / "empty"),), out=run))
    # the held-out latents and their noisy copies are held out together
    h = held_out(20, 5, copies=2)
    assert h.tolist() == ([True] + [False] * 4) * 2 * 2
    assert held_out(7, 3).tolist() == [True, False, False, True, False, False, True]


def test_latent_noise_copies_scale_with_each_channel():
    from pose2video.vdm.decoder_distill import psnr, with_noise

    g = torch.Generator().manual_seed(0)
    lat = torch.randn(200, 4, 4, 4) * torch.tensor([0.1, 1.0, 3.0, 10.0]).view(1, 4, 1, 1)
    out = with_noise(lat, 0.5, 2, g)
    assert out.shape == (600, 4, 4, 4) and torch.equal(out[:200], lat)
    d = (out[200:400] - lat).transpose(0, 1).reshape(4, -1).std(1)
    assert torch.allclose(d, 0.5 * torch.tensor([0.1, 1.0, 3.0, 10.0]), rtol=0.1)
    assert with_noise(lat, 0.0, 2, g) is lat
    x = torch.full((1, 3, 2, 2), 0.5)
    assert abs(psnr(x + 0.1, x) - 20.0) < 1e-4  # MSE 0.01 -> 20 dB


@pytest.mark.skipif(not (SHARED / "data" / "video" / "face").is_dir(),
                    reason="../shared/data/video/face not present")
def test_taef2_reconstructs_a_real_frame():
    import cv2

    from csg.video import read_video
    from pose2video.vdm.codec import Taef2Codec

    f = next(iter(read_video(SHARED / "data/video/face/WDA_KatieHill_000.mp4", max_frames=1)))
    im = cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255
    c = Taef2Codec()
    mse = float(((c.decode(c.encode(x)) - x) ** 2).mean())
    assert 10 * np.log10(1 / mse) > 25  # 128 px: about 29 dB measured; broken weights give < 15


def test_autoencoder_kl_adapter_with_a_tiny_vae():
    c = tiny_codec()
    assert (c.latent_channels, c.factor) == (4, 8)
    z = c.encode(torch.rand(2, 3, 16, 24))
    assert z.shape == (2, 4, 2, 3)
    assert c.decode(z).shape == (2, 3, 16, 24)


def test_autoencoder_kl_missing_path_one_line(tmp_path):
    from pose2video.vdm.codec import load_autoencoder_kl

    with pytest.raises(WeightsNotFoundError) as e:
        load_autoencoder_kl("no-such-org/no-such-vae")
    assert "no-such-org/no-such-vae" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(WeightsNotFoundError):
        load_autoencoder_kl(str(tmp_path))  # a folder without config.json


# --- denoiser ------------------------------------------------------------------------------------
def _inputs(B=1, K=1, T=3, h=6, w=8, A=3, D=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, K, 4, h, w, generator=g), torch.randn(B, T, 4, h, w, generator=g),
            torch.tensor([500] * B), torch.rand(B, K + T, 3, 8 * h, 8 * w, generator=g),
            torch.randn(B, K + T, A, D, generator=g))


def test_denoiser_shapes_and_zero_init_pose_guider():
    from pose2video.vdm.model import VdmDenoiser

    m = VdmDenoiser(latent_channels=4, width=32, depth=1, heads=2, audio_dim=10, audio_context=1)
    assert float(m.pose_guider.out.weight.detach().abs().sum()) == 0  # zero-initialised
    out = m(*_inputs()).sample
    assert out.shape == (1, 3, 4, 6, 8)
    assert float(out.abs().max()) == 0  # AdaLN-zero + zero output layer: a new model predicts 0


def test_denoiser_conditions_and_null_conditions_matter():
    m = tiny_model().eval()
    ctx, x, t, maps, aud = _inputs()
    with torch.no_grad():
        base = m(ctx, x, t, maps, aud).sample
        no_pose = m(ctx, x, t, maps, aud, drop_pose=torch.tensor([True])).sample
        no_audio = m(ctx, x, t, maps, aud, drop_audio=torch.tensor([True])).sample
        other_ref = m(ctx + 1, x, t, maps, aud).sample
    for other in (no_pose, no_audio, other_ref):
        assert not torch.allclose(base, other)


def test_denoiser_batch_of_two_equals_two_singles():
    m = tiny_model().eval()
    a, b = _inputs(seed=0), _inputs(seed=1)
    with torch.no_grad():
        both = m(*[torch.cat([u, v]) for u, v in zip(a, b)]).sample
        sa, sb = m(*a).sample, m(*b).sample
    torch.testing.assert_close(both, torch.cat([sa, sb]), atol=1e-5, rtol=1e-4)


def test_denoiser_save_load_round_trip(tmp_path):
    from pose2video.vdm.model import VdmDenoiser

    m = tiny_model().eval()
    m.save_pretrained(tmp_path)
    m2 = VdmDenoiser.from_pretrained(tmp_path).eval()
    for (k, p), (_, q) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(p, q), k
    with torch.no_grad():
        torch.testing.assert_close(m(*_inputs()).sample, m2(*_inputs()).sample)


def test_denoiser_positions_are_resolution_independent():
    from pose2video.vdm.model import grid_positions

    a = grid_positions(8, 8, 32, 16.0, "cpu")   # 256 px, patch 2
    b = grid_positions(16, 16, 32, 16.0, "cpu")  # 512 px
    # the centre of patch (i, j) at 256 px lies between 512-px patches (2i, 2j) and (2i+1, 2j+1)
    mid = 0.5 * (b.view(16, 16, 32)[0::2, 0::2] + b.view(16, 16, 32)[1::2, 1::2])
    assert float((a.view(8, 8, 32) - mid).abs().max()) < 0.2
    m = tiny_model()
    with torch.no_grad():
        assert m(*_inputs(h=4, w=4)).sample.shape[-2:] == (4, 4)
        assert m(*_inputs(h=8, w=12)).sample.shape[-2:] == (8, 12)


def test_gradient_checkpointing_gives_the_same_gradients():
    m = tiny_model()
    inp = _inputs()
    m(*inp).sample.square().mean().backward()
    g1 = [p.grad.clone() for p in m.parameters() if p.grad is not None]
    m.zero_grad()
    m.gradient_checkpointing = True
    m(*inp).sample.square().mean().backward()
    g2 = [p.grad.clone() for p in m.parameters() if p.grad is not None]
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


# --- renderer ------------------------------------------------------------------------------------
def test_render_frame_count_chunks_and_sizes():
    r = tiny_renderer()
    poses = make_moving_pose(7, H, W)
    chunks = _render(r, poses, chunk=3)
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert all(c.shape[1:] == (H, W, 3) and c.dtype == np.uint8 for c in chunks)


def test_render_same_seed_same_bytes_other_seed_differs():
    r = tiny_renderer()
    poses = make_moving_pose(5, H, W)
    a = np.concatenate(_render(r, poses, seed=3))
    b = np.concatenate(_render(r, poses, seed=3))
    c = np.concatenate(_render(r, poses, seed=4))
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_render_with_audio_is_deterministic_and_uses_it():
    r = tiny_renderer()
    poses = make_moving_pose(4, H, W)
    n = int(round(4 / 25 * 16000))
    wav = np.random.default_rng(0).normal(0, 0.1, n).astype(np.float32)
    a = np.concatenate(_render(r, poses, audio=wav))
    assert a.tobytes() == np.concatenate(_render(r, poses, audio=wav)).tobytes()
    assert not np.array_equal(a, np.concatenate(_render(r, poses)))


def test_windows_carry_the_previous_latents_exactly():
    r = tiny_renderer()  # window 4, overlap 2
    poses = make_moving_pose(9, H, W)
    state = r.prepare(_photo(), make_reference_pose(H, W))
    seen = []
    frames = list(r.render_windows(state, poses, generator=torch.Generator().manual_seed(0),
                                   on_window=lambda j, ctx, new: seen.append((ctx, new))))
    assert r.plan(9) == [(0, 4, 0), (4, 6, 2), (6, 8, 2), (8, 9, 2)]
    assert sum(len(f) for f in frames) == 9
    for (ctx0, new0), (ctx1, new1) in zip(seen, seen[1:]):
        assert torch.equal(ctx1[:, 0], state.ref_latent)  # frame 0: the reference, clean
        prev = torch.cat([ctx0[:, 1:], new0], 1)
        assert torch.equal(ctx1[:, 1:], prev[:, -2:])  # the carried latents, bit for bit


def test_window_maps_are_each_frames_own_skeleton():
    """The carried frames' maps are reused from the previous window, not redrawn: every window
    must still see exactly the maps of its own frames."""
    from pose2video.vdm.data import pose_maps
    from pose2video.vdm.renderer import scale_poses

    r = tiny_renderer()  # window 4, overlap 2
    poses = make_moving_pose(9, H, W)
    state = r.prepare(_photo(), make_reference_pose(H, W))
    seen, sample = [], r._sample
    r._sample = lambda context, maps, *a, **k: (seen.append(maps), sample(context, maps, *a, **k))[1]
    list(r.render_windows(state, poses, generator=torch.Generator().manual_seed(0)))
    kp = scale_poses(poses.keypoints, poses.size_hw, state.work_hw)
    assert len(seen) == len(r.plan(9))
    for maps, (a, b, k) in zip(seen, r.plan(9)):
        want = pose_maps(np.concatenate([state.ref_pose[None], kp[a - k:b]]), state.work_hw)
        assert torch.equal(maps[0], want)


@pytest.mark.parametrize("hw", [(37, 53), (101, 29), (8, 8)])
def test_odd_photo_sizes(hw):
    h, w = hw
    r = tiny_renderer()
    out = np.concatenate(_render(r, make_moving_pose(3, h, w), h=h, w=w))
    assert out.shape == (3, h, w, 3)


def test_canvas_mismatch_is_a_clear_error():
    from pose2video.base import CanvasMismatchError

    r = tiny_renderer()
    state = r.prepare(_photo(), make_reference_pose(H, W))
    with pytest.raises(CanvasMismatchError, match="64x48"):
        list(r.render(state, make_moving_pose(3, 50, 64), progress=False))


def test_missing_weights_one_line_names_path_and_command(tmp_path):
    from pose2video.vdm.renderer import vdm_factory

    with pytest.raises(WeightsNotFoundError) as e:
        vdm_factory(weights=str(tmp_path / "nothing"))
    msg = str(e.value)
    assert str(tmp_path / "nothing") in msg and "csg train renderer" in msg and "\n" not in msg


def test_unknown_option_is_refused():
    from csg.errors import ConfigError
    from pose2video.vdm.renderer import vdm_factory

    with pytest.raises(ConfigError, match="stepz"):
        vdm_factory(stepz=3)


# --- PAR (PAHA Eq. 2-3 on the latent grid) -------------------------------------------------------
def _one_point_frame(j: int, x: float, y: float, c: float) -> np.ndarray:
    f = np.zeros((133, 3), np.float32)
    f[j] = (x, y, c)
    return f


def test_par_known_answer_hand_point():
    from csg import keypoints as K
    from pose2video.vdm.config import ParConfig
    from pose2video.vdm.par import frame_par

    cfg = ParConfig()
    # 64 x 64 canvas -> 8 x 8 latent grid; a hand point at the centre of latent cell (row 2, col 5)
    f = _one_point_frame(K.LEFT_HAND.start, 5 * 8 + 3.5, 2 * 8 + 3.5, 1.0)
    out = frame_par(f, (64, 64), (8, 8), cfg)
    w = out["weight"]
    # ω1 x Gauss_smooth(c) at the point's cell: a delta smoothed with σ = 0.5 cells keeps the
    # centre weight of the separable kernel squared, 1 / (1 + 2e^-2 + 2e^-8) per axis
    centre = 1 / (1 + 2 * np.exp(-2) + 2 * np.exp(-8))
    assert w[2, 5] == pytest.approx(10.0 * centre ** 2, rel=1e-5)
    assert w.max() == w[2, 5]
    assert out["hands"].sum() == 1 and out["hands"][2, 5] == 1
    assert np.all(w[out["hands"] == 0] == 1.0)  # no body: 1 everywhere else
    # below τ: not counted anywhere
    low = frame_par(_one_point_frame(K.LEFT_HAND.start, 43.5, 19.5, 0.7), (64, 64), (8, 8), cfg)
    assert np.all(low["weight"] == 1.0)


def test_par_known_answer_body_rectangle_and_ablation():
    from csg import keypoints as K
    from pose2video.vdm.config import ParConfig
    from pose2video.vdm.par import frame_par

    f = np.zeros((133, 3), np.float32)
    f[K.LEFT_SHOULDER] = (11.5, 11.5, 0.9)   # latent cell (1, 1)
    f[K.RIGHT_HIP] = (35.5, 27.5, 0.9)       # latent cell (3, 4)
    out = frame_par(f, (64, 64), (8, 8), ParConfig())
    body = np.zeros((8, 8), bool)
    body[1:4, 1:5] = True  # rectangle spanned by the two points (r < 1 cell adds no cell here)
    assert np.array_equal(out["weight"] == 2.0, body)
    assert np.all(out["weight"][~body] == 1.0)
    off = frame_par(f, (64, 64), (8, 8), ParConfig(enabled=False))
    assert np.all(off["weight"] == 1.0)


def test_par_loss_weights_the_error():
    from csg import keypoints as K
    from pose2video.vdm.config import ParConfig
    from pose2video.vdm.par import par_loss

    f = _one_point_frame(K.RIGHT_HAND.start, 43.5, 19.5, 1.0)
    se = torch.zeros(1, 1, 8, 8)
    se[0, 0, 2, 5] = 1.0  # error only on the hand cell
    loss, logs = par_loss(se, f[None, None], (64, 64), ParConfig())
    centre = 1 / (1 + 2 * np.exp(-2) + 2 * np.exp(-8))  # see test_par_known_answer_hand_point
    assert float(loss) == pytest.approx(10.0 * centre ** 2 / 64, rel=1e-5)
    assert float(logs["mse_hands"]) == pytest.approx(1.0)
    assert float(logs["mse_rest"]) == 0.0
    loss0, _ = par_loss(se, f[None, None], (64, 64), ParConfig(enabled=False))
    assert float(loss0) == pytest.approx(1.0 / 64)


def test_packaged_renderer_options_are_accepted():
    """configs/pose2video/vdm.yaml (what csg run and csg render pass) builds a working renderer."""
    from csg.config import find_config, read_yaml

    opts = read_yaml(find_config("configs/pose2video/vdm.yaml"))
    opts["steps"] = 2
    r = tiny_renderer(**opts)
    assert np.concatenate(_render(r, make_moving_pose(2, H, W))).shape == (2, H, W, 3)


def test_embedded_checkpoint_loads_and_renders():
    from pose2video.vdm.renderer import EMBEDDED, vdm_factory

    if not (EMBEDDED / "config.json").is_file():
        pytest.skip("no embedded checkpoint in this checkout")
    r = vdm_factory(steps=1)
    assert r.window > r.overlap >= 0 and r.size > 0
    out = np.concatenate(_render(r, make_moving_pose(2, H, W)))
    assert out.shape == (2, H, W, 3) and out.std() > 0


def test_dtype_reaches_the_codec():
    """render.dtype=bfloat16 runs the denoiser *and* the TAEF2 decoder in bf16 (the decoder was
    left in float32 before); the frames stay close to the float32 render (same seed)."""
    import torch

    from pose2video.vdm.renderer import EMBEDDED, vdm_factory

    if not (EMBEDDED / "config.json").is_file():
        pytest.skip("no embedded checkpoint in this checkout")
    frames = {}
    for dt in ("float32", "bfloat16"):
        r = vdm_factory(steps=1, dtype=dt)
        want = getattr(torch, dt)
        assert r.codec.dtype == want and next(r.codec.decoder.parameters()).dtype == want
        assert next(r.model.parameters()).dtype == want
        frames[dt] = np.concatenate(_render(r, make_moving_pose(2, H, W))).astype(np.float32)
    diff = np.abs(frames["float32"] - frames["bfloat16"])
    assert diff.mean() < 4.0, diff.mean()


def _shifted(poses, dx: float, w: int):
    from csg.pose import PoseSequence

    kp = np.array(poses.keypoints, np.float32, copy=True)
    kp[..., 0] += dx
    return PoseSequence(kp, fps=poses.fps, width=w, height=poses.height)


def test_framing_renders_the_persons_square_and_keeps_the_rest_of_the_photo():
    """framing >= 0 (a personalised model's vdm.json): the photo is cropped around its person as
    the training clips were (csg.data.prepare.crop_box), rendered there and pasted back; the
    photo outside the crop is kept as is. Default (-1, the embedded model): the whole photo."""
    h, w = 64, 200
    photo = _photo(h, w)
    ref = _shifted(make_reference_pose(64, 64), 68, w)
    poses = _shifted(make_moving_pose(3, 64, 64), 68, w)
    r = tiny_renderer(framing=0.15)
    st = r.prepare(photo, ref)
    assert st.box is not None
    y0, x0, bh, bw = st.box
    assert bh == bw and x0 > 0 and x0 + bw < w  # a square around the person, inside the photo
    out = np.concatenate(list(r.render(st, poses, generator=torch.Generator().manual_seed(0),
                                       progress=False)))
    assert out.shape == (3, h, w, 3)
    assert (out[:, :, :x0] == photo[None, :, :x0]).all()
    assert (out[:, :, x0 + bw:] == photo[None, :, x0 + bw:]).all()
    assert (out[:, :, x0 + bw // 2] != photo[None, :, x0 + bw // 2]).any()  # rendered inside
    assert tiny_renderer().prepare(photo, ref).box is None
    noted = tiny_renderer(note={**TINY_NOTE, "framing": 0.15})  # the checkpoint's framing
    assert noted.prepare(photo, ref).box == st.box
    assert tiny_renderer(note={**TINY_NOTE, "framing": 0.15}, framing=-1.0
                         ).prepare(photo, ref).box is None
    # a person taller than the photo is wide: no square holds them, the whole photo is rendered
    tall = tiny_renderer(framing=0.15).prepare(_photo(64, 40), make_reference_pose(64, 40))
    assert tall.box is None


def test_skeleton_zone_covers_the_skeleton_grown_by_pad_and_nothing_else():
    """pose2video.masks.skeleton_zone: every confident point inside, a point 2 shoulder widths
    beyond the hands outside; a person without hips reaches the bottom edge; low scores, NaN and
    far-off points are ignored; no point at all: empty."""
    from csg import keypoints as K
    from pose2video.masks import skeleton_zone

    h, w = 200, 300
    f = make_reference_pose(h, w).keypoints[0].copy()
    z = skeleton_zone(f, (h, w))
    ok = f[:, 2] >= 0.3
    xy = np.round(f[ok, :2]).astype(int)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    assert z[xy[inside, 1], xy[inside, 0]].all()
    sw = float(np.linalg.norm(f[K.LEFT_SHOULDER, :2] - f[K.RIGHT_SHOULDER, :2]))
    assert 0.05 < z.mean() < 0.9
    grown = skeleton_zone(f, (h, w), pad=0.5)
    assert grown.sum() > z.sum() and (grown | z).sum() == grown.sum()  # pad only adds
    # a point 2 shoulder widths right of everything is outside
    x_far = int(f[ok, 0].max() + 2 * sw)
    assert x_far < w
    assert not z[:, x_far:].any()
    cut = f.copy()
    cut[[K.LEFT_HIP, K.RIGHT_HIP, K.LEFT_KNEE, K.RIGHT_KNEE, K.LEFT_ANKLE, K.RIGHT_ANKLE], 2] = 0
    cut[K.FEET, 2] = 0
    xs = int(f[[K.LEFT_SHOULDER, K.RIGHT_SHOULDER], 0].mean())
    assert skeleton_zone(cut, (h, w))[h - 1, xs]  # cut at the waist: down to the bottom edge
    bad = f.copy()
    bad[:, 2] = 0.1
    assert not skeleton_zone(bad, (h, w)).any()
    bad[0] = (np.nan, 5.0, 1.0)
    bad[1] = (1e9, 5.0, 1.0)
    assert not skeleton_zone(bad, (h, w)).any()


def test_background_photo_keeps_the_photo_outside_the_persons_zone():
    """background "photo" (default): outside the zone of the photo's person and each frame's
    skeleton the output is the photo, in every frame; inside it the model's pixels. "model": the
    model's frame everywhere. Nonsense values are refused in one line."""
    from csg.errors import ConfigError
    from pose2video.masks import skeleton_zone
    from pose2video.vdm.renderer import ZONE_PAD, _in_box

    h, w = 64, 200
    photo = _photo(h, w)
    ref = _shifted(make_reference_pose(64, 64), 68, w)
    poses = _shifted(make_moving_pose(3, 64, 64), 68, w)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    for framing in (-1.0, 0.15):
        r = tiny_renderer(framing=framing)
        st = r.prepare(photo, ref)
        assert st.keep is not None and st.keep.shape == (st.box or (0, 0, h, w))[2:]
        out = np.concatenate(list(r.render(st, poses, generator=gen(), progress=False)))
        y0, x0, bh, bw = st.box or (0, 0, h, w)
        kp = _in_box(poses.keypoints, st.box)
        for t in range(len(out)):
            zone = st.keep | skeleton_zone(kp[t], (bh, bw), pad=ZONE_PAD)
            full = np.zeros((h, w), bool)
            full[y0:y0 + bh, x0:x0 + bw] = zone
            assert (out[t][~full] == photo[~full]).all()
            assert (out[t][full] != photo[full]).any()
        assert (~st.keep).any()  # the zone does not cover the whole photo
        model = tiny_renderer(framing=framing, background="model")
        sm = model.prepare(photo, ref)
        assert sm.keep is None
        out_m = np.concatenate(list(model.render(sm, poses, generator=gen(), progress=False)))
        assert (out_m != out).any()
    with pytest.raises(ConfigError, match="background"):
        tiny_renderer(background="blur")


def test_zone_fade_follows_the_persons_size_and_far_points_do_not_crash():
    """The fade of the background rule is at most a tenth of the shoulder width (a small person's
    limbs and fingertips stay opaque), else 4 % of the crop; a confident point far off the
    canvas (allowed by the pose contract) neither crashes nor grows the zone past the canvas."""
    from csg import keypoints as K
    from pose2video.masks import skeleton_zone, zone_unit
    from pose2video.vdm.renderer import zone_feather

    f = make_reference_pose(1000, 1000).keypoints[0].copy()
    sw = float(np.linalg.norm(f[K.LEFT_SHOULDER, :2] - f[K.RIGHT_SHOULDER, :2]))
    assert sw > 100 and zone_unit(f, (1000, 1000)) == pytest.approx(sw)
    assert zone_feather(f, (1000, 1000)) == pytest.approx(min(40.0, 0.1 * sw))
    small = f.copy()
    small[:, :2] = small[:, :2] * 0.2  # the same person at a fifth of the size, in a big crop
    assert zone_feather(small, (1000, 1000)) == pytest.approx(0.1 * 0.2 * sw)
    far = f.copy()
    far[K.LEFT_SHOULDER, :2] = (1e5, 10.0)  # (cv2 refused the 90000 px thick line)
    z = skeleton_zone(far, (4000, 4000))
    assert z.shape == (4000, 4000) and z.any()
