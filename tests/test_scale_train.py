"""Multi-process training: ``accelerate launch`` of two CPU processes (gloo) on a tiny config.

Each launched process runs this file as a probe: it hooks accelerate (not the trainer) to record,
per optimizer step and per rank, a fingerprint of the batch it trained on, of the gradients after
their all-reduce (at ``Accelerator.clip_grad_norm_``, which every csg trainer calls once per step)
and of the parameters before the step, then runs the real ``csg train <stage> ...`` command.
The test then checks, across the two ranks: different data, identical gradients, identical
parameters before every step and at the end (changed from the start), and that ``--resume``
restores the step-N weights.

Stages: ``STAGES`` maps a stage name to (CLI arguments, data hook): stage 1 and the vdm renderer
(both with resume) and the PCE sync classifier (no resume in its trainer). A new trainer needs its
entry (tiny config; a data hook if it does not iterate an accelerate-prepared DataLoader) and a
test like :func:`test_two_process_audio2pose`.

Run time here (2 shared CPU cores, ``make test-slow``): see docs/scale.md.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


# --- the probe (runs inside each launched process) ---------------------------------------------
def _digest(arrays) -> str:
    h = hashlib.sha1()
    for a in arrays:
        h.update(a.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _tensors(obj):
    import torch

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for k in sorted(obj):
            yield from _tensors(obj[k])
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def _hook_dataloader(record):
    """Fingerprint every batch an accelerate-prepared DataLoader yields on this rank."""
    from accelerate import data_loader

    for cls in (data_loader.DataLoaderShard, data_loader.DataLoaderDispatcher):
        original = cls.__iter__

        def __iter__(self, _original=original):
            for batch in _original(self):
                record("data", h=_digest(_tensors(batch)))
                yield batch

        cls.__iter__ = __iter__


def _hook_classifier_pairs(record):
    """The classifier draws its training pairs itself (no DataLoader): fingerprint them."""
    from audio2pose import classifier_train as ct

    original = ct.make_pairs

    def make_pairs(*args, **kwargs):
        out = original(*args, **kwargs)
        record("data", h=_digest(_tensors(out[:3])))
        return out

    ct.make_pairs = make_pairs


STAGES = {
    # stage: (arguments after `csg train`, given DATA and OUT; data hook)
    "audio2pose": (lambda data, out, steps: [
        "audio2pose", "--config", str(REPO / "configs/audio2pose/tiny.yaml"), "--data", data,
        "--out", out, "--set", f"max_steps={steps}", "--set", "save_every=1",
        "--set", "augment_variants=0"], _hook_dataloader),
    "classifier": (lambda data, out, steps: [
        "classifier", "--region", "nonface", "--config", str(REPO / "configs/classifier/debug.yaml"),
        "--data", data, "--out", out, "--cpu", "--set", f"max_steps={steps}",
        "--set", "eval_every=1000", "--set", "pool_size=4"], _hook_classifier_pairs),
    "renderer": (lambda data, out, steps: [
        "renderer", "--config", str(REPO / "configs/pose2video/vdm_tiny.yaml"), "--data", data,
        "--out", out, "--set", f"max_steps={steps}", "--set", "save_every=1"], _hook_dataloader),
}


def probe_main(argv: list[str]) -> int:
    """``probe.py RECORD_DIR csg-args...``: hook accelerate, then run ``csg`` with the arguments."""
    import torch
    from accelerate import Accelerator

    from csg.cli import main

    torch.set_num_threads(1)
    record_dir, args = Path(argv[0]), argv[1:]
    rank = int(os.environ.get("RANK", "0"))
    log = open(record_dir / f"rank{rank}.jsonl", "a")
    state = {"acc": None}

    def record(ev, **kw):
        log.write(json.dumps({"ev": ev, **kw}) + "\n")
        log.flush()

    def params(acc):
        return _digest(acc.unwrap_model(acc._models[0]).parameters())

    clip = Accelerator.clip_grad_norm_

    def clip_grad_norm_(self, parameters, *a, **kw):
        parameters = list(parameters)
        state["acc"] = self
        record("step", world=self.num_processes, rank=self.process_index,
               kind=self.distributed_type.value, backend=self.state.backend,
               grad=_digest(p.grad for p in parameters if p.grad is not None),
               before=params(self))
        return clip(self, parameters, *a, **kw)

    load = Accelerator.load_state

    def load_state(self, *a, **kw):
        out = load(self, *a, **kw)
        record("loaded", params=params(self))
        return out

    Accelerator.clip_grad_norm_, Accelerator.load_state = clip_grad_norm_, load_state
    STAGES[args[1]][1](record)
    rc = main(args)
    if state["acc"] is not None:
        record("end", params=params(state["acc"]))
    log.close()
    return rc


if __name__ == "__main__":
    sys.exit(probe_main(sys.argv[1:]))


# --- the test ----------------------------------------------------------------------------------
# `accelerate launch --cpu --num_processes 2` starts ONE process in accelerate 1.16 (its --cpu path
# is the simple launcher; several CPU processes need an mpirun hostfile there). `--multi_gpu` is the
# torchrun launcher: with no visible GPU each process's Accelerator is MULTI_CPU over gloo.
LAUNCH = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
          "--dynamo_backend", "no"]


def launch(record_dir: Path, csg_args: list[str], port: int) -> float:
    """``accelerate launch --num_processes 2 --cpu`` of the probe; returns the seconds it took."""
    record_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *LAUNCH, "--main_process_port",
           str(port), __file__, str(record_dir), *csg_args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return time.time() - t0


def read(record_dir: Path) -> dict[int, list[dict]]:
    out = {}
    for r in (0, 1):
        out[r] = [json.loads(x) for x in (record_dir / f"rank{r}.jsonl").read_text().splitlines()]
    return out


def events(rows, ev):
    return [r for r in rows if r["ev"] == ev]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from tests.helpers import tiny_corpus

    return tiny_corpus(tmp_path_factory.mktemp("corpus"), clips=6)


def check_two_ranks(rec: dict[int, list[dict]], steps: int) -> None:
    """Both ranks: world size 2, ``steps`` steps, different data, same gradients and weights."""
    s0, s1 = events(rec[0], "step"), events(rec[1], "step")
    assert len(s0) == len(s1) == steps
    assert {(e["world"], e["rank"]) for e in s0} == {(2, 0)}
    assert {(e["world"], e["rank"]) for e in s1} == {(2, 1)}
    assert {(e["kind"], e["backend"]) for e in s0 + s1} == {("MULTI_CPU", "gloo")}
    d0, d1 = [e["h"] for e in events(rec[0], "data")], [e["h"] for e in events(rec[1], "data")]
    assert len(d0) >= steps and len(d1) >= steps
    assert all(a != b for a, b in zip(d0[:steps], d1[:steps])), "both ranks saw the same batch"
    for a, b in zip(s0, s1):
        assert a["grad"] == b["grad"], "gradients differ after the all-reduce"
        assert a["before"] == b["before"], "weights differ between ranks"
    end = [events(rec[r], "end")[0]["params"] for r in (0, 1)]
    assert end[0] == end[1] and end[0] != s0[0]["before"]


def check_resumed(rec1: dict[int, list[dict]], rec2: dict[int, list[dict]]) -> None:
    """Run 2 (--resume) loaded on both ranks the weights run 1 ended with, started its first step
    from them, and then trained one synchronised step."""
    end1 = events(rec1[0], "end")[0]["params"]
    for r in (0, 1):
        assert [e["params"] for e in events(rec2[r], "loaded")] == [end1]
        assert events(rec2[r], "step")[0]["before"] == end1
    check_two_ranks(rec2, 1)

@pytest.mark.slow
def test_two_process_audio2pose(corpus, tmp_path):
    args, _ = STAGES["audio2pose"]
    out = tmp_path / "run"
    t1 = launch(tmp_path / "rec1", ["train", *args(str(corpus), str(out), 2)], free_port())
    rec1 = read(tmp_path / "rec1")
    check_two_ranks(rec1, 2)
    assert (out / "final").is_dir() and (out / "checkpoints" / "step_0000002").is_dir()
    # resume: both ranks load the step-2 state (= the weights run 1 ended with), then step 3
    t2 = launch(tmp_path / "rec2", ["train", *args(str(corpus), str(out), 3), "--resume"],
                free_port())
    rec2 = read(tmp_path / "rec2")
    check_resumed(rec1, rec2)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    print(f"\n2-process audio2pose: {t1:.1f} s for 2 steps, {t2:.1f} s for the resumed step")


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory):
    """5.5 s clips with train and val speakers: the classifier cuts 125-frame windows."""
    from tests.helpers import tiny_corpus

    return tiny_corpus(tmp_path_factory.mktemp("long_corpus"), clips=16, seconds=5.5)


@pytest.mark.slow
def test_two_process_classifier(long_corpus, tmp_path):
    """The PCE sync classifier draws its own pairs per rank (seed + rank); it has no --resume."""
    args, _ = STAGES["classifier"]
    out = tmp_path / "clf"
    t = launch(tmp_path / "rec", ["train", *args(str(long_corpus), str(out), 2)], free_port())
    check_two_ranks(read(tmp_path / "rec"), 2)
    assert (out / "final").is_dir()
    print(f"\n2-process classifier: {t:.1f} s for 2 steps")


@pytest.fixture(scope="module")
def frames_corpus(tmp_path_factory):
    """32x32 avatar frames for the vdm renderer (its tiny config trains on 32-pixel latents)."""
    from tests.helpers import tiny_corpus

    return tiny_corpus(tmp_path_factory.mktemp("frames_corpus"), clips=4, frames=True,
                       size_hw=(32, 32))


@pytest.mark.slow
def test_two_process_renderer(frames_corpus, tmp_path):
    """``csg train renderer`` (vdm): rank 0 builds the latent cache, both train; then --resume."""
    args, _ = STAGES["renderer"]
    out = tmp_path / "vdm"
    t1 = launch(tmp_path / "rec1", ["train", *args(str(frames_corpus), str(out), 2)], free_port())
    rec1 = read(tmp_path / "rec1")
    check_two_ranks(rec1, 2)
    t2 = launch(tmp_path / "rec2", ["train", *args(str(frames_corpus), str(out), 3), "--resume"],
                free_port())
    rec2 = read(tmp_path / "rec2")
    check_resumed(rec1, rec2)
    assert json.loads((out / "vdm.json").read_text())["steps"] == 3
    print(f"\n2-process renderer: {t1:.1f} s for 2 steps, {t2:.1f} s for the resumed step")
