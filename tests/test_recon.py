"""bench/recon.py: the reconstruction benchmark on a tiny synthetic clip (no MediaPipe, no
../shared)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import make_moving_pose, make_reference_pose

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import recon  # noqa: E402

H, W = 96, 128


def _clip(tmp_path: Path, frames: int = 6) -> Path:
    """A clip whose frames are the warp of its frame 0, with the keypoints beside it (npz)."""
    import cv2

    from csg.video import write_video

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (H // 6, W // 6, 3)).astype(np.uint8)
    photo = cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)
    poses = make_moving_pose(frames, H, W)
    poses.keypoints[0] = make_reference_pose(H, W).keypoints[0]
    path = tmp_path / "clip.mp4"
    write_video(path, [photo] * frames, 25.0)
    np.savez(tmp_path / "clip_mediapipe_kp.npz", coco_wholebody133_2d=poses.keypoints,
             width=W, height=H, fps=25.0)
    return path


def test_recon_measures_a_clip_and_writes_json(tmp_path, capsys):
    clip = _clip(tmp_path)
    out = tmp_path / "r.json"
    assert recon.main([str(clip), str(tmp_path / "missing"), "--every", "0", "--option",
                       "segment=false", "--json", str(out), "--sheets", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "skip" in text and "missing" in text  # absent data: one line, no failure
    rows = json.loads(out.read_text())["clips"]
    assert len(rows) == 1
    r = rows[0]
    assert r["frames"] == 6 and r["keypoints"] == "clip_mediapipe_kp.npz"
    # frame 0 is the (video-compressed) photo rendered from its own pose: close, finite
    assert r["psnr0"] > 25 and math.isfinite(r["psnr"]) and 0 < r["ssim"] <= 1
    assert r["psnr_face"] > 0 and r["fps"] > 0 and r["prepare_s"] >= 0
    assert Path(r["sheet"]).is_file()
    assert "| clip |" in text and "frame-0 PSNR" in text


def test_pck_groups_known_answer():
    drv = make_reference_pose(H, W).keypoints.astype(np.float64)
    det = drv.copy()
    det[0, 9, 0] += 500.0  # one wrist far off
    out = recon.pck_groups(det, drv)
    assert out["pck_wrists"] == pytest.approx(0.5)
    assert out["pck_elbows"] == 1.0


def test_working_size_and_boxes():
    assert recon.working_size(768, 768, 512) == (512, 512)
    assert recon.working_size(948, 1280, 512) == (380, 512)
    kp = make_reference_pose(H, W).keypoints[0].astype(np.float64)
    b = recon.boxes(kp, (H, W))
    assert b["person"] is not None and b["face"] is not None


def test_markdown_shows_the_real_frames_ceiling_in_brackets():
    row = {"clip": "c.mp4", "frames": 3, "pck_wrists": 0.5, "pck_wrists_real": 0.75,
           "pck_body": 0.9}
    table = recon.markdown([row])
    assert "| 0.50 (0.75) |" in table and "| 0.90 |" in table


def test_iasa_gives_evaluate_clip_every_option_it_reads():
    """bench/iasa.py calls recon.evaluate_clip with its own namespace: every ``args.X`` the
    function reads must be there (a new recon option once broke the IASA table)."""
    import inspect
    import re
    from types import SimpleNamespace

    import iasa

    read = set(re.findall(r"args\.(\w+)", inspect.getsource(recon.evaluate_clip)))
    rec = iasa.recon_args(SimpleNamespace(max_side=256, max_frames=8, every=4))
    assert read and read <= set(vars(rec)), read - set(vars(rec))


def test_ceiling_oracle_is_exact_at_full_size_and_loses_detail_below(tmp_path, capsys):
    """bench/ceiling.py: the real frames at their own size score 'exact'; at a quarter of the
    size they lose detail (finite PSNR below the exact row)."""
    import ceiling

    path = _clip(tmp_path, frames=3)
    out = tmp_path / "c.json"
    assert ceiling.main([str(path), "--sizes", str(W), str(W // 4), "--max-side", str(W),
                         "--codec", "none", "--json", str(out)]) == 0
    rows = {r["oracle"]: r for r in json.loads(out.read_text())}
    assert math.isinf(rows[str(W)]["psnr"]) and rows[str(W)]["ssim"] == pytest.approx(1.0)
    small = rows[str(W // 4)]
    assert math.isfinite(small["psnr"]) and small["psnr"] < 40 and small["ssim"] < 0.99
    assert "exact" in capsys.readouterr().out
