"""Reference-pose extraction: the landmark mappings (pure), the DWPose error paths, MediaPipe on the
shipped photo and on a blank image, and the ``csg pose extract`` command."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from csg import keypoints as K
from csg.errors import ImageError, InputError, NoPersonError, WeightsNotFoundError
from csg.extract import (FACE468_FOR_IBUG68, FACE_SCORE, HAND_SCORE, POSE33_FOR_COCO17,
                         PoseExtractor, dwpose_to_keypoints, extract_pose, holistic_to_keypoints,
                         resolve_dwpose_weights)

H, W = 48, 64
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def _load(name: str) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(EXAMPLES / name)), cv2.COLOR_BGR2RGB)


def test_face_table_is_a_68_point_selection():
    assert FACE468_FOR_IBUG68.shape == (68,)
    assert len(set(FACE468_FOR_IBUG68.tolist())) == 68
    assert FACE468_FOR_IBUG68.min() >= 0 and FACE468_FOR_IBUG68.max() < 468
    # iBUG anchors: chin 8 = mesh 152, nose tip 30 = mesh 4, inner-lip centres 62/66 = 13/14
    assert FACE468_FOR_IBUG68[[8, 30, 62, 66]].tolist() == [152, 4, 13, 14]


def _fake_holistic(rng):
    pose33 = np.column_stack([rng.uniform(5, W - 5, 33), rng.uniform(5, H - 5, 33),
                              rng.uniform(0.5, 1.2, 33)])
    pose33[27, :2], pose33[28, :2] = (40, 40), (24, 40)  # left ankle right of the right one
    pose33[29, :2], pose33[31, :2] = (40, 42), (41, 46)  # left heel, left foot index
    pose33[5, 0] = -3.0  # right eye off the image
    face = np.column_stack([rng.uniform(0, W, 468), rng.uniform(0, H, 468)])
    left = np.column_stack([rng.uniform(0, W, 21), rng.uniform(0, H, 21)])
    return pose33, face, left


def test_holistic_mapping(rng):
    pose33, face, left = _fake_holistic(rng)
    kp = holistic_to_keypoints(pose33, face, left, None, (H, W))
    assert kp.shape == (133, 3) and kp.dtype == np.float32
    np.testing.assert_allclose(kp[K.LEFT_SHOULDER, :2], pose33[11, :2], rtol=1e-6)
    np.testing.assert_allclose(kp[K.RIGHT_WRIST, :2], pose33[16, :2], rtol=1e-6)
    np.testing.assert_allclose(kp[K.BODY, :2], pose33[POSE33_FOR_COCO17, :2], rtol=1e-6)
    assert kp[:, 2].max() <= 1.0  # visibility clipped
    assert kp[K.RIGHT_EYE_C, 2] == 0.0  # outside the image
    np.testing.assert_allclose(kp[K.LEFT_BIG_TOE, :2], (41, 46))
    np.testing.assert_allclose(kp[K.LEFT_HEEL, :2], (40, 42))
    assert kp[K.LEFT_SMALL_TOE, 0] > 41  # derived on the outside of the left foot
    assert 0 < kp[K.LEFT_SMALL_TOE, 2] < kp[[K.LEFT_BIG_TOE, K.LEFT_HEEL], 2].min()
    np.testing.assert_allclose(kp[K.FACE, :2], face[FACE468_FOR_IBUG68], rtol=1e-6)
    assert (kp[K.FACE, 2] == np.float32(FACE_SCORE)).all() and FACE_SCORE == 0.95
    np.testing.assert_allclose(kp[K.LEFT_HAND, :2], left, rtol=1e-6)
    assert (kp[K.LEFT_HAND, 2] == np.float32(HAND_SCORE)).all()
    # the missing right hand sits on the right wrist with score 0
    assert (kp[K.RIGHT_HAND, 2] == 0).all()
    np.testing.assert_array_equal(kp[K.RIGHT_HAND, :2],
                                  np.broadcast_to(kp[K.RIGHT_WRIST, :2], (21, 2)))
    no_face = holistic_to_keypoints(pose33, None, None, None, (H, W))
    assert (no_face[K.FACE, 2] == 0).all() and (no_face[K.HANDS, 2] == 0).all()


def test_dwpose_output_mapping():
    xy = np.arange(134 * 2, dtype=np.float32).reshape(134, 2)
    scores = np.linspace(0, 1.2, 134)
    kp = dwpose_to_keypoints(xy, scores)
    assert kp.shape == (133, 3)
    # OpenPose-18 in 0..17 (2 right shoulder, 5 left shoulder, 15 left eye); COCO-WB 17.. at 18..
    np.testing.assert_array_equal(kp[K.RIGHT_SHOULDER, :2], xy[2])
    np.testing.assert_array_equal(kp[K.LEFT_SHOULDER, :2], xy[5])
    np.testing.assert_array_equal(kp[K.LEFT_EYE_C, :2], xy[15])
    np.testing.assert_array_equal(kp[K.FEET.start:, :2], xy[18:])
    assert kp[:, 2].max() == 1.0
    plain = dwpose_to_keypoints(xy[:133], scores[:133])
    np.testing.assert_array_equal(plain[:, :2], xy[:133])
    with pytest.raises(ValueError, match="133 or 134"):
        dwpose_to_keypoints(xy[:100], scores[:100])


def test_dwpose_weights_errors_are_one_line_and_offline(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"no weights given; .*--dwpose FOLDER"):
        resolve_dwpose_weights(None)
    with pytest.raises(WeightsNotFoundError, match=r"nowhere: DWPose weights folder not found"):
        resolve_dwpose_weights(str(tmp_path / "nowhere"))
    with pytest.raises(WeightsNotFoundError, match=r"not in the Hugging Face cache"):
        resolve_dwpose_weights("someone/no-such-dwpose-repo")
    (tmp_path / "yolox_l_8x8_300e_coco.pth").write_bytes(b"x")
    with pytest.raises(WeightsNotFoundError, match=r"no pose checkpoint \(dw-ll_ucoco"):
        resolve_dwpose_weights(str(tmp_path))
    (tmp_path / "dw-ll_ucoco_384.pth").write_bytes(b"x")
    det, pose = resolve_dwpose_weights(str(tmp_path))
    assert (det.name, pose.name) == ("yolox_l_8x8_300e_coco.pth", "dw-ll_ucoco_384.pth")
    with pytest.raises(WeightsNotFoundError, match=r"no weights given"):
        extract_pose(np.zeros((H, W, 3), np.uint8), backend="dwpose")


def test_bad_inputs():
    with pytest.raises(ImageError, match=r"ref.png: expected an \(H, W, 3\) uint8 RGB image"):
        extract_pose(np.zeros((H, W), np.uint8), source="ref.png")
    with pytest.raises(ImageError, match=r"float64"):
        extract_pose(np.zeros((H, W, 3)), source="ref.png")
    with pytest.raises(InputError, match=r"backend: unknown 'openpose'"):
        extract_pose(np.zeros((H, W, 3), np.uint8), backend="openpose")


def test_blank_photo_has_no_person():
    with pytest.raises(NoPersonError, match=r"^blank.png: no person found in the photo"):
        extract_pose(np.full((H * 4, W * 4, 3), 255, np.uint8), source="blank.png")


@pytest.fixture(scope="module")
def moore():
    img = _load("moore_anyone-3.png")
    return img, extract_pose(img, source="moore_anyone-3.png")


def test_mediapipe_on_the_example_photo(moore):
    img, pose = moore
    kp = pose.keypoints[0]
    assert pose.size_hw == img.shape[:2] == (922, 614)
    assert pose.meta == {"backend": "mediapipe", "source": "moore_anyone-3.png"}
    assert kp[K.BODY, 2].mean() > 0.9 and (kp[K.HANDS, 2] > 0).all() and (kp[K.FACE, 2] > 0).all()
    # frontal photo: the person's right is on the image left
    assert kp[K.RIGHT_SHOULDER, 0] < kp[K.LEFT_SHOULDER, 0]
    # MediaPipe's left hand is the person's left: its root lies at the left wrist
    d = np.linalg.norm(kp[[K.LEFT_HAND_ROOT, K.RIGHT_HAND_ROOT], None, :2]
                       - kp[None, [K.LEFT_WRIST, K.RIGHT_WRIST], :2], axis=-1)
    assert d[0, 0] < 25 < d[0, 1] and d[1, 1] < 25 < d[1, 0]
    # iBUG orientation: jaw 0 -> 16 runs image left -> right, chin lowest, eyes above the mouth
    jaw = kp[K.JAW]
    assert jaw[0, 0] < jaw[8, 0] < jaw[16, 0] and jaw[8, 1] == jaw[:, 1].max()
    assert kp[K.RIGHT_EYE, 0].mean() < kp[K.LEFT_EYE, 0].mean()
    assert kp[K.RIGHT_EYE, 1].mean() < kp[K.UPPER_INNER_LIP, 1] <= kp[K.LOWER_INNER_LIP, 1]
    inner = kp[K.INNER_LIPS]
    assert inner[0, 0] < inner[2, 0] < inner[4, 0]  # 60 right corner, 62 top centre, 64 left


def test_extractor_video_mode(moore):
    img, pose = moore
    small = img[::2, ::2].copy()
    with PoseExtractor(video=True) as ex:
        a, b = ex(small), ex(small)
        assert ex(np.full_like(small, 255)) is None
    assert a.shape == b.shape == (133, 3)
    np.testing.assert_allclose(a[K.BODY, :2] * 2, pose.keypoints[0, K.BODY, :2], atol=12)
    with pytest.raises(RuntimeError, match="closed"):
        ex(small)


def test_cli_extract(tmp_path, capsys):
    from csg.cli import main
    from csg.pose import PoseSequence

    out = tmp_path / "ref.json"
    assert main(["pose", "extract", "--image", str(EXAMPLES / "mimicmotion_demo1.jpg"),
                 "-o", str(out)]) == 0
    said = capsys.readouterr()
    assert "mean score body" in said.out and "left hand 0.00" in said.out
    pose = PoseSequence.load(out)
    assert pose.size_hw == (1920, 1080) and pose.meta["backend"] == "mediapipe"
    assert main(["pose", "extract", "--image", str(EXAMPLES / "mimicmotion_demo1.jpg"),
                 "-o", str(out)]) != 0
    assert "--overwrite" in capsys.readouterr().err

    from csg.image import save_image

    blank = tmp_path / "blank.png"
    save_image(blank, np.full((H * 4, W * 4, 3), 255, np.uint8))
    assert main(["pose", "extract", "--image", str(blank), "-o", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no person found" in err
    assert not (tmp_path / "b.json").exists()


def test_mediapipe_is_imported_without_matplotlib_and_its_drawing_helpers_still_work():
    """csg.extract.import_mediapipe: MediaPipe's drawing helpers (and matplotlib) are imported
    only when used; a fresh process, because the test process may have imported them already."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from csg.extract import import_mediapipe\n"
        "mp = import_mediapipe()\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
        "assert mp.solutions.holistic.Holistic\n"
        "from mediapipe.python.solutions import drawing_styles\n"
        "assert drawing_styles.get_default_pose_landmarks_style()\n"
        "assert mp.solutions.drawing_utils.DrawingSpec().thickness == 2\n"
        "assert 'matplotlib.pyplot' in sys.modules\n"
        "assert type(mp.solutions.drawing_utils).__name__ == 'module'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
