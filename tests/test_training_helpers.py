"""csg.training helpers shared by the training loops and the sync classifiers of both stages."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from csg.errors import ConfigError
from csg.training import (StepLog, check_classifier_config, end_step, kind_accuracy,
                          latest_checkpoint, optimizer_step, out_of_time)


class FakeAcc:
    """The bits of accelerate.Accelerator the helpers use, recording the calls."""

    is_main_process = True

    def __init__(self):
        self.calls = []

    def backward(self, loss):
        self.calls.append("backward")
        loss.backward()

    def clip_grad_norm_(self, params, max_norm):
        self.calls.append(("clip", max_norm))
        torch.nn.utils.clip_grad_norm_(list(params), max_norm)

    def gather_for_metrics(self, v):
        return v

    def save_state(self, path):
        self.calls.append(("save", path))
        Path(path).mkdir(parents=True, exist_ok=True)


class Recorder:
    def __init__(self, calls, name):
        self.calls, self.name = calls, name

    def step(self):
        self.calls.append(f"{self.name}.step")

    def zero_grad(self):
        self.calls.append(f"{self.name}.zero_grad")


def test_kind_accuracy_known_answer():
    # positives: 1 of 2 right; self 1/1, shift 1/1, swap 1/2 -> negatives 3/4
    row = kind_accuracy([True, False, True, True, False, True], [-1, -1, 0, 1, 2, 2],
                        ("self", "shift", "swap"))
    assert list(row) == ["acc", "pos", "self", "shift", "swap"]
    assert row == {"acc": 0.5 * (0.5 + 0.75), "pos": 0.5, "self": 1.0, "shift": 1.0, "swap": 0.5}


def test_kind_accuracy_empty_groups_are_nan():
    row = kind_accuracy(torch.tensor([True, False]), torch.tensor([0, 0]), ("self", "shift"))
    assert math.isnan(row["pos"]) and math.isnan(row["acc"]) and math.isnan(row["shift"])
    assert row["self"] == 0.5


def test_check_classifier_config():
    check_classifier_config("face", (1.0, 1.0, 0.0), ("face", "nonface"), ("a", "b", "c"))
    with pytest.raises(ConfigError, match="region 'hands' is not one of face, nonface"):
        check_classifier_config("hands", (1.0, 1.0, 1.0), ("face", "nonface"), ("a", "b", "c"))
    with pytest.raises(ConfigError, match=r"neg_mix needs 3 weights \(a, b, c\)"):
        check_classifier_config("face", (1.0, 1.0), ("face", "nonface"), ("a", "b", "c"))


def test_optimizer_step_order_and_clip():
    acc = FakeAcc()
    model = torch.nn.Linear(2, 1)
    opt, sched = Recorder(acc.calls, "opt"), Recorder(acc.calls, "sched")
    loss = (model(torch.ones(1, 2)) * 100).sum()
    optimizer_step(acc, model, opt, sched, loss, 0.5)
    assert acc.calls == ["backward", ("clip", 0.5), "opt.step", "sched.step", "opt.zero_grad"]
    norm = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
    assert norm == pytest.approx(0.5, rel=1e-4)
    acc.calls.clear()
    optimizer_step(acc, model, opt, sched, model(torch.ones(1, 2)).sum(), 0.5, clip=False)
    assert acc.calls == ["backward", "opt.step", "sched.step", "opt.zero_grad"]


def test_out_of_time():
    cfg = SimpleNamespace(max_steps=10, max_minutes=0.0)
    assert not out_of_time(9, cfg, 1e9) and out_of_time(10, cfg, 0.0)
    cfg = SimpleNamespace(max_steps=10, max_minutes=2.0)
    assert not out_of_time(3, cfg, 1.9) and out_of_time(3, cfg, 2.0)


def test_end_step_logs_and_checkpoints(tmp_path):
    acc = FakeAcc()
    cfg = SimpleNamespace(max_steps=7, max_minutes=0.0, save_every=3)
    lines = []
    log = StepLog(acc, tmp_path / "metrics.jsonl", 2, lines.append)
    ck = tmp_path / "checkpoints"
    dones = [end_step(acc, log, ck, step, {"loss": torch.tensor(float(step))}, cfg, lr=0.1)
             for step in range(1, 8)]
    log.close()
    assert dones == [False] * 6 + [True]
    assert [c[1].rsplit("_", 1)[1] for c in acc.calls if c[0] == "save"] == \
        ["0000003", "0000006", "0000007"]
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"], r["lr"]) for r in rows] == \
        [(2, 1.5, 0.1), (4, 3.5, 0.1), (6, 5.5, 0.1), (7, 7.0, 0.1)]
    assert len(lines) == 4 and lines[-1].startswith("step=7 ")
    assert latest_checkpoint(ck).name == "step_0000007"  # keep=2: step_3 removed
    assert sorted(p.name for p in ck.iterdir()) == ["step_0000006", "step_0000007"]


def test_end_step_stops_on_wall_time(tmp_path):
    acc = FakeAcc()
    cfg = SimpleNamespace(max_steps=1000, max_minutes=1.0, save_every=500)
    log = StepLog(acc, tmp_path / "metrics.jsonl", 50, lambda s: None)
    log.t0 -= 61  # a minute and a second already spent
    assert end_step(acc, log, tmp_path / "ck", 5, {"loss": torch.tensor(1.0)}, cfg)
    log.close()
    assert [c for c in acc.calls if c[0] == "save"] and latest_checkpoint(tmp_path / "ck").name \
        == "step_0000005"


def test_new_run_folder_removes_only_a_new_folder_with_nothing_produced(tmp_path):
    """Refused data (a CsgError) before anything was produced: the new run folder goes; encoded
    clips (``*.npz``) are kept for a rerun; an existing folder and Ctrl-C keep everything."""
    from csg.errors import DataError
    from csg.training import new_run_folder

    def refuse(out, write=None):
        with pytest.raises((DataError, KeyboardInterrupt)):
            with new_run_folder(out):
                (out / "config.yaml").write_text("x")
                if write:
                    (out / write).parent.mkdir(parents=True, exist_ok=True)
                    (out / write).write_bytes(b"")
                raise DataError("refused")

    refuse(tmp_path / "a")
    assert not (tmp_path / "a").exists()
    refuse(tmp_path / "b", "latents/clip0.npz")
    assert (tmp_path / "b" / "latents" / "clip0.npz").is_file()
    (tmp_path / "c").mkdir()
    refuse(tmp_path / "c")
    assert (tmp_path / "c" / "config.yaml").is_file()
    with pytest.raises(KeyboardInterrupt):
        with new_run_folder(tmp_path / "d"):
            raise KeyboardInterrupt
    assert (tmp_path / "d").is_dir()
