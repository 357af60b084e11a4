"""OpenPose JSON import/export, DWPose array conversion and the shipped example motion."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from csg import keypoints as K
from csg.errors import OutputError, PoseFormatError
from csg.openpose import from_dwpose_arrays, from_openpose, to_openpose
from csg.pose import PoseSequence
from tests.helpers import make_moving_pose, make_reference_pose

H, W = 48, 64
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOT_FEET = np.r_[0:K.FEET.start, K.FEET.stop:K.NUM_KEYPOINTS]


def test_single_file_is_editor_shaped_and_round_trips(tmp_path):
    pose = make_reference_pose(H, W)
    out = to_openpose(pose, tmp_path / "ref.json")
    d = json.loads(out.read_text())
    assert (d["canvas_width"], d["canvas_height"]) == (W, H)
    person = d["people"][0]
    sizes = {k: len(v) for k, v in person.items()}
    assert sizes == {"pose_keypoints_2d": 54, "face_keypoints_2d": 210,
                     "hand_left_keypoints_2d": 63, "hand_right_keypoints_2d": 63}
    body = np.array(person["pose_keypoints_2d"]).reshape(18, 3)
    kp = pose.keypoints[0]
    # OpenPose-18: 1 neck = shoulder midpoint, 2 right shoulder, 5 left shoulder, 14 right eye
    np.testing.assert_allclose(body[1, :2], kp[[K.LEFT_SHOULDER, K.RIGHT_SHOULDER], :2].mean(0))
    np.testing.assert_array_equal(body[2], kp[K.RIGHT_SHOULDER])
    np.testing.assert_array_equal(body[5], kp[K.LEFT_SHOULDER])
    np.testing.assert_array_equal(body[14], kp[K.RIGHT_EYE_C])
    face = np.array(person["face_keypoints_2d"]).reshape(70, 3)
    np.testing.assert_allclose(face[68, :2], kp[K.RIGHT_EYE, :2].mean(0), rtol=1e-6)  # pupil

    back = from_openpose(out)
    assert back.size_hw == (H, W)
    np.testing.assert_array_equal(back.keypoints[0, NOT_FEET], kp[NOT_FEET])
    assert (back.scores[0, K.FEET] == 0).all()  # COCO-18 has no feet


def test_folder_round_trip_keeps_feet_with_body25(tmp_path):
    pose = make_moving_pose(num_frames=4, height=H, width=W)
    folder = to_openpose(pose, tmp_path / "frames", body_format="body25")
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"frame_{t:06d}_keypoints.json" for t in range(4)]
    back = from_openpose(folder, fps=pose.fps)
    assert back.keypoints.shape == (4, 133, 3)
    np.testing.assert_array_equal(back.keypoints, pose.keypoints)
    with pytest.raises(OutputError, match="--overwrite"):
        to_openpose(pose, folder)
    to_openpose(pose.slice(0, 2), folder, overwrite=True)  # shorter: no stale frames remain
    assert from_openpose(folder).num_frames == 2
    with pytest.raises(OutputError, match="one frame"):
        to_openpose(pose, tmp_path / "many.json")


def _write(tmp_path, doc, name="f.json"):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def _person(n_body=18):
    return {"pose_keypoints_2d": [1.0, 2.0, 0.9] * n_body,
            "face_keypoints_2d": [], "hand_left_keypoints_2d": [],
            "hand_right_keypoints_2d": [3.0, 4.0, 0.5] * 21}


def test_import_canvas_missing_groups_and_extra_people(tmp_path, caplog):
    p = _write(tmp_path, {"people": [_person(25), _person()]})
    with pytest.raises(PoseFormatError, match=r"f.json: canvas_width/canvas_height: missing"):
        from_openpose(p)
    with caplog.at_level(logging.WARNING, logger="csg.openpose"):
        pose = from_openpose(p, width=W, height=H)
    assert "more than one person" in caplog.text
    kp = pose.keypoints[0]
    assert (kp[K.FACE, 2] == 0).all() and (kp[K.LEFT_HAND, 2] == 0).all()
    np.testing.assert_array_equal(kp[K.LEFT_HAND, :2],
                                  np.broadcast_to(kp[K.LEFT_WRIST, :2], (21, 2)))
    assert (kp[K.RIGHT_HAND, 2] == 0.5).all() and (kp[K.FEET, 2] == 0.9).all()  # BODY_25 feet


@pytest.mark.parametrize("doc, pattern", [
    ({"people": [{**_person(), "pose_keypoints_2d": [1.0] * 20}]},
     r"people\[0\].pose_keypoints_2d: has 20 numbers, expected 54 or 75"),
    ({"people": [{**_person(), "hand_left_keypoints_2d": [1.0] * 60}]},
     r"people\[0\].hand_left_keypoints_2d: has 60 numbers, expected 63"),
    ({"people": [{**_person(), "face_keypoints_2d": ["a"] * 210}]},
     r"people\[0\].face_keypoints_2d: must be a flat list of numbers"),
    ({"people": [{"face_keypoints_2d": []}]}, r"people\[0\].pose_keypoints_2d: missing or empty"),
    ({"people": []}, r"people: empty"),
    ({"persons": []}, r"people: missing"),
])
def test_import_errors_name_file_and_field(tmp_path, doc, pattern):
    p = _write(tmp_path, {**doc, "canvas_width": W, "canvas_height": H})
    with pytest.raises(PoseFormatError, match=r"f.json: " + pattern):
        from_openpose(p)


def test_import_not_json_and_empty_folder(tmp_path):
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(PoseFormatError, match=r"bad.json: not valid OpenPose JSON"):
        from_openpose(tmp_path / "bad.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PoseFormatError, match=r"empty: folder holds no .json files"):
        from_openpose(tmp_path / "empty")


def _fake_dwpose(t=2):
    rng = np.random.default_rng(1)
    body = rng.uniform(0.1, 0.9, (t, 18, 2)).astype(np.float32)
    subset = np.tile(np.arange(18, dtype=np.float32), (t, 1))
    subset[:, 9] = -1  # right knee missing
    hands = rng.uniform(0.1, 0.9, (t, 2, 21, 2)).astype(np.float32)
    hands[1, 1] = -1  # frame 1: right hand invisible (ControlNet marker)
    face = rng.uniform(0.1, 0.9, (t, 68, 2)).astype(np.float32)
    return (body, np.full((t, 18), 1.1, np.float32), subset, hands,
            np.full((t, 2, 21), 0.8, np.float32), face, np.full((t, 68), 0.7, np.float32))


def test_from_dwpose_arrays_maps_openpose18_and_hands():
    arrays = _fake_dwpose()
    body, _, _, hands, _, face, _ = arrays
    pose = from_dwpose_arrays(*arrays, width=W, height=H, fps=24.0)
    kp = pose.keypoints
    assert pose.size_hw == (H, W) and pose.fps == 24.0
    scale = np.array([W, H], np.float32)
    # OpenPose-18: 2 right shoulder, 7 left wrist, 15 left eye, 9 right knee
    np.testing.assert_allclose(kp[:, K.RIGHT_SHOULDER, :2], body[:, 2] * scale)
    np.testing.assert_allclose(kp[:, K.LEFT_WRIST, :2], body[:, 7] * scale)
    np.testing.assert_allclose(kp[:, K.LEFT_EYE_C, :2], body[:, 15] * scale)
    assert (kp[:, K.RIGHT_KNEE, 2] == 0).all() and (kp[:, K.LEFT_KNEE, 2] == 1).all()  # clipped
    np.testing.assert_allclose(kp[:, K.LEFT_HAND, :2], hands[:, 0] * scale)  # hand 0 = left
    np.testing.assert_allclose(kp[0, K.RIGHT_HAND, :2], hands[0, 1] * scale)
    assert (kp[1, K.RIGHT_HAND, 2] == 0).all()
    np.testing.assert_allclose(kp[1, K.RIGHT_HAND, :2],
                               np.broadcast_to(kp[1, K.RIGHT_WRIST, :2], (21, 2)))
    np.testing.assert_allclose(kp[:, K.FACE, :2], face * scale)
    assert (kp[:, K.FEET, 2] == 0).all()
    with pytest.raises(PoseFormatError, match=r"hands_xy: expected shape"):
        from_dwpose_arrays(*arrays[:3], hands[:, :1], *arrays[4:], width=W, height=H, fps=24.0)


def test_shipped_example_motion_matches_its_npz():
    pose = PoseSequence.load(EXAMPLES / "motion" / "echomimicv2_pose01.pose.json")
    assert pose.keypoints.shape == (336, 133, 3) and pose.fps == 24.0
    assert pose.size_hw == (768, 768)
    d = np.load(EXAMPLES / "motion" / "echomimicv2_pose01_packed.npz")
    np.testing.assert_allclose(pose.keypoints[:, K.FACE, :2], d["face_68x2"] * 768, rtol=1e-6)
    kp = pose.keypoints
    to_left = np.linalg.norm(kp[:, K.LEFT_HAND_ROOT, :2] - kp[:, K.LEFT_WRIST, :2], axis=-1)
    to_right = np.linalg.norm(kp[:, K.LEFT_HAND_ROOT, :2] - kp[:, K.RIGHT_WRIST, :2], axis=-1)
    assert np.median(to_left) < 20 < np.median(to_right)  # the left hand is at the left wrist
    assert (kp[:, K.RIGHT_SHOULDER, 0] < kp[:, K.LEFT_SHOULDER, 0]).all()  # frontal speaker


def test_import_reads_a_file_with_a_byte_order_mark(tmp_path):
    """OpenPose JSON saved by a Windows editor (UTF-8 with a BOM) still imports."""
    pose = make_reference_pose(96, 128)
    to_openpose(pose, tmp_path / "f.json")
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "f.json").read_bytes())
    assert from_openpose(bom).num_frames == 1
