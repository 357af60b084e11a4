"""The few-step stage-1 student (audio2pose.distill), with a tiny teacher built in code."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audio2pose.config import SamplingConfig
from audio2pose.distill import DistillConfig, distill, distill_loss, student_rollout
from audio2pose.model import PoseDenoiser
from audio2pose.par import ParConfig
from audio2pose.pipeline import Audio2PosePipeline
from audio2pose.sampling import sample
from csg.features import AudioFeatureConfig, feature_dim
from tests.helpers import make_reference_pose

FEATS = AudioFeatureConfig(n_mels=8, context=1)


def tiny_teacher(seed: int = 0) -> PoseDenoiser:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        m = PoseDenoiser(audio_dim=feature_dim(FEATS), dim=32, depth=1, heads=2, ff_mult=2,
                         dropout=0.0)
        m.set_coord_stats(torch.randn(133, 2) * 0.01, torch.rand(133, 2) + 0.5)
    return m.eval()


@pytest.mark.parametrize("with_known", [False, True])
def test_rollout_is_the_sampler_without_cfg(with_known):
    """The k-step rollout is sample(cfg 1, eta 0) from the same generator, known frames included."""
    m = tiny_teacher()
    g = torch.Generator().manual_seed(3)
    audio = torch.randn(2, 10, feature_dim(FEATS), generator=g)
    ref = torch.randn(2, 133, 2, generator=g)
    known = torch.randn(2, 10, 133, 2, generator=g)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[:, :4] = with_known
    expected = sample(m, audio, ref, steps=3, cfg_scale=1.0, generator=torch.Generator().manual_seed(5),
                      known=known, known_mask=mask)
    gen = torch.Generator().manual_seed(5)
    x_T = torch.randn(2, 10, 133, 2, generator=gen)  # the sampler's first draw
    with torch.no_grad():
        x0, logits = student_rollout(m, x_T, audio, ref, known, mask, 3, gen)
    assert torch.equal(x0, expected.z0)
    assert torch.equal(torch.sigmoid(logits), expected.scores)


def test_rollout_keeps_known_frames_exactly_and_is_differentiable():
    m = tiny_teacher()
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(1, 8, feature_dim(FEATS), generator=g)
    known = torch.randn(1, 8, 133, 2, generator=g)
    mask = torch.zeros(1, 8, dtype=torch.bool)
    mask[0, :3] = True
    x0, _ = student_rollout(m, torch.randn(1, 8, 133, 2, generator=g), audio,
                            torch.zeros(1, 133, 2), known, mask, 2, g)
    assert torch.equal(x0[0, :3], known[0, :3]) and not torch.equal(x0[0, 3:], known[0, 3:])
    x0.sum().backward()
    assert m.pose_in.weight.grad is not None and m.pose_in.weight.grad.abs().sum() > 0


def test_loss_is_zero_on_the_target_and_ignores_known_frames():
    target = torch.randn(1, 4, 133, 2)
    scores = torch.ones(1, 4, 133)
    logits = torch.full((1, 4, 133), 30.0)  # sigmoid ~ 1 = the target scores
    mask = torch.tensor([[True, False, False, False]])
    loss, logs = distill_loss(target.clone(), logits, target, scores, mask, ParConfig(), 0.1)
    assert logs["coord"] == 0 and loss < 1e-6
    moved = target.clone()
    moved[0, 0] += 5.0  # a known frame: does not count
    assert distill_loss(moved, logits, target, scores, mask, ParConfig(), 0.1)[1]["coord"] == 0
    moved[0, 2] += 1.0
    assert distill_loss(moved, logits, target, scores, mask, ParConfig(), 0.1)[1]["coord"] > 0


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    from tests.helpers import tiny_corpus

    return tiny_corpus(tmp_path_factory.mktemp("corpus"), clips=4)


def test_distill_tiny_lowers_the_loss_and_exports_a_few_step_student(tiny_corpus, tmp_path):
    teacher_dir = Audio2PosePipeline(tiny_teacher(), FEATS, 25.0,
                                     SamplingConfig(window=12, overlap=4, steps=6, cfg_scale=2.0),
                                     name="tiny").save_pretrained(tmp_path / "teacher")
    cfg = DistillConfig(teacher=str(teacher_dir), data=str(tiny_corpus), out=str(tmp_path / "run"),
                        student_steps=2, pairs=16, pair_batch=8, batch_size=8, lr=3e-3, warmup=1,
                        max_steps=30, log_every=10, save_every=30, export_dtype="float32")
    final = distill(cfg, echo=lambda *_: None)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30]
    assert rows[-1]["coord"] < rows[0]["coord"]
    student = Audio2PosePipeline.from_pretrained(final)
    assert student.sampling.steps == 2 and student.sampling.cfg_scale == 1.0
    assert json.loads((final / "distill.json").read_text())["teacher_steps"] == 6
    wav = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    poses = student(wav, 16000, make_reference_pose(96, 128), progress=False)
    assert poses.num_frames == 25 and np.isfinite(poses.keypoints).all()


def test_distill_init_starts_the_student_from_another_checkpoint(tiny_corpus, tmp_path):
    """``init``: the student starts from a given checkpoint (e.g. a 4-step student distilled to
    2 steps); with no optimiser step the export is that checkpoint's weights. A checkpoint whose
    layers differ from the teacher's is refused with one line."""
    from csg.errors import DataError

    def save(model, name):
        return Audio2PosePipeline(model, FEATS, 25.0, SamplingConfig(window=12, overlap=4, steps=6),
                                  name=name).save_pretrained(tmp_path / name)

    teacher_dir, init_dir = save(tiny_teacher(0), "teacher"), save(tiny_teacher(1), "init")
    cfg = DistillConfig(teacher=str(teacher_dir), init=str(init_dir), data=str(tiny_corpus),
                        out=str(tmp_path / "run"), student_steps=2, pairs=8, pair_batch=8,
                        batch_size=4, max_steps=0, export_dtype="float32")
    final = distill(cfg, echo=lambda *_: None)
    got = Audio2PosePipeline.from_pretrained(final).model.state_dict()
    init = Audio2PosePipeline.from_pretrained(init_dir).model.state_dict()
    teacher = Audio2PosePipeline.from_pretrained(teacher_dir).model.state_dict()
    assert all(torch.equal(got[k], init[k]) for k in init)
    assert not all(torch.equal(got[k], teacher[k]) for k in teacher)
    with torch.random.fork_rng(devices=[]):
        wide = PoseDenoiser(audio_dim=feature_dim(FEATS), dim=48, depth=1, heads=2, ff_mult=2)
    other = save(wide.eval(), "wide")
    with pytest.raises(DataError, match="layers differ from the teacher's") as e:
        distill(DistillConfig(**{**cfg.__dict__, "init": str(other), "out": str(tmp_path / "r2")}),
                echo=lambda *_: None)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("key,value", [("batch_size", 0), ("max_steps", -1), ("lr", -1.0),
                                       ("seed", -1), ("pairs", 0), ("teacher_steps", 0),
                                       ("teacher_cfg", -1.0), ("export_dtype", "int8")])
def test_config_values_out_of_range_are_one_line(key, value):
    from csg.config import load_config
    from csg.errors import ConfigError

    with pytest.raises(ConfigError, match=f"^{key} must"):
        load_config(DistillConfig, None, {key: value})


def test_bad_data_leaves_no_run_folder(tiny_corpus, tmp_path):
    """The data is read before OUT/config.yaml is written: a --data with no windows leaves
    nothing behind."""
    from csg.errors import CsgError

    teacher_dir = Audio2PosePipeline(tiny_teacher(), FEATS, 25.0,
                                     SamplingConfig(window=12, overlap=4, steps=6),
                                     name="tiny").save_pretrained(tmp_path / "teacher")
    cfg = DistillConfig(teacher=str(teacher_dir), data=str(tiny_corpus), window=100000,
                        out=str(tmp_path / "run"))
    with pytest.raises(CsgError):
        distill(cfg, echo=lambda *_: None)
    assert not (tmp_path / "run").exists()
