"""csg.regions: one taxonomy, keypoint masks, rasterised masks at any grid, PAR weights."""
from __future__ import annotations

import numpy as np
import pytest

from csg import keypoints as K
from csg import regions as R
from tests.helpers import make_reference_pose


def test_keypoint_masks_partition_and_nest():
    body, face, hands = (R.keypoint_mask(r) for r in R.PARTS)
    assert (body.astype(int) + face + hands == 1).all()  # a partition of the 133 points
    assert R.keypoint_mask(R.MOUTH_JAW).sum() == 20 + 17
    assert not (R.keypoint_mask(R.MOUTH_JAW) & ~face).any()
    assert (R.keypoint_mask(R.NONFACE) == (body | hands)).all()
    assert not R.keypoint_mask(R.BACKGROUND).any()
    assert [R.PARTS[i] for i in R.PART_IDS[[0, 17, 23, 90, 91, 132]]] == \
        ["body", "body", "face", "face", "hands", "hands"]
    assert R.keypoint_indices(R.HANDS).tolist() == list(range(91, 133))
    with pytest.raises(ValueError, match="region 'legs'"):
        R.keypoint_mask("legs")


def test_keypoint_mask_gates_on_confidence():
    scores = np.full((2, 133), 0.9)
    scores[1, K.MOUTH] = 0.1
    m = R.keypoint_mask(R.MOUTH_JAW, scores, threshold=0.5)
    assert m.shape == (2, 133) and m[0].sum() == 37 and m[1].sum() == 17


def test_keypoint_mask_tensor_broadcasts_over_pose_states():
    import torch

    m = R.keypoint_mask_tensor(R.NONFACE)
    assert m.shape == (133, 1) and m.dtype == torch.float32
    assert (torch.ones(2, 5, 133, 2) * m).shape == (2, 5, 133, 2)


@pytest.fixture(scope="module")
def frame():
    return make_reference_pose(480, 640).keypoints[0]


def test_raster_masks_at_canvas_and_latent_grid(frame):
    full = R.raster_masks(frame, (480, 640))
    lat = R.raster_masks(frame, (480, 640), (60, 80))
    for name in R.REGIONS:
        assert full[name].shape == (480, 640) and lat[name].shape == (60, 80)
        assert full[name].dtype == np.float32 and set(np.unique(full[name])) <= {0.0, 1.0}
    person = np.maximum(np.maximum(full["body"], full["face"]), full["hands"])
    assert np.array_equal(full["background"], 1 - person)
    assert np.array_equal(full["nonface"], np.maximum(full["body"], full["hands"]) * (1 - full["face"]))
    assert (full["mouth_jaw"] <= full["face"]).all() and full["mouth_jaw"].sum() > 0
    # every confident face / hand point lies inside its region's mask
    for region in ("face", "hands"):
        for x, y, c in frame[R.keypoint_mask(region)]:
            if c >= 0.3 and 0 <= x < 640 and 0 <= y < 480:
                assert full[region][int(round(y)), int(round(x))] == 1
    # the latent grid is the canvas mask at 1/8 scale (up to the rim)
    down = full["face"].reshape(60, 8, 80, 8).mean(axis=(1, 3))
    agree = ((down > 0.5) == (lat["face"] > 0.5)).mean()
    assert agree > 0.97
    assert full["face"].sum() / lat["face"].sum() == pytest.approx(64, rel=0.25)


def test_unreliable_points_are_left_out(frame):
    f = frame.copy()
    f[K.HANDS, 2] = 0.1
    m = R.raster_masks(f, (480, 640), regions=["hands", "face"])
    assert set(m) == {"hands", "face"} and m["hands"].sum() == 0 and m["face"].sum() > 0
    with pytest.raises(ValueError, match="133, 3"):
        R.raster_masks(f[:10], (480, 640))


def test_confidence_map_sums_circle_confidences(frame):
    f = frame.copy()
    f[:, 2] = 0.0
    f[K.LEFT_HAND_ROOT] = [100.0, 100.0, 0.8]
    f[K.LEFT_HAND_ROOT + 1] = [102.0, 100.0, 0.6]
    c = R.confidence_map(f, R.HANDS, (512, 512))
    assert c[100, 101] == pytest.approx(1.4) and c[100, 91] == pytest.approx(0.8)
    assert c[300, 300] == 0
    smooth = R.confidence_map(f, R.HANDS, (512, 512), sigma=2.0)
    assert smooth.sum() == pytest.approx(c.sum(), rel=1e-3) and smooth.max() < c.max()


def test_par_weights_eq2_3_numpy_and_torch():
    import torch

    conf = np.array([0.5, 0.5, 0.5, 0.5])
    small = np.array([1.0, 0.0, 0.0, 1.0])
    body = np.array([0.0, 1.0, 0.0, 1.0])
    assert R.par_weights(conf, small, body).tolist() == [5.0, 2.0, 1.0, 5.0]
    t = R.par_weights(torch.tensor(conf), torch.tensor(small), torch.tensor(body), omega1=4,
                      omega2=3, outside=0.5)
    assert t.tolist() == [2.0, 3.0, 0.5, 2.0]


def test_eval_uses_the_one_taxonomy(frame):
    from eval import pose_metrics as PM
    from eval import video_metrics as VM

    assert list(PM.REGIONS) == list(R.PARTS)
    for name, idx in PM.REGIONS.items():
        assert idx.tolist() == R.keypoint_indices(name).tolist()
    assert VM.keypoint_bbox(frame, (480, 640), region="face") == \
        VM.keypoint_bbox(frame, (480, 640), group=K.FACE)


def test_disc_union_small_grid_path_matches_the_loop_bit_for_bit():
    """Latent grids take the all-discs-at-once path, canvases the per-disc loop: a small grid
    must equal the corner of a grid big enough for the loop."""
    from csg.regions import _disc_union

    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 140))
        pts = rng.uniform(-5, 40, (n, 2))
        vals = rng.uniform(0, 1.5, n)
        r = float(rng.uniform(0.3, 5))
        big_w = (1 << 21) // (n * 30) + 64  # n * 30 * big_w > 2 ** 21: the loop
        for reduce in ("sum", "max"):
            small = _disc_union(pts, vals, r, (30, 36), reduce)
            big = _disc_union(pts, vals, r, (30, big_w), reduce)
            assert np.array_equal(small, big[:, :36])
