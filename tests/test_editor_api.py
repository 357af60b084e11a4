"""`csg edit`: the document model and the HTTP API, over a real server on 127.0.0.1.

A tiny stage-1 model built in code (random weights, 2 steps), a synthetic non-square photo and a
moving skeleton; the API is driven with urllib like any script would.
"""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("starlette", reason="the editor extra (starlette, uvicorn) is not installed")
pytest.importorskip("uvicorn", reason="the editor extra (starlette, uvicorn) is not installed")

from csg import keypoints as K  # noqa: E402
from csg.pose import PoseSequence  # noqa: E402
from pipeline.editor.state import EditError, EditorState, ease_weights  # noqa: E402
from tests.helpers import make_moving_pose, make_reference_pose  # noqa: E402

H, W, T = 96, 128, 60
_real_connect = socket.socket.connect


@pytest.fixture(autouse=True)
def _loopback_only(_no_network, monkeypatch):
    """The suite forbids sockets; these tests talk to their own server on 127.0.0.1 only."""
    def connect(self, address):
        if self.family == socket.AF_UNIX or (self.family == socket.AF_INET
                                             and address[0] == "127.0.0.1"):
            return _real_connect(self, address)
        raise RuntimeError(f"test tried to open a network connection to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture(scope="module")
def tiny_stage1():
    import torch

    from audio2pose.config import SamplingConfig
    from audio2pose.model import PoseDenoiser
    from audio2pose.pipeline import Audio2PosePipeline
    from csg.features import AudioFeatureConfig, feature_dim

    torch.manual_seed(0)  # test-only: fixes the random init of the tiny model
    feats = AudioFeatureConfig(n_mels=8, context=1)
    model = PoseDenoiser(audio_dim=feature_dim(feats), dim=32, depth=1, heads=2, ff_mult=2)
    return Audio2PosePipeline(model, feats, 25.0, SamplingConfig(window=16, overlap=4, steps=2))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from csg.image import save_image

    d = tmp_path_factory.mktemp("editor")
    make_moving_pose(T, H, W).save(d / "talk.pose.json")
    make_reference_pose(H, W).save(d / "ref.json")
    yy, xx = np.mgrid[0:H, 0:W]
    save_image(d / "photo.png", np.stack([xx * 2 % 256, yy * 2 % 256, (xx + yy) % 256], -1)
               .astype(np.uint8))
    t = np.arange(int(T / 25 * 16000)) / 16000
    wav = 0.3 * np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) * np.sin(2 * np.pi * 160 * t)
    sf.write(d / "speech.wav", wav.astype(np.float32), 16000)
    return d


class Client:
    def __init__(self, url: str, token: str):
        self.base, self.token = url.split("/?")[0], token

    def call(self, path, body=None, *, token=True, raw: bytes | None = None, headers=None):
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        h = {"X-CSG-Token": self.token} if token is True else ({"X-CSG-Token": token} if token
                                                                else {})
        h.update(headers or {})
        req = urllib.request.Request(self.base + path, data=data, headers=h,
                                     method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, path, body=None, expect=200):
        status, data = self.call(path, body)
        assert status == expect, data
        return json.loads(data)

    def keypoints(self) -> np.ndarray:
        status, data = self.call("/api/poses")
        assert status == 200
        return np.frombuffer(data, "<f4").reshape(-1, K.NUM_KEYPOINTS, 3).copy()

    def wait(self, job: dict, timeout: float = 120.0) -> dict:
        t0 = time.time()
        while time.time() - t0 < timeout:
            j = self.json(f"/api/jobs/{job['id']}")
            if j["state"] != "running":
                return j
            time.sleep(0.05)
        raise AssertionError(f"job {job} did not finish")


@pytest.fixture
def editor(files, tiny_stage1, tmp_path):
    """A fresh session over a copy of the files (each test may save), served on a free port."""
    from pipeline.editor.server import EditorServer
    from pipeline.editor.session import EditorSession

    pose = tmp_path / "talk.pose.json"
    pose.write_bytes((files / "talk.pose.json").read_bytes())
    session = EditorSession(pose, files / "photo.png", files / "speech.wav",
                            ref_pose_path=files / "ref.json", stage1=tiny_stage1, max_side=64,
                            renderer_options={"warp": {"segment": False}})
    server = EditorServer(session)
    url = server.start()
    yield session, Client(url, server.token), pose
    server.stop()


# --- the document model, no server -------------------------------------------------------------
def test_ease_weights_are_one_on_the_key_and_fade_to_zero_outside():
    w = ease_weights(5, 16, 10)
    assert w.shape == (11,) and w[5] == 1.0
    assert np.all(np.diff(w[:6]) > 0) and np.all(np.diff(w[5:]) < 0)
    assert 0 < w[0] < 0.2 and 0 < w[-1] < 0.2  # frames 4 and 16 (outside) would get 0
    with pytest.raises(EditError):
        ease_weights(5, 10, 12)


def test_part_rotation_is_rigid_and_keeps_the_pivot():
    st = EditorState(make_moving_pose(8, H, W))
    before = st.keypoints[3].copy()
    st.move_part(3, "right_hand", angle=90.0)
    after = st.keypoints[3]
    hand = list(range(K.RIGHT_HAND.start, K.RIGHT_HAND.stop))
    np.testing.assert_allclose(after[K.RIGHT_WRIST], before[K.RIGHT_WRIST], atol=1e-4)
    d0 = np.linalg.norm(before[hand, :2] - before[K.RIGHT_WRIST, :2], axis=1)
    d1 = np.linalg.norm(after[hand, :2] - after[K.RIGHT_WRIST, :2], axis=1)
    np.testing.assert_allclose(d1, d0, atol=1e-3)
    assert np.abs(after[hand, :2] - before[hand, :2]).max() > 1.0
    others = np.setdiff1d(np.arange(K.NUM_KEYPOINTS), hand)
    assert np.array_equal(after[others], before[others])
    assert np.array_equal(st.keypoints[2], make_moving_pose(8, H, W).keypoints[2])


def test_warp_to_known_eases_runs_into_known_frames_and_leaves_them_alone():
    from pipeline.editor.regen import warp_to_known

    xy = np.zeros((40, 2, 2))
    xy[..., 0] = np.arange(40.0)[:, None]  # generated motion: 1 px per frame
    known = np.zeros(40, bool)
    known[:5], known[25], known[35:] = True, True, True
    xy[:5] -= 6.0
    xy[25] += 9.0
    xy[35:] += 4.0  # known frames off the generated path: jumps of 7, 10 and 5 px
    out = warp_to_known(xy, known, radius=8)
    assert np.array_equal(out[known], xy[known].astype(np.float32))
    steps = np.abs(np.diff(out[..., 0], axis=0)).max(axis=1)
    assert steps.max() < 3.0  # no jump; the largest raw step was 10 px
    assert np.all(steps[[4, 24, 25, 34]] < 0.5)  # eased into and out of every known frame
    assert np.allclose(out[14], xy[14])  # beyond the radius of every known frame: untouched


# --- the HTTP API ------------------------------------------------------------------------------
def test_every_api_route_needs_the_token_and_a_loopback_host(editor):
    _, c, _ = editor
    for path in ("/", "/api/session", "/api/poses", "/api/photo", "/api/audio", "/api/jobs/1",
                 "/api/files/x.mp4", "/api/nonexistent"):
        assert c.call(path, token=None)[0] == 403, path
        assert c.call(path, token="wrong")[0] == 403, path
    assert c.call("/api/edit", {"op": "move", "frame": 0, "joint": 0, "x": 1, "y": 1},
                  token=None)[0] == 403
    assert c.call("/api/session", headers={"Host": "evil.example:80"})[0] == 400
    status, page = c.call("/?token=" + c.token, token=None)
    assert status == 200 and b"editor.js" in page
    info = c.json("/api/session")
    assert (info["num_frames"], info["width"], info["height"]) == (T, W, H)
    assert "warp" in info["renderers"] and len(info["layout"]["names"]) == K.NUM_KEYPOINTS


def test_drag_a_wrist_carries_the_hand_and_spreads_with_easing(editor):
    session, c, _ = editor
    k0 = c.keypoints()
    res = c.json("/api/edit", {"op": "move", "frame": 10, "joint": K.RIGHT_WRIST,
                               "x": 40.25, "y": 70.5, "span": [5, 16]})
    assert res["changed"] == [5, 16] and res["can_undo"]
    k1 = c.keypoints()
    assert k1[10, K.RIGHT_WRIST, :2].tolist() == [40.25, 70.5]
    delta = k1[10, K.RIGHT_WRIST, :2] - k0[10, K.RIGHT_WRIST, :2]
    hand = slice(K.RIGHT_HAND.start, K.RIGHT_HAND.stop)
    np.testing.assert_allclose(k1[10, hand, :2] - k0[10, hand, :2], np.broadcast_to(delta, (21, 2)),
                               atol=1e-3)
    moved = np.linalg.norm(k1[:, K.RIGHT_WRIST, :2] - k0[:, K.RIGHT_WRIST, :2], axis=1)
    assert np.all(moved[:5] == 0) and np.all(moved[16:] == 0)
    assert np.all(np.diff(moved[5:11]) > 0) and np.all(np.diff(moved[10:16]) < 0)
    others = np.setdiff1d(np.arange(K.NUM_KEYPOINTS),
                          [K.RIGHT_WRIST, *range(hand.start, hand.stop)])
    assert np.array_equal(k1[:, others], k0[:, others])


def test_bad_requests_change_nothing(editor):
    session, c, pose_file = editor
    on_disk = pose_file.read_bytes()
    before, version = c.keypoints(), c.json("/api/session")["version"]
    bad = [
        (b"{not json", "not valid JSON"),
        (b'{"op": "move", "frame": 1, "joint": 9, "x": NaN, "y": 1}', "not a JSON number"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"op": "move", "frame": T, "joint": 9, "x": 1, "y": 1}).encode(), "frame"),
        (json.dumps({"op": "move", "frame": 1, "joint": 133, "x": 1, "y": 1}).encode(), "joint"),
        (json.dumps({"op": "move", "frame": 1, "joint": 9, "x": "1", "y": 1}).encode(), "x must"),
        (json.dumps({"op": "move", "frame": 1, "joint": 9, "x": 1e39, "y": 1}).encode(),
         "out of range"),
        (json.dumps({"op": "part", "frame": 1, "part": "tail"}).encode(), "part must"),
        (json.dumps({"op": "warp", "frame": 1}).encode(), "op must"),
        (json.dumps({"op": "move", "frame": 1, "joint": 9, "x": 1, "y": 1, "z": 2}).encode(),
         "unexpected keyword"),
    ]
    for raw, why in bad:
        status, data = c.call("/api/edit", raw=raw)
        assert status == 400 and why in json.loads(data)["error"], (raw, data)
    for path, body, why in [("/api/lock", {"start": 5, "stop": 2}, "span"),
                            ("/api/lock", {"start": 0, "stop": 2, "locked": "yes"}, "locked"),
                            ("/api/regenerate", {"start": 0, "stop": 10, "seed": 1.5}, "seed"),
                            ("/api/regenerate", {"start": 0, "stop": 10, "path": "/x"}, "unknown"),
                            ("/api/render", {"name": "../../etc/x"}, "plain file name"),
                            ("/api/save", None, None)]:
        status, data = c.call(path, body, raw=b"[]" if body is None else None)
        assert status == 400, (path, body, data)
        if why:
            assert why in json.loads(data)["error"]
    assert c.call("/api/files/..%2Ftalk.pose.json")[0] in (400, 404)
    assert c.call("/api/files/talk.pose.json")[0] == 400  # exists, but not written by the session
    assert c.json("/api/session")["version"] == version
    assert np.array_equal(c.keypoints(), before)
    assert pose_file.read_bytes() == on_disk


def test_lock_regenerate_keeps_locked_frames_byte_exact_and_undo_redo(editor):
    session, c, _ = editor
    k0 = c.keypoints()
    c.json("/api/lock", {"start": 10, "stop": 11})
    c.json("/api/lock", {"start": 20, "stop": 25, "locked": True})
    job = c.json("/api/regenerate", {"start": 0, "stop": 40, "seed": 3}, expect=202)
    busy = c.call("/api/edit", {"op": "move", "frame": 1, "joint": 0, "x": 1, "y": 1})
    done = c.wait(job)
    assert done["state"] == "done", done
    assert busy[0] in (200, 409)  # refused while re-generating (or the job was already over)
    k1 = c.keypoints()
    locked = [10, 20, 21, 22, 23, 24]
    assert k1[locked].tobytes() == k0[locked].tobytes()
    assert k1[40:].tobytes() == k0[40:].tobytes()
    free = [t for t in range(40) if t not in locked]
    assert all(not np.array_equal(k1[t], k0[t]) for t in free)
    assert done["result"]["frames"] == len(free)
    # same seed -> same frames; another seed -> others
    c.json("/api/undo", {})
    assert c.keypoints().tobytes() == k0.tobytes()
    c.json("/api/redo", {})
    assert c.keypoints().tobytes() == k1.tobytes()
    c.json("/api/undo", {})
    assert c.wait(c.json("/api/regenerate", {"start": 0, "stop": 40, "seed": 3},
                         expect=202))["state"] == "done"
    assert c.keypoints().tobytes() == k1.tobytes()
    c.json("/api/undo", {})
    assert c.wait(c.json("/api/regenerate", {"start": 0, "stop": 40, "seed": 4},
                         expect=202))["state"] == "done"
    k2 = c.keypoints()
    assert k2[locked].tobytes() == k0[locked].tobytes() and not np.array_equal(k2[:40], k1[:40])
    # undo twice more: back before the locks
    c.json("/api/undo", {})
    st = c.json("/api/undo", {})
    assert st["locked"] == [[10, 11]]


def test_save_is_valid_keeps_the_schema_and_the_locks(editor, files):
    session, c, pose_file = editor
    original_lines = pose_file.read_text().splitlines()
    c.json("/api/edit", {"op": "part", "frame": 30, "part": "head", "dx": 3.0, "dy": -2.0,
                         "angle": 10.0})
    c.json("/api/lock", {"start": 12, "stop": 14})
    assert c.json("/api/session")["dirty"]
    res = c.json("/api/save", {})
    assert res["saved"] == "talk.pose.json" and not res["dirty"]
    saved = PoseSequence.load(pose_file)
    assert saved.keypoints.tobytes() == c.keypoints().tobytes()
    assert saved.meta["editor"]["locked"] == [[12, 14]]
    jsonschema = pytest.importorskip("jsonschema")
    from pathlib import Path

    schema = json.loads((Path(__file__).resolve().parents[1] / "docs" / "pose.schema.json")
                        .read_text())
    jsonschema.validate(json.loads(pose_file.read_text()), schema)
    lines = pose_file.read_text().splitlines()
    # one frame per line: untouched frames are the same text; frame 30 changed
    assert lines[1 + 12] == original_lines[1 + 12] and lines[1 + 30] != original_lines[1 + 30]
    assert not list(pose_file.parent.glob(".*.tmp*"))
    # a new session reads the locks back
    from pipeline.editor.session import EditorSession

    again = EditorSession(pose_file, files / "photo.png", None)
    assert again.state.locked_ranges() == [[12, 14]]
    # export to OpenPose next to it
    out = c.json("/api/export", {"body_format": "coco18"})
    assert len(list((pose_file.parent / out["exported"]).glob("frame_*_keypoints.json"))) == T


def test_render_a_range_to_mp4_and_one_frame(editor):
    from csg.video import probe_video

    session, c, pose_file = editor
    job = c.json("/api/render", {"start": 5, "stop": 13, "renderer": "warp"}, expect=202)
    assert c.call("/api/render", {"start": 0, "stop": 2})[0] == 409  # one job at a time
    done = c.wait(job)
    assert done["state"] == "done" and done["progress"] == 1.0, done
    name = done["result"]["file"]
    info = probe_video(pose_file.parent / name)
    assert info["num_frames"] == 8 and info["has_audio"]
    status, data = c.call(f"/api/files/{name}")
    assert status == 200 and data == (pose_file.parent / name).read_bytes()
    status, png = c.call("/api/render/frame/7?renderer=warp")
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    bad = c.wait(c.json("/api/render", {"renderer": "nope", "start": 0, "stop": 2}, expect=202))
    assert bad["state"] == "error" and "not registered" in bad["message"]


def test_cli_refuses_bad_inputs_with_one_line(capsys, files, tmp_path):
    from csg.cli import main

    rc = main(["edit", str(tmp_path / "missing.json"), "--ref", str(files / "photo.png"),
               "--no-browser"])
    err = capsys.readouterr().err
    assert rc != 0 and err.startswith("error:") and "missing.json" in err
    assert len(err.splitlines()) == 1
    other = tmp_path / "other.pose.json"
    make_moving_pose(4, 50, 70).save(other)
    rc = main(["edit", str(other), "--ref", str(files / "photo.png"), "--no-browser"])
    err = capsys.readouterr().err
    assert rc != 0 and "canvas" in err


def test_cli_serves_on_loopback_prints_the_address_and_stops_on_sigint(files, tmp_path):
    import re
    import signal
    import subprocess
    import sys

    pose = tmp_path / "talk.pose.json"
    pose.write_bytes((files / "talk.pose.json").read_bytes())
    proc = subprocess.Popen([sys.executable, "-m", "csg", "edit", str(pose), "--ref",
                             str(files / "photo.png"), "--audio", str(files / "speech.wav"),
                             "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"csg edit: (http://127\.0\.0\.1:\d+)/\?token=([\w-]+)\n", line)
        assert m, line + proc.stderr.read() if proc.poll() is not None else line
        c = Client(m.group(1) + "/?", m.group(2))
        info = c.json("/api/session")
        assert info["num_frames"] == T and info["has_audio"]
        assert c.call("/api/session", token=None)[0] == 403
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and pose.read_bytes() == (files / "talk.pose.json").read_bytes()
