"""Known-answer tests for the stage-2 metrics (tiny non-square frames, no MediaPipe)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from csg import keypoints as K
from eval import video_metrics as VM
from eval.video_eval import evaluate_video, fit_driving
from tests.helpers import make_moving_pose

H, W = 48, 64


def _frames(rng, T=6):
    base = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    return np.stack([base] * T)


def test_psnr_ssim_identical_and_different(rng):
    a = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    assert VM.psnr(a, a) == math.inf
    assert VM.ssim(a, a) == 1.0
    b = a.copy()
    b[..., 0] = np.clip(b[..., 0].astype(int) + 10, 0, 255)
    assert 20 < VM.psnr(a, b) < math.inf
    assert VM.ssim(a, b) < 1.0
    # PSNR known answer: a constant error of 5 gives 10 log10(255² / 25)
    c = np.full((H, W, 3), 100, np.uint8)
    assert VM.psnr(c, c + 5) == pytest.approx(10 * math.log10(255 ** 2 / 25))
    mask = np.zeros((H, W), bool)
    mask[:, :10] = True
    d = c.copy()
    d[:, 10:] = 0  # differs only outside the mask
    assert VM.psnr(c, d, mask) == math.inf
    assert VM.ssim_map(c, d)[:, :2].min() == pytest.approx(1.0)


def test_ssim_map_matches_structure_change(rng):
    a = rng.integers(0, 256, size=(H, W), dtype=np.uint8)
    assert VM.ssim(a, 255 - a) < 0.0  # anti-correlated structure


def test_boxes_masks_flicker_hist():
    kp = make_moving_pose(4, H * 10, W * 10).keypoints / 10.0
    kp[..., 2] = 0.95
    box = VM.keypoint_bbox(kp, (H, W), margin=0.0)
    y0, x0, y1, x1 = box
    assert 0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W
    assert x1 - x0 < W  # the person does not fill the width: (H, W) not swapped
    m = VM.box_mask(box, (H, W))
    assert m.shape == (H, W) and m.sum() == (y1 - y0) * (x1 - x0)
    still = np.zeros((5, H, W, 3), np.uint8)
    assert VM.flicker(still, ~m) == 0.0
    flick = still.copy()
    flick[1::2] = 10
    assert VM.flicker(flick, ~m) == pytest.approx(10.0)
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    assert VM.histogram_similarity(red, red) == 1.0
    assert VM.histogram_similarity(red, np.zeros_like(red)) == 0.0


def test_rerendered_skeleton_scores_pck_one_and_shift_lowers_it(rng):
    T = 6
    frames = _frames(rng, T)
    drive = make_moving_pose(T, H * 10, W * 10).keypoints
    driving = fit_driving(drive, (H * 10, W * 10), (H, W), T)
    rep = evaluate_video(frames, driving, driving.copy(), gt_frames=frames.copy())
    s = rep["summary"]
    for key in ("pck@0.05", "pck@0.1", "pck@0.05/body", "pck@0.05/face", "pck@0.05/hands"):
        assert s[key] == 1.0, key
    assert s["psnr_gt"] == math.inf and s["ssim_gt"] == 1.0
    assert s["flicker_bg"] == 0.0
    assert s["detection_rate"] == 1.0
    assert s["hkc_detected"] == pytest.approx(0.95)
    moved = driving.copy()
    moved[:, K.HANDS, 0] += 0.2 * K.torso_size(driving[..., :2])[:, None]
    s2 = evaluate_video(frames, driving, moved)["summary"]
    assert s2["pck@0.1/hands"] == 0.0 and s2["pck@0.1/body"] == 1.0
    missed = driving.copy()
    missed[2:] = 0.0  # detector found nobody on frames 2..5
    s3 = evaluate_video(frames, driving, missed)["summary"]
    assert s3["detection_rate"] == pytest.approx(2 / 6)
    assert s3["pck@0.1"] == pytest.approx(2 / 6)


def test_fit_driving_scales_width_and_height_separately():
    kp = np.zeros((2, K.NUM_KEYPOINTS, 3))
    kp[..., 0], kp[..., 1] = 640.0, 480.0
    out = fit_driving(kp, (480, 640), (48, 128), 3)
    assert out.shape == (3, K.NUM_KEYPOINTS, 3)
    assert out[0, 0, 0] == pytest.approx(128.0) and out[0, 0, 1] == pytest.approx(48.0)


def test_reference_preservation_identical_background(rng):
    T = 4
    frames = _frames(rng, T)
    drive = fit_driving(make_moving_pose(T, H * 10, W * 10).keypoints, (H * 10, W * 10), (H, W), T)
    s = evaluate_video(frames, drive, drive, ref_image=frames[0].copy())["summary"]
    assert s["bg_psnr_ref"] == math.inf and s["bg_ssim_ref"] == 1.0
    assert 0 < s["bg_fraction"] < 1
    assert s["face_hist_ref"] > 0.0


def test_feature_extractors_fid_fvd_tiny_torchscript(tmp_path, rng):
    import torch

    from csg.errors import InputError, WeightsNotFoundError
    from eval.deep_features import (ClipFeatures, fid_extractor, frechet_between, fvd_extractor,
                                    load_torchscript)

    class TinyFrameNet(torch.nn.Module):  # a stand-in for Inception: (B,3,H,W) -> (B,4)
        def forward(self, x):
            return torch.stack([x.mean((1, 2, 3)), x[:, 0].mean((1, 2)), x[:, 1].std((1, 2)),
                                x[:, 2].amax((1, 2))], 1)

    class TinyClipNet(torch.nn.Module):  # a stand-in for I3D: (B,3,T,H,W) -> (B,2)
        def forward(self, x):
            return torch.stack([x.mean((1, 2, 3, 4)), x.std((1, 2, 3, 4))], 1)

    torch.jit.script(TinyFrameNet()).save(str(tmp_path / "inc.pt"))
    torch.jit.script(TinyClipNet()).save(str(tmp_path / "i3d.pt"))
    vid = rng.integers(0, 256, size=(8, H, W, 3), dtype=np.uint8)
    fid = fid_extractor(tmp_path / "inc.pt", size_hw=(24, 32))
    assert fid(vid).shape == (8, 4)
    assert frechet_between(fid, vid, vid) == pytest.approx(0.0, abs=1e-9)
    assert frechet_between(fid, vid, np.clip(vid.astype(int) + 40, 0, 255).astype(np.uint8)) > 0
    fvd = fvd_extractor(tmp_path / "i3d.pt", clip_len=2, size_hw=(16, 16))
    assert isinstance(fvd, ClipFeatures) and fvd(vid).shape == (4, 2)
    assert frechet_between(fvd, vid, vid) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(WeightsNotFoundError, match="never downloads"):
        fid_extractor(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(InputError, match="TorchScript"):
        load_torchscript(tmp_path / "junk.pt", "Inception (FID)")


# --- Sync-C -------------------------------------------------------------------------------------
def test_sync_confidence_finds_the_shift(rng):
    from eval.syncnet import sync_confidence

    lip = rng.normal(size=(60, 8))
    for d in (-3, 0, 4):
        aud = np.roll(lip, d, axis=0)  # aud[t] = lip[t - d]: audio lags video by d
        res = sync_confidence(lip, aud, vshift=6)
        assert res["offset"] == -d  # SyncNet convention: positive = audio leads
        assert res["sync_c"] > 1.0 and res["sync_d"] < 0.5
    noise = sync_confidence(lip, rng.normal(size=(60, 8)), vshift=6)
    assert noise["sync_c"] < 0.5


def test_mfcc_shape_and_syncnet_scorer_with_tiny_torchscript(tmp_path, rng):
    import torch

    from csg.errors import InputError
    from eval.syncnet import SyncNetScorer, face_crops, mfcc

    wav = (0.1 * rng.normal(size=16000)).astype(np.float32)
    # 25 ms frames every 10 ms: 1 + ceil((16000 - 400) / 160) = 99 (python_speech_features counts)
    assert mfcc(wav).shape == (99, 13)

    class TinySync(torch.nn.Module):  # stand-in with SyncNet's two entry points
        def forward(self, x):
            return x

        @torch.jit.export
        def forward_lip(self, x):
            return x.mean(dim=(1, 3, 4))  # (B, 5)

        @torch.jit.export
        def forward_aud(self, x):
            return x.mean(dim=(1, 2))[:, ::4]  # (B, 5)

    torch.jit.script(TinySync()).save(str(tmp_path / "sync.pt"))
    T = 12
    frames = rng.integers(0, 256, size=(T, H, W, 3), dtype=np.uint8)
    drive = fit_driving(make_moving_pose(T, H * 10, W * 10).keypoints, (H * 10, W * 10), (H, W), T)
    crops = face_crops(frames, drive, size=32)
    assert crops.shape == (T, 32, 32, 3)
    res = SyncNetScorer(tmp_path / "sync.pt", vshift=2)(crops, np.zeros(int(T / 25 * 16000)))
    assert set(res) == {"offset", "sync_c", "sync_d"} and abs(res["offset"]) <= 2

    class NoAud(torch.nn.Module):
        def forward(self, x):
            return x

    torch.jit.script(NoAud()).save(str(tmp_path / "bad.pt"))
    with pytest.raises(InputError, match="forward_lip"):
        SyncNetScorer(tmp_path / "bad.pt")
