"""Training the ``vdm`` renderer: a tiny end-to-end run (cache, export, resume) and an overfit check."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.test_vdm import tiny_model


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from tests.helpers import tiny_corpus

    return tiny_corpus(tmp_path_factory.mktemp("vdm_synth"), clips=2, frames=True,
                       size_hw=(32, 32))


def _tiny_cfg(data, out, **kw):
    from csg.config import find_config, load_config
    from pose2video.vdm.config import VdmTrainConfig

    cfg = load_config(VdmTrainConfig, find_config("configs/pose2video/vdm_tiny.yaml"))
    return replace(cfg, data=(str(data),), out=str(out), **kw)


@pytest.mark.slow
def test_train_tiny_exports_renders_and_resumes(synth_root, tmp_path):
    from pose2video.vdm.renderer import load_vdm, vdm_factory
    from pose2video.vdm.train import train
    from tests.helpers import make_moving_pose, make_reference_pose

    out = train(_tiny_cfg(synth_root, tmp_path / "run"), progress=False)
    model, note = load_vdm(out)
    assert note["steps"] == 4 and note["size"] == 32 and note["codec"] == "taef2"
    assert "framing" not in note  # whole frames: the renderer uses the whole photo
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "mse_face", "mse_hands", "mse_body", "mse_rest"} <= set(rows[-1])
    assert len(list((out / "latents").glob("*.npz"))) == 2
    r = vdm_factory(weights=str(out), steps=2)
    state = r.prepare(np.full((40, 24, 3), 128, np.uint8), make_reference_pose(40, 24))
    frames = np.concatenate(list(r.render(state, make_moving_pose(3, 40, 24), progress=False)))
    assert frames.shape == (3, 40, 24, 3)
    # resume: continues from the step-4 checkpoint to step 6
    out2 = train(_tiny_cfg(synth_root, tmp_path / "run", max_steps=6, framing=1.0), resume=True,
                 progress=False)
    note2 = json.loads((out2 / "vdm.json").read_text())
    assert note2["steps"] == 6 and note2["framing"] == 1.0  # person crops: the renderer crops too


def _fake_cache(path, n=8, size=32, seed=0):
    from tests.helpers import make_moving_pose

    rng = np.random.default_rng(seed)
    poses = make_moving_pose(n, size, size).keypoints
    from pose2video.vdm.config import ParConfig
    from pose2video.vdm.data import _save

    lat = rng.normal(0, 1, (n, 4, size // 8, size // 8)).astype(np.float16)
    _save(path, {"latents": lat, "poses": poses, "fps": np.float64(25), "key": np.array("x"),
                 "audio": rng.normal(0, 1, (n, 3, 10)).astype(np.float32)}, size, ParConfig(), "p")
    return path


def test_short_overfit_run_lowers_the_loss(tmp_path):
    from csg.diffusion.schedule import NoiseSchedule
    from pose2video.vdm.data import LatentWindowDataset
    from pose2video.vdm.train import collate, training_loss

    ds = LatentWindowDataset([_fake_cache(tmp_path / "a.npz")], window=4, stride=4)
    batch = collate([ds[0], ds[1]])
    cfg = replace(_tiny_cfg(tmp_path, tmp_path), drop_audio=0.0, drop_pose=0.0)
    model = tiny_model()
    sched = NoiseSchedule.cosine(1000, model.config.prediction_type)

    def eval_loss():
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return float(np.mean([training_loss(model, batch, cfg, sched, g)[0].item()
                                  for _ in range(6)]))

    before = eval_loss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        loss, _ = training_loss(model, batch, cfg, sched, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.8 * before, (before, after)


def test_cache_is_reused_when_the_key_matches(synth_root, tmp_path):
    from csg.features import AudioFeatureConfig
    from pose2video.vdm.data import build_cache
    from tests.test_vdm import tiny_codec

    kw = dict(codec_name="tiny", codec_path="", size=32, frames_per_clip=5,
              features=AudioFeatureConfig(n_mels=8, context=1), split=None, progress=False)
    files = build_cache([synth_root], tmp_path, tiny_codec(), **kw)
    stamp = [f.stat().st_mtime_ns for f in files]
    with np.load(files[0]) as z:
        assert z["latents"].shape == (5, 4, 4, 4) and z["audio"].shape == (5, 3, 10)
        assert z["poses"].shape == (5, 133, 3)
    files2 = build_cache([synth_root], tmp_path, tiny_codec(), **kw)
    assert [f.stat().st_mtime_ns for f in files2] == stamp


def test_carry_is_checked_against_the_window_the_run_uses(tmp_path):
    """--init replaces the config's window with the model's, so carry >= the YAML's window is not a
    config error; train() refuses it (one line) before writing anything when it still holds."""
    from csg.errors import ConfigError, DataError
    from pose2video.vdm.config import VdmTrainConfig
    from pose2video.vdm.train import train

    cfg = VdmTrainConfig(window=6, carry=6, data=(str(tmp_path),), out=str(tmp_path / "run"))
    with pytest.raises(DataError, match="larger than carry"):
        train(cfg)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="carry_prob"):
        VdmTrainConfig(carry_prob=1.5)
