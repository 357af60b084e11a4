"""Stage-1 training through accelerate on a tiny synthetic corpus built in tmp_path."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audio2pose.train import coord_stats
from csg.data import load_clip, read_manifest


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    from tests.helpers import tiny_corpus

    return tiny_corpus(tmp_path_factory.mktemp("corpus"), clips=4)


def test_coord_stats_per_region_std(tiny_corpus):
    from csg import keypoints as K

    clips = [load_clip(tiny_corpus, r) for r in read_manifest(tiny_corpus)]
    mean, std = coord_stats(clips, tau=0.8)
    assert mean.shape == std.shape == (133, 2)
    for g in (K.BODY, K.FACE, K.HANDS):
        assert torch.unique(std[g]).numel() == 1 and std[g][0, 0] > 0


def test_export_sampling_records_the_reference_frame(tiny_corpus):
    from dataclasses import replace

    from audio2pose.config import SamplingConfig, TrainConfig
    from audio2pose.normalize import reference_frame
    from audio2pose.train import export_sampling

    clips = [load_clip(tiny_corpus, r) for r in read_manifest(tiny_corpus)]
    frame = reference_frame([c.ref for c in clips])
    s = export_sampling(TrainConfig(), clips, echo=lambda m: None)
    assert s.hand_range == frame["hand_range"] and s.hips == frame["hips"]
    assert replace(s, hand_range=None, hips=None) == SamplingConfig()
    kept = TrainConfig(sampling=SamplingConfig(hips=(1.0, 0.5)))
    assert export_sampling(kept, clips, echo=lambda m: None).hips == (1.0, 0.5)
    off = TrainConfig(record_reference_frame=False)
    assert export_sampling(off, clips, echo=lambda m: None) == SamplingConfig()


@pytest.mark.slow
def test_train_tiny_exports_and_resumes(tiny_corpus, tmp_path):
    from csg.cli import main
    from audio2pose.pipeline import Audio2PosePipeline
    from tests.helpers import make_reference_pose

    out = tmp_path / "run"
    base = ["train", "audio2pose", "--config", "configs/audio2pose/tiny.yaml", "--data",
            str(tiny_corpus), "--out", str(out)]
    assert main(base + ["--set", "max_steps=2"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"body", "face", "hands", "score", "loss"} <= set(rows[0])
    assert (out / "config.yaml").is_file() and (out / "checkpoints" / "step_0000002").is_dir()
    assert main(base + ["--set", "max_steps=3", "--resume"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    pipe = Audio2PosePipeline.from_pretrained(out / "final")
    assert pipe.sampling.hand_range is not None and pipe.sampling.hips is not None
    poses = pipe(np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32), 16000,
                 make_reference_pose(96, 128), progress=False)
    assert poses.num_frames == 25
    assert main(base + ["--set", "nope=1"]) != 0  # unknown config keys raise


@pytest.mark.parametrize("key,value", [("batch_size", 0), ("window", 0), ("grad_accum", 0),
                                       ("max_steps", -1), ("lr", -1.0), ("max_minutes", -1.0),
                                       ("seed", -1), ("log_every", 0),
                                       ("mixed_precision", "fp8")])
def test_config_values_out_of_range_are_one_line(key, value):
    """Checked when the config is built, before data is read or a run folder is written (they
    surfaced as "unexpected ValueError" from torch, or not at all)."""
    from audio2pose.config import TrainConfig
    from csg.config import load_config
    from csg.errors import ConfigError

    with pytest.raises(ConfigError, match=f"^{key} must"):
        load_config(TrainConfig, None, {key: value})
