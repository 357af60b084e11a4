"""`csg run` start-up: the forked stage-1 worker, the encoder thread and the run record's timeline.

The worker's mechanics are tested with a stand-in pipeline (pure Python, so forking the test
process is safe); that the real stage 1 in a worker writes the same bytes as in one process is
the slow subprocess test at the end.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from csg.errors import InputError, NoPersonError
from pipeline import worker as W
from pipeline.cli import process_age, write_chunks

ROOT = Path(__file__).resolve().parents[1]


class FakePipe:
    """What the worker uses of CoSpeechPipeline: ``audio2pose`` (loaded on access),
    ``generators(seed)`` and ``generate_poses``."""

    def __init__(self, fail: BaseException | None = None, die: bool = False):
        self.fail, self.die = fail, die

    @property
    def audio2pose(self):
        return "model"

    def generators(self, seed):
        return {"audio2pose": ("gen", seed)}

    def generate_poses(self, wav, sr, ref_pose, *, generator, guidance, progress):
        if self.die:
            os._exit(3)
        if self.fail is not None:
            raise self.fail
        return {"sum": float(np.sum(wav)), "sr": sr, "ref": ref_pose, "gen": generator,
                "guidance": guidance, "pid": os.getpid()}


def _fork_worker(pipe) -> W.Stage1Worker:
    if "fork" not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip("no fork start method on this platform")
    return W.Stage1Worker(pipe, preimport=())


def test_worker_answers_from_another_process_with_what_one_process_computes():
    wav = np.linspace(-1, 1, 100_000, dtype=np.float32)  # larger than a pipe's buffer
    w = _fork_worker(FakePipe())
    try:
        w.submit(wav, 16000, "ref", seed=5, guidance="sg", progress=False)
        out = w.result()
    finally:
        w.close()
    local = W.InProcessStage1(FakePipe())
    local.submit(wav, 16000, "ref", seed=5, guidance="sg", progress=False)
    expect = local.result()
    assert out["pid"] != os.getpid() and expect["pid"] == os.getpid()
    assert {k: v for k, v in out.items() if k != "pid"} == \
        {k: v for k, v in expect.items() if k != "pid"}
    assert {"stage1_load", "stage1_wait", "stage1_generate"} <= set(w.spans)
    for a, b in w.spans.values():  # one clock for both processes
        assert a <= b <= time.perf_counter()


@pytest.mark.parametrize("err", [InputError("ref.json: no shoulders; use another photo"),
                                 NoPersonError("photo.png: no person")])
def test_worker_errors_come_back_with_their_type_and_message(err):
    w = _fork_worker(FakePipe(fail=err))
    try:
        w.submit(np.zeros(10, np.float32), 16000, None, seed=0, guidance=None, progress=False)
        with pytest.raises(type(err), match=str(err).split(";")[0]) as info:
            w.result()
    finally:
        w.close()
    assert "stage-1 worker" in str(info.value.__cause__)


def test_an_unpicklable_worker_error_still_arrives_as_one_message():
    class Odd(Exception):
        def __reduce__(self):
            raise TypeError("no pickling")

    w = _fork_worker(FakePipe(fail=Odd("odd thing")))
    try:
        w.submit(np.zeros(10, np.float32), 16000, None, seed=0, guidance=None, progress=False)
        with pytest.raises(RuntimeError, match="Odd: odd thing"):
            w.result()
    finally:
        w.close()


def test_a_dead_worker_is_reported_not_waited_for():
    w = _fork_worker(FakePipe(die=True))
    try:
        w.submit(np.zeros(10, np.float32), 16000, None, seed=0, guidance=None, progress=False)
        with pytest.raises(RuntimeError, match="exit code 3"):
            w.result()
    finally:
        w.close()


def test_close_without_a_request_ends_the_worker():
    w = _fork_worker(FakePipe())
    proc = w._proc
    w.close()
    w.close()  # idempotent
    assert not proc.is_alive()


def test_fork_only_before_torch_alone_and_not_switched_off(monkeypatch):
    import multiprocessing
    import threading

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork start method on this platform")
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # restored after the test
    monkeypatch.delenv(W.ENV_SWITCH, raising=False)
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert W.can_fork()
    monkeypatch.setenv(W.ENV_SWITCH, "0")
    assert not W.can_fork()
    monkeypatch.delenv(W.ENV_SWITCH)
    with W.in_process():
        assert not W.can_fork()
    assert W.can_fork()
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert not W.can_fork()
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setitem(sys.modules, "torch", object())
    assert not W.can_fork()
    assert isinstance(W.start_stage1(FakePipe()), W.InProcessStage1)


class ListWriter:
    def __init__(self, fail_at: int | None = None):
        self.frames: list[np.ndarray] = []
        self.fail_at = fail_at

    def write(self, frame):
        if self.fail_at is not None and len(self.frames) == self.fail_at:
            raise OSError(28, "No space left on device")
        time.sleep(0.001)
        self.frames.append(frame.copy())


def _chunks_reusing_one_buffer(n_chunks: int, size: int = 4):
    buf = np.zeros((size, 3, 5, 3), np.uint8)
    for i in range(n_chunks):
        for j in range(size):
            buf[j] = i * size + j  # a renderer may overwrite its buffer for the next chunk
        yield buf


def test_write_chunks_keeps_order_and_copies_reused_buffers():
    w = ListWriter()
    n = write_chunks(w, _chunks_reusing_one_buffer(10))
    assert n == 40 and len(w.frames) == 40
    assert [int(f[0, 0, 0]) for f in w.frames] == list(range(40))


def test_write_chunks_raises_the_writers_error_and_stops():
    w = ListWriter(fail_at=6)
    with pytest.raises(OSError, match="No space"):
        write_chunks(w, _chunks_reusing_one_buffer(50))
    assert len(w.frames) == 6


def test_write_chunks_stops_its_thread_when_the_renderer_fails():
    import threading

    def broken():
        yield np.zeros((2, 3, 5, 3), np.uint8)
        raise ValueError("renderer bug")

    before = threading.active_count()
    with pytest.raises(ValueError, match="renderer bug"):
        write_chunks(ListWriter(), broken())
    assert threading.active_count() == before


def test_process_age_counts_from_the_process_start():
    age = process_age()
    if age is None:
        pytest.skip("no /proc")
    assert 0.0 < age < 24 * 3600


def test_warp_draws_no_random_numbers_so_no_generator_is_built():
    from pipeline.pipeline import uses_generator
    from pose2video.base import get_renderer

    class M:  # a renderer that does not say: assumed to draw noise
        name = "vdm"

    class Says:
        name = "warp"
        uses_generator = True

    assert not uses_generator(get_renderer("warp"))
    assert uses_generator(M()) and uses_generator(Says())


@pytest.mark.slow
def test_csg_run_with_the_worker_writes_the_same_bytes_as_in_one_process(tmp_path):
    """A fresh `python -m csg run` (torch not imported: stage 1 forks) and the same run with
    CSG_STAGE1_PROCESS=0 write byte-identical skeletons and videos; the record says which ran."""
    import soundfile as sf

    from tests.helpers import save_tiny_stage1, speech_like

    ckpt = save_tiny_stage1(tmp_path / "stage1")
    sf.write(tmp_path / "speech.wav", speech_like(1.2), 16000)
    photo = ROOT / "examples" / "images" / "moore_anyone-3.png"
    outs = {}
    for mode in ("1", "0"):
        out = tmp_path / mode / "talk.mp4"
        out.parent.mkdir()
        env = dict(os.environ, CSG_STAGE1_PROCESS=mode)
        subprocess.run([sys.executable, "-m", "csg", "run", "--ref", str(photo), "--audio",
                        str(tmp_path / "speech.wav"), "-o", str(out), "--checkpoint", str(ckpt),
                        "--set", "render.max_side=96", "--seed", "3", "--quiet"],
                       check=True, env=env, cwd=ROOT, timeout=300)
        record = json.loads(out.with_name("talk.run.json").read_text())
        assert record["timings"]["stage1_in_process"] == float(mode == "0")
        assert record["render_processes"] == (2 if mode == "1" else 1)  # warp frames drawn in both
        assert record["timeline"]["total"][1] > record["timeline"]["first_frame"][1] > 0
        outs[mode] = (out.read_bytes(), out.with_name("talk.pose.json").read_bytes())
    assert outs["1"] == outs["0"]
    # re-rendering the written skeleton: the helper loads no model and only draws
    for mode in ("1", "0"):
        out = tmp_path / mode / "again.mp4"
        env = dict(os.environ, CSG_STAGE1_PROCESS=mode)
        subprocess.run([sys.executable, "-m", "csg", "run", "--ref", str(photo), "--audio",
                        str(tmp_path / "speech.wav"), "-o", str(out), "--pose",
                        str(tmp_path / "1" / "talk.pose.json"), "--set", "render.max_side=96",
                        "--quiet"], check=True, env=env, cwd=ROOT, timeout=300)
        record = json.loads(out.with_name("again.run.json").read_text())
        assert record["render_processes"] == (2 if mode == "1" else 1)
        assert "stage1_load" not in record["timings"]
        assert out.read_bytes() == outs["1"][0]


def test_batch_runs_reuse_the_loaded_stage1_model_until_its_files_change(tmp_path):
    from types import SimpleNamespace

    folder = tmp_path / "stage1"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"1")
    loads = []

    class Pipe(FakePipe):
        config = SimpleNamespace(device="cpu")

        def __init__(self):
            super().__init__()
            self._audio2pose = None

        def _stage1_folder(self):
            return folder

        @property
        def audio2pose(self):
            if self._audio2pose is None:
                loads.append(1)
                self._audio2pose = object()
            return self._audio2pose

    def run():
        p = Pipe()
        s = W.InProcessStage1(p)
        s.submit(np.zeros(4, np.float32), 16000, None, seed=0, guidance=None, progress=False)
        return p._audio2pose

    with W.in_process():
        a, b = run(), run()
        assert a is b and len(loads) == 1
        (folder / "w.bin").write_bytes(b"22")  # retrained between rows
        assert run() is not a and len(loads) == 2
    run()  # outside a batch: every run loads its own
    assert len(loads) == 3
