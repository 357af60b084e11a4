"""``csg batch``: rows run through ``csg run`` (same outputs), bad rows fail alone with one line,
finished rows are skipped on a rerun, local workers and Ray give the same files."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import soundfile as sf

from csg.cli import main
from tests.helpers import save_tiny_stage1, speech_like

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PHOTO = EXAMPLES / "images" / "moore_anyone-3.png"


@pytest.fixture(scope="module")
def tiny_stage1(tmp_path_factory):
    return save_tiny_stage1(tmp_path_factory.mktemp("tiny") / "stage1")


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_stage1):
    """A manifest folder: the photo, one speech file, and the batch-wide options."""
    d = tmp_path_factory.mktemp("job")
    sf.write(d / "speech.wav", speech_like(1.0), 16000)
    (d / "photo.png").write_bytes(PHOTO.read_bytes())
    common = ["--checkpoint", str(tiny_stage1), "--set", "render.max_side=96"]
    return d, common


def write_manifest(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def batch(capsys, *args):
    rc = main(["batch", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_rows_fail_alone_and_finished_rows_are_skipped(job, tmp_path, capsys):
    d, common = job
    m = write_manifest(d / "m1.jsonl", [
        {"ref": "photo.png", "audio": "speech.wav", "out": "a.mp4", "seed": 7},
        {"ref": "photo.png", "audio": "missing.wav", "out": "b.mp4"},          # bad input file
        "{not json",
        {"ref": "photo.png", "audio": "speech.wav", "out": "../escape.mp4"},
        {"ref": "photo.png", "out": "c.mp4"},                                  # no audio
        {"ref": "photo.png", "audio": "speech.wav", "out": "a.mp4"},          # same out again
        {"ref": "photo.png", "audio": "speech.wav", "out": "x.mp4", "seed": "3"},
    ])
    out = tmp_path / "out"
    rc, stdout, err = batch(capsys, m, "--out", out, "--quiet", *common)
    assert rc == 1
    assert "7 rows: 1 written, 0 already done (skipped), 6 failed" in stdout
    lines = err.strip().splitlines()
    assert [x.split(":")[1].strip() for x in lines] == [f"line {n}" + s for n, s in (
        (2, " (b.mp4)"), (3, ""), (4, " (../escape.mp4)"), (5, " (c.mp4)"), (6, " (a.mp4)"),
        (7, " (x.mp4)"))]
    assert "missing.wav" in lines[0] and "not a JSON object" in lines[1]
    assert "inside --out" in lines[2] and "missing audio" in lines[3]
    assert "line 1 writes" in lines[4] and "seed must be an integer" in lines[5]
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "a.pose.json", "a.run.json"]
    # the row is `csg run` itself: same skeleton and video bytes as running it by hand
    solo = tmp_path / "solo.mp4"
    assert main(["run", "--ref", str(d / "photo.png"), "--audio", str(d / "speech.wav"), "-o",
                 str(solo), "--seed", "7", "--quiet", *common]) == 0
    assert (out / "a.mp4").read_bytes() == solo.read_bytes()
    assert (out / "a.pose.json").read_bytes() == solo.with_name("solo.pose.json").read_bytes()
    # rerun: the finished row is not run again
    before = (out / "a.mp4").stat().st_mtime_ns
    m2 = write_manifest(d / "m2.jsonl", [
        {"ref": "photo.png", "audio": "speech.wav", "out": "a.mp4", "seed": 7}])
    rc, stdout, err = batch(capsys, m2, "--out", out, "--quiet", *common)
    assert rc == 0 and "1 rows: 0 written, 1 already done (skipped), 0 failed" in stdout
    assert (out / "a.mp4").stat().st_mtime_ns == before and err == ""


def test_batch_errors_are_one_line(job, tmp_path, capsys, monkeypatch):
    d, _ = job
    rc, _, err = batch(capsys, d / "nope.jsonl", "--out", tmp_path / "o")
    assert rc != 0 and len(err.strip().splitlines()) == 1 and "nope.jsonl" in err
    empty = write_manifest(tmp_path / "empty.jsonl", [""])
    rc, _, err = batch(capsys, empty, "--out", tmp_path / "o")
    assert rc != 0 and "no rows" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setitem(sys.modules, "ray", None)
    rc, _, err = batch(capsys, empty, "--out", tmp_path / "o", "--engine", "ray")
    assert rc != 0 and "pip install 'csg[ray]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def rows3():
    return [{"ref": "photo.png", "audio": "speech.wav", "out": f"r{i}/talk.mp4", "seed": i}
            for i in range(3)] + [{"ref": "photo.png", "audio": "gone.wav", "out": "bad.mp4"}]


def outputs(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".run.json")}  # run records hold timings


@pytest.mark.slow
def test_local_workers_match_in_process(job, tmp_path, capsys):
    d, common = job
    m = write_manifest(d / "m3.jsonl", rows3())
    rc1, out1, _ = batch(capsys, m, "--out", tmp_path / "one", "--quiet", *common)
    rc2, out2, err2 = batch(capsys, m, "--out", tmp_path / "two", "--workers", "2", "--quiet",
                            *common)
    assert rc1 == rc2 == 1 and "3 written" in out1 and "3 written" in out2
    assert "line 4 (bad.mp4)" in err2 and "gone.wav" in err2
    a, b = outputs(tmp_path / "one"), outputs(tmp_path / "two")
    assert len(a) == 6 and a == b


@pytest.mark.slow
def test_ray_matches_local(job, tmp_path, capsys, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'csg[ray]')")
    import socket

    from tests import conftest

    def loopback_only(self, address):  # Ray's driver talks to its local processes over TCP
        if self.family == socket.AF_UNIX or address[0] in ("127.0.0.1", "::1", "localhost"):
            return conftest._real_connect(self, address)
        return conftest._guarded_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    d, common = job
    m = write_manifest(d / "m4.jsonl", rows3())
    rc1, _, _ = batch(capsys, m, "--out", tmp_path / "one", "--quiet", *common)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rc2, out2, err2 = batch(capsys, m, "--out", tmp_path / "ray", "--engine", "ray",
                                "--quiet", *common)
    finally:
        ray.shutdown()
    assert rc1 == rc2 == 1 and "3 written" in out2 and "line 4 (bad.mp4)" in err2
    assert outputs(tmp_path / "one") == outputs(tmp_path / "ray")
