"""The ``vdm`` warp prior (issue #15): the warp renderer's frames, encoded, as a second input of the
denoiser. Tiny models built in code; the warp renderer runs for real (no weights needed)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import make_moving_pose, make_reference_pose
from tests.test_vdm import H, W, _photo, tiny_model, tiny_options


def _inputs(B=1, K=2, T=3, C=4, h=4, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return dict(context=r(B, K, C, h, w), noisy=r(B, T, C, h, w),
                timesteps=torch.full((B,), 500), pose_maps=torch.rand(B, K + T, 3, 8 * h, 8 * w,
                                                                      generator=g),
                audio=r(B, K + T, 3, 10))


def test_prior_is_required_by_prior_models_only():
    x = _inputs()
    prior = torch.randn(1, 5, 4, 4, 4)
    with pytest.raises(ValueError, match="takes a warp prior"):
        tiny_model(warp_prior=True)(**x)
    with pytest.raises(ValueError, match="no warp prior"):
        tiny_model()(**x, prior=prior)
    with pytest.raises(ValueError, match="expected"):
        tiny_model(warp_prior=True)(**x, prior=prior[:, :4])


def test_prior_reaches_the_output_and_is_dropped_with_the_pose():
    m = tiny_model(warp_prior=True).eval()
    x = _inputs()
    p1, p2 = torch.randn(1, 5, 4, 4, 4), torch.randn(1, 5, 4, 4, 4)
    with torch.no_grad():
        a, b = m(**x, prior=p1).sample, m(**x, prior=p2).sample
        drop = torch.ones(1, dtype=torch.bool)
        c, d = m(**x, prior=p1, drop_pose=drop).sample, m(**x, prior=p2, drop_pose=drop).sample
    assert not torch.allclose(a, b)
    torch.testing.assert_close(c, d)  # the null pose condition sees no prior either


def test_init_without_prior_gains_a_zero_prior(tmp_path):
    """Fine-tuning a model without the prior starts from exactly that model."""
    from pose2video.vdm.train import load_init

    import json

    base = tiny_model().eval()
    base.save_pretrained(tmp_path / "base")
    conf = tmp_path / "base" / "config.json"  # as written before the prior existed
    conf.write_text(json.dumps({k: v for k, v in json.loads(conf.read_text()).items()
                                if k != "warp_prior"}))
    m = load_init(str(tmp_path / "base"), warp_prior=True).eval()
    assert m.config.warp_prior and float(m.prior_embed.weight.detach().abs().sum()) == 0
    x = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(m(**x, prior=torch.randn(1, 5, 4, 4, 4)).sample,
                                   base(**x).sample)
    assert not load_init(str(tmp_path / "base"), warp_prior=False).config.warp_prior


def _render(r, n=5, seed=0):
    state = r.prepare(_photo(), make_reference_pose(H, W))
    gen = torch.Generator().manual_seed(seed)
    return np.concatenate(list(r.render(state, make_moving_pose(n, H, W), generator=gen,
                                        progress=False)))


def test_renderer_feeds_the_warp_prior_window_by_window(monkeypatch):
    """Each window gets the reference latent and one warp latent per frame (carried frames keep
    theirs), and the prior changes the frames."""
    from pose2video.vdm import renderer as R
    from pose2video.vdm.renderer import vdm_factory

    seen = []
    orig = R.VdmRenderer._sample

    def spy(self, context, maps, aud, n, has_audio, gen, sparse=None, prior=None):
        seen.append((context.shape[1], n, None if prior is None else prior.clone()))
        return orig(self, context, maps, aud, n, has_audio, gen, sparse, prior=prior)

    monkeypatch.setattr(R.VdmRenderer, "_sample", spy)
    model = tiny_model(warp_prior=True)
    r = vdm_factory(**tiny_options(model=model))
    out = _render(r)
    assert out.shape == (5, H, W, 3) and out.dtype == np.uint8
    assert len(seen) >= 2
    for k_ctx, n, prior in seen:
        assert prior is not None and prior.shape[:2] == (1, k_ctx + n)
    # carried frames keep the prior they had as new frames in the window before
    k = seen[1][0] - 1
    torch.testing.assert_close(seen[1][2][0, 1:1 + k], seen[0][2][0, seen[0][0] + seen[0][1] - k:])
    assert np.array_equal(out, _render(vdm_factory(**tiny_options(model=model))))  # seed -> bytes
    with torch.no_grad():
        model.prior_embed.weight.zero_()
        model.prior_embed.bias.zero_()
    assert not np.array_equal(out, _render(vdm_factory(**tiny_options(model=model))))


def test_cache_and_windows_carry_the_prior(tmp_path):
    """build_cache(warp_prior=True) stores the warp frames' latents; the dataset then draws frame 0
    as the reference (the frame the warp moves) and returns its prior first."""
    from csg.features import AudioFeatureConfig
    from pose2video.vdm.data import LatentWindowDataset, build_cache
    from tests.helpers import tiny_corpus
    from tests.test_vdm import tiny_codec

    root = tiny_corpus(tmp_path / "data", clips=1, frames=True, size_hw=(32, 32))
    kw = dict(codec_name="tiny", codec_path="", size=32, frames_per_clip=6,
              features=AudioFeatureConfig(n_mels=8, context=1), split=None, progress=False)
    plain = build_cache([root], tmp_path / "plain", tiny_codec(), **kw)
    files = build_cache([root], tmp_path / "prior", tiny_codec(), warp_prior=True, **kw)
    with np.load(files[0]) as z, np.load(plain[0]) as z0:
        assert z["prior"].shape == z["latents"].shape == (6, 4, 4, 4)
        assert "prior" not in z0.files and str(z["key"]) != str(z0["key"])
        lat, prior = z["latents"].astype(np.float32), z["prior"].astype(np.float32)
    # frame 0 drives itself: the warp returns the photo, so its prior is its own latent
    np.testing.assert_allclose(prior[0], lat[0], atol=2e-3)
    ds = LatentWindowDataset(files, window=4, seed=0, warp_prior=True)
    for i in range(len(ds)):
        it = ds[i]
        assert it["prior"].shape == (5, 4, 4, 4)
        torch.testing.assert_close(it["ref"], torch.from_numpy(lat[0]))
    from csg.errors import DataError

    with pytest.raises(DataError, match="no warp prior"):
        LatentWindowDataset(plain, window=4, warp_prior=True)
