"""``csg distill vdm``: few-step student and sparse fine-tune with tiny parts built in code."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.test_vdm import tiny_model
from tests.test_vdm_train import _fake_cache


def _teacher_folder(tmp_path):
    m = tiny_model()
    folder = tmp_path / "teacher"
    m.save_pretrained(folder, safe_serialization=True)
    (folder / "vdm.json").write_text(json.dumps({
        "codec": "autoencoder_kl", "size": 32, "window": 4, "carry": 2,
        "features": {"n_mels": 8, "context": 1}}))
    return folder


def _cfg(tmp_path, **kw):
    from pose2video.vdm.distill import VdmDistillConfig

    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    for i in range(2):
        _fake_cache(cache / f"c{i}.npz", n=6, seed=i)
    base = VdmDistillConfig(teacher=str(_teacher_folder(tmp_path)), cache=(str(cache),),
                            out=str(tmp_path / "run"), pairs=4, teacher_steps=2, max_steps=3,
                            log_every=1, save_every=2, attention_topk=1)
    return replace(base, **kw)


def test_region_loss_weights_known_answer():
    from pose2video.vdm.distill import distill_loss

    x0 = torch.zeros(1, 1, 4, 2, 2)
    target = torch.zeros_like(x0)
    target[0, 0, :, 0, 0] = 1.0  # error only in cell (0, 0): se = 1 there
    par = torch.zeros(1, 1, 5, 2, 2)
    par[:, :, 0] = 1.0
    par[0, 0, 0, 0, 0] = 10.0  # PAR weight of a face cell
    par[0, 0, 1, 0, 0] = 1.0  # face area
    par[0, 0, 4] = 1.0 - par[0, 0, 1]  # rest
    uni, _ = distill_loss(x0, target, par, region=False)
    reg, logs = distill_loss(x0, target, par, region=True)
    assert abs(float(uni) - 0.25) < 1e-6 and abs(float(reg) - 2.5) < 1e-6
    assert abs(float(logs["mse_face"]) - 1.0) < 1e-6 and float(logs["mse_rest"]) == 0.0


def test_student_rollout_with_teacher_steps_equals_the_teacher_without_cfg(tmp_path):
    from csg.diffusion.schedule import NoiseSchedule, timesteps
    from pose2video.vdm.distill import student_x0, teacher_sample

    cfg = _cfg(tmp_path, teacher_cfg_pose=1.0, teacher_steps=3)
    m = tiny_model().eval()
    g = torch.Generator().manual_seed(0)
    ctx, x_T = torch.randn(1, 1, 4, 4, 4, generator=g), torch.randn(1, 3, 4, 4, 4, generator=g)
    maps, aud = torch.rand(1, 4, 3, 32, 32, generator=g), torch.randn(1, 4, 3, 10, generator=g)
    with torch.no_grad():
        a = teacher_sample(m, x_T, ctx, maps, aud, cfg, torch.Generator())
        s = student_x0(m, x_T, ctx, maps, aud, timesteps(1000, 3, "trailing"),
                       NoiseSchedule.cosine(1000, m.config.prediction_type), None,
                       torch.Generator())
    torch.testing.assert_close(a, s)


def test_distill_trajectory_exports_a_one_step_student_that_renders(tmp_path):
    from pose2video.vdm.distill import distill
    from pose2video.vdm.renderer import load_vdm, vdm_factory
    from tests.helpers import make_moving_pose, make_reference_pose
    from tests.test_vdm import tiny_codec

    out = distill(_cfg(tmp_path, region_loss=True))
    model, note = load_vdm(out)
    assert note["render"] == {"steps": 1, "cfg_pose": 1.0, "cfg_audio": 1.0}
    assert note["codec"] == "autoencoder_kl"  # the teacher's (default codec "")
    assert note["distill"]["method"] == "trajectory" and note["distill"]["steps"] == 3
    assert model.config.attention == "global+local"
    assert (out / "pairs.pt").is_file()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "mse_face", "mse_hands"} <= set(rows[-1])
    r = vdm_factory(weights=str(out), latent_codec=tiny_codec())
    assert (r.steps, r.cfg_pose, r.attention) == (1, 1.0, "global+local")
    st = r.prepare(np.full((32, 32, 3), 100, np.uint8), make_reference_pose(32, 32))
    frames = np.concatenate(list(r.render(st, make_moving_pose(5, 32, 32), progress=False)))
    assert frames.shape == (5, 32, 32, 3)


def test_a_taef2_teachers_student_decodes_with_the_small_decoder(tmp_path):
    from csg.errors import DataError
    from pose2video.vdm.distill import VdmDistillConfig, distill, export

    # asked of a teacher with another codec, or of a fine-tune: refused before any work
    with pytest.raises(DataError, match="reads TAEF2 latents; this teacher uses 'autoencoder_kl'"):
        distill(_cfg(tmp_path, codec="taef2_lite"))
    with pytest.raises(DataError, match="one-step students"):
        distill(_cfg(tmp_path, codec="taef2_lite", method="finetune"))
    with pytest.raises(DataError, match="codec must be"):
        distill(_cfg(tmp_path, codec="taef2"))

    teacher = {"codec": "taef2", "codec_path": "", "size": 128}
    for codec, want in (("taef2_lite", "taef2_lite"), ("", "taef2")):
        out = tmp_path / (codec or "plain")
        export(tiny_model(), VdmDistillConfig(codec=codec), teacher, out, steps=1, minutes=0.0)
        assert json.loads((out / "vdm.json").read_text())["codec"] == want
    out = tmp_path / "ft"
    export(tiny_model(), VdmDistillConfig(method="finetune"), teacher, out, steps=1, minutes=0.0)
    assert json.loads((out / "vdm.json").read_text())["codec"] == "taef2"  # not a student


def test_distill_finetune_keeps_teacher_sampler_defaults(tmp_path):
    from pose2video.vdm.distill import distill
    from pose2video.vdm.renderer import load_vdm

    out = distill(_cfg(tmp_path, method="finetune", attention="global", max_steps=2))
    model, note = load_vdm(out)
    assert "render" not in note and model.config.attention == "global"


def test_missing_cache_is_one_clear_error(tmp_path):
    import pytest

    from csg.errors import DataError
    from pose2video.vdm.distill import distill

    cfg = replace(_cfg(tmp_path), cache=(str(tmp_path / "nothing"),))
    with pytest.raises(DataError, match="no latent cache files"):
        distill(cfg)
