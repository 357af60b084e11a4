"""``csg data prepare`` on several engines: in-process, local worker processes and Ray give the
same files; a killed run resumes from its done-markers; ``--engine ray`` without Ray is one line.

The videos are made here (avatar frames + procedural speech, three speakers, 20-28 frames); the
skeletons come from a picklable replaying extractor (it must travel to worker processes), so the
test checks the distribution and bookkeeping, not MediaPipe."""
from __future__ import annotations

import filecmp
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from csg.data.prepare import PrepareConfig, done_markers, prepare_videos

H, W, FPS = 64, 80, 25.0
LENGTHS = {"alice": 20, "bob": 24, "carol": 28}
CFG = PrepareConfig(size_hw=(32, 40), min_seconds=0.6, min_face=0.0, min_body=0.0)
REPO = Path(__file__).resolve().parents[1]


class _Run:
    def __init__(self, replay):
        self.replay, self.i = replay, 0

    def __enter__(self):
        if self.replay.calls is not None:  # one file per video processed, from any process
            Path(self.replay.calls).mkdir(parents=True, exist_ok=True)
            (Path(self.replay.calls) / uuid.uuid4().hex).touch()
        return self

    def __exit__(self, *exc):
        return None

    def __call__(self, frame):
        assert frame.shape == (H, W, 3)
        if self.replay.delay:
            time.sleep(self.replay.delay)
        i, self.i = self.i, self.i + 1
        return self.replay.poses[i].copy()


class Replay:
    """Picklable extractor factory: replays known poses frame by frame (every video shares the
    motion, each has its own look and audio). ``calls``: folder counting videos processed;
    ``delay``: seconds per frame (to kill a run half-way)."""

    def __init__(self, poses, calls=None, delay=0.0):
        self.poses, self.calls, self.delay = poses, calls, delay

    def __call__(self):
        return _Run(self)


def make_videos(d: Path) -> np.ndarray:
    """Three speakers' videos under ``d``; returns the shared poses."""
    from csg.data.synth import SynthConfig, speaker
    from csg.data.synth_audio import procedural_speech
    from csg.data.synth_frames import draw_avatar
    from csg.video import VideoWriter

    cfg = SynthConfig(size_hw=(H, W), seed=3)
    poses = make_videos_poses()
    for k, (name, length) in enumerate(LENGTHS.items()):
        sp = speaker(cfg, k, False)
        wav, _ = procedural_speech(length / FPS, sp["voice"], np.random.default_rng(k))
        (d / name).mkdir(parents=True)
        with VideoWriter(d / name / "talk.mp4", FPS, (H, W), audio=wav) as vw:
            for p in poses[:length]:
                vw.write(draw_avatar(p, sp["look"]))
    return poses


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    return d, make_videos(d)


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory):
    """The in-process (workers=1) result everything else must equal."""
    d, poses = videos
    out = tmp_path_factory.mktemp("ref")
    recs = prepare_videos(d, out, CFG, extractor=Replay(poses), progress=False)
    assert sorted(r.speaker for r in recs) == sorted(LENGTHS)  # one clip per video
    return out


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def assert_same_dataset(a: Path, b: Path) -> None:
    """Same file names, every file byte-identical: manifest, stats, done-markers, npz, mp4."""
    names = files(a)
    assert names == files(b)
    assert {"manifest.jsonl", "stats.json"} <= set(names)
    assert sum(n.endswith(".npz") for n in names) == len(LENGTHS)
    assert sum(n.endswith(".mp4") for n in names) == len(LENGTHS)
    for n in names:
        assert filecmp.cmp(a / n, b / n, shallow=False), f"{n} differs"


def test_run_jobs_local_pool():
    """Two spawned workers: every job once, right index, results back; a failing job raises."""
    from csg.data.engines import run_jobs

    out = dict(run_jobs(pow, [(i, 2) for i in range(6)], workers=2, progress=False))
    assert out == {i: i * i for i in range(6)}
    assert dict(run_jobs(pow, [(3, 3)], workers=1, progress=False)) == {0: 27}
    with pytest.raises(ValueError):
        list(run_jobs(int, [("1",), ("x",)], workers=2, progress=False))


@pytest.mark.slow
def test_local_workers_match_in_process(videos, reference, tmp_path):
    d, poses = videos
    calls = tmp_path / "calls"
    prepare_videos(d, tmp_path / "out", CFG, extractor=Replay(poses, calls), progress=False,
                   engine="local", workers=2)
    assert len(list(calls.iterdir())) == len(LENGTHS)
    assert_same_dataset(reference, tmp_path / "out")


def test_engine_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from csg.cli import main

    d = tmp_path / "videos"
    d.mkdir()
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    base = ["data", "prepare", "--videos", str(d), "--out", str(tmp_path / "o")]
    assert main(base + ["--engine", "ray"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'csg[ray]'" in err
    assert main(base + ["--address", "auto"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--engine ray" in err
    assert not (tmp_path / "o").exists()


def test_unreachable_ray_cluster_is_one_line(tmp_path, monkeypatch):
    """ray.init's ConnectionError (no cluster at --address) becomes one CsgError line."""
    import types

    from csg.data.engines import run_jobs
    from csg.errors import CsgError

    def init(address=None, **kw):
        raise ConnectionError(f"Failed to connect to Ray cluster at {address}.\nmore detail")

    fake = types.SimpleNamespace(is_initialized=lambda: False, init=init)
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(CsgError) as e:
        list(run_jobs(pow, [(2, 2)], engine="ray", address="10.0.0.9:6379", progress=False))
    msg = str(e.value)
    assert "\n" not in msg and "10.0.0.9:6379" in msg and "ray start --head" in msg


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from tests.test_scale_prepare import CFG, Replay, make_videos_poses
    from csg.data.prepare import prepare_videos

    if __name__ == "__main__":  # spawned workers import this file again
        engine, workers = sys.argv[1], int(sys.argv[2])
        prepare_videos({videos!r}, {out!r}, CFG, progress=False, engine=engine, workers=workers,
                       extractor=Replay(make_videos_poses(), {calls!r}, delay=float(sys.argv[3])))
""")


def make_videos_poses() -> np.ndarray:
    """The motion every test video shares (also rebuilt by the killed subprocess)."""
    from csg.data.synth import SynthConfig, speaker
    from csg.data.synth_audio import procedural_speech
    from csg.data.synth_motion import perform

    cfg = SynthConfig(size_hw=(H, W), seed=3)
    n = max(LENGTHS.values())
    sp0 = speaker(cfg, 0, False)
    g = np.random.default_rng(0)
    _, ev = procedural_speech(n / FPS, sp0["voice"], g)
    return perform(ev, sp0["shape"], sp0["style"], n, FPS, g, noisy=False)[0]


def kill_after_first_marker(script: Path, args: list[str], out: Path, timeout: float) -> None:
    """Start the run in its own process group, SIGKILL the whole group once one video is done."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), *args], cwd=REPO, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    t0 = time.time()
    try:
        while not done_markers(out):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() - t0 < timeout, "no video finished in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_killed_local_run_resumes(videos, reference, tmp_path):
    d, poses = videos
    out, calls = tmp_path / "out", tmp_path / "calls"
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(repo=str(REPO), videos=str(d), out=str(out),
                                         calls=str(calls)))
    kill_after_first_marker(script, ["local", "2", "0.05"], out, timeout=240)
    done = len(done_markers(out))
    assert 1 <= done < len(LENGTHS) and not (out / "manifest.jsonl").exists()
    calls2 = tmp_path / "calls2"
    prepare_videos(d, out, CFG, extractor=Replay(poses, calls2), progress=False, engine="local",
                   workers=2)
    assert len(list(calls2.iterdir())) == len(LENGTHS) - done  # finished videos not redone
    assert_same_dataset(reference, out)


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'csg[ray]')")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_matches_local_and_resumes(videos, reference, tmp_path, local_ray, monkeypatch):
    import socket

    from tests import conftest

    # Ray's driver talks to its own local processes over loopback TCP; allow only that
    def loopback_only(self, address):
        if self.family == socket.AF_UNIX or address[0] in ("127.0.0.1", "::1", "localhost"):
            return conftest._real_connect(self, address)
        return conftest._guarded_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    d, poses = videos
    out, calls = tmp_path / "out", tmp_path / "calls"
    prepare_videos(d, out, CFG, extractor=Replay(poses, calls), progress=False, engine="ray")
    assert len(list(calls.iterdir())) == len(LENGTHS)
    assert_same_dataset(reference, out)
    # resume on Ray: drop one video's marker (as if killed before it finished); only it is redone
    marker = done_markers(out)[0]
    marker.unlink()
    (out / "manifest.jsonl").unlink()
    calls2 = tmp_path / "calls2"
    prepare_videos(d, out, CFG, extractor=Replay(poses, calls2), progress=False, engine="ray")
    assert len(list(calls2.iterdir())) == 1
    assert_same_dataset(reference, out)
