"""The warp renderer: identity, retargeting maths, mouth, hands, CLI."""
from __future__ import annotations

import numpy as np
import pytest

from csg import keypoints as K
from csg.pose import PoseSequence
from pose2video import align
from pose2video.warp import WarpConfig, WarpRenderer, build_rig, warp_frame
from tests.helpers import make_moving_pose, make_reference_keypoints, make_reference_pose

H, W = 48 * 5, 64 * 5  # non-square, big enough for a face of ~10 px


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _textured(h=H, w=W, seed=0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 6, w // 6, 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def real_photo():
    """A real photo, downsized, with its MediaPipe skeleton."""
    import cv2
    from pathlib import Path

    from csg.extract import extract_pose
    from csg.image import load_image

    img = load_image(Path(__file__).resolve().parents[1] / "examples/images/moore_anyone-3.png")
    img = cv2.resize(img, (img.shape[1] // 3, img.shape[0] // 3), interpolation=cv2.INTER_AREA)
    return img, extract_pose(img)


def test_identity_reproduces_the_real_photo(real_photo):
    img, ref = real_photo
    poses = ref.replace(keypoints=np.repeat(ref.keypoints, 3, 0))
    r = WarpRenderer(WarpConfig(segment=True))
    state = r.prepare(img, ref)  # protocol v2: the rig once per photo
    out = np.concatenate(list(r.render(state, poses, progress=False, chunk=2)))
    assert out.shape == (3, *img.shape)
    assert min(psnr(f, img) for f in out) >= 35.0
    # a small nudge of the head still stays close, but is not the identity
    nudged = ref.keypoints.copy()
    nudged[0, K.FACE, 0] += 1.5
    moved = r.render(state, ref.replace(keypoints=nudged), progress=False)
    frame = next(iter(moved))[0]
    assert 25.0 < psnr(frame, img) < float("inf")  # arms now sit on the inpainted base


def test_v2_protocol_chunks_factory_and_canvas_check():
    from pose2video import get_renderer
    from pose2video.base import CanvasMismatchError
    from pose2video.warp import WarpState, warp_factory

    img = _textured(96, 128)
    ref = make_reference_pose(96, 128)
    r = warp_factory(device="cuda", dtype="float16", segment=False)  # both ignored
    assert (r.window, r.overlap) == (1, 0)
    state = r.prepare(img, ref)
    assert isinstance(state, WarpState)
    poses = make_moving_pose(7, 96, 128)
    chunks = list(r.render(state, poses, chunk=3, progress=False))
    assert [len(c) for c in chunks] == [3, 3, 1]
    again = np.concatenate(list(r.render(state, poses, chunk=16, progress=False)))
    np.testing.assert_array_equal(np.concatenate(chunks), again)  # chunking changes nothing
    with pytest.raises(CanvasMismatchError):
        next(iter(r.render(state, make_moving_pose(2, 50, 128), progress=False)))
    assert isinstance(get_renderer("warp", segment=False), WarpRenderer)


def test_retarget_identity_and_invariance():
    ref = make_reference_pose(H, W)
    same = ref.replace(keypoints=np.repeat(ref.keypoints, 4, 0))
    np.testing.assert_allclose(align.retarget(same, ref).keypoints, same.keypoints, atol=1e-4)
    drive = make_moving_pose(8, H, W)
    base = align.retarget(drive, ref)
    # the same motion, scaled and shifted onto another canvas, lands on the same skeleton
    moved = drive.keypoints.copy()
    moved[..., :2] = moved[..., :2] * 1.7 + np.array([40.0, -15.0])
    other = PoseSequence(moved, fps=drive.fps, width=900, height=700)
    out = align.retarget(other, ref)
    assert (out.width, out.height) == (W, H)
    np.testing.assert_allclose(out.keypoints, base.keypoints, atol=1e-3)


def test_fits_reference_skips_retargeting_only_for_the_photos_own_skeleton():
    ref = make_reference_pose(H, W)
    own = make_moving_pose(8, H, W)  # moves around the photo's own pose, on its canvas
    assert align.fits_reference(own.replace(keypoints=np.repeat(ref.keypoints, 3, 0)), ref)
    other = own.keypoints.copy()
    other[..., :2] = other[..., :2] * 0.5 + 20.0  # another, smaller person
    assert not align.fits_reference(own.replace(keypoints=other), ref)
    face_only = np.repeat(ref.keypoints, 3, 0)
    face_only[:, K.BODY.start + 5:, 2] = 0.0  # a face crop: no shoulders seen
    face_only[:, K.FACE, 2] = 1.0
    assert align.fits_reference(ref.replace(keypoints=face_only), ref.replace(
        keypoints=face_only[:1]))


def test_retarget_keeps_reference_bone_lengths():
    ref = make_reference_pose(H, W)
    drv = ref.keypoints.copy()
    sh = drv[0, K.RIGHT_SHOULDER, :2]
    drv[0, [K.RIGHT_ELBOW, K.RIGHT_WRIST], :2] = sh + (drv[0, [K.RIGHT_ELBOW, K.RIGHT_WRIST], :2]
                                                      - sh) * 1.5  # a longer arm
    out = align.retarget(ref.replace(keypoints=drv), ref).xy[0]
    ref_len = np.linalg.norm(ref.xy[0, K.RIGHT_ELBOW] - ref.xy[0, K.RIGHT_SHOULDER])
    got = np.linalg.norm(out[K.RIGHT_ELBOW] - out[K.RIGHT_SHOULDER])
    assert got == pytest.approx(ref_len, rel=1e-4)


def test_similarity_and_bone_transform_known_answers():
    src = np.array([[0.0, 0], [1, 0], [0, 1]])
    a, b = align.fit_similarity(src, src * 2 + [3, 4])
    assert a == pytest.approx(2.0) and b == pytest.approx(3 + 4j)
    m = align.bone_transform(np.array([0.0, 0]), np.array([10.0, 0]), np.array([5.0, 5]),
                             np.array([5.0, 25]), across=1.0)
    # the bone end lands on the target end; a point beside the bone keeps its distance
    np.testing.assert_allclose(m[:, :2] @ [10.0, 0] + m[:, 2], [5, 25], atol=1e-9)
    np.testing.assert_allclose(m[:, :2] @ [0.0, 3] + m[:, 2], [2, 5], atol=1e-9)


@pytest.fixture(scope="module")
def toy_rig():
    img = _textured()
    ref = make_reference_pose(H, W)
    return img, ref, build_rig(img, ref, WarpConfig(segment=False))


def test_toy_identity_is_bit_exact(toy_rig):
    img, ref, rig = toy_rig
    np.testing.assert_array_equal(warp_frame(rig, ref.keypoints[0]), img)


def test_open_mouth_darkens_the_mouth(toy_rig):
    img, ref, rig = toy_rig
    kp = ref.keypoints[0].copy()
    fh = float(K.face_height(kp[None, :, :2])[0])
    kp[K.INNER_LIPS.start + 5:K.INNER_LIPS.stop, 1] += 0.25 * fh  # lower inner lip drops
    out = warp_frame(rig, kp)
    lo = kp[K.INNER_LIPS, :2]
    x0, x1 = int(lo[:, 0].min()) + 1, int(lo[:, 0].max())
    y0 = int(kp[K.UPPER_INNER_LIP, 1]) + 1
    y1 = int(kp[K.LOWER_INNER_LIP, 1])
    region = (slice(y0 + (y1 - y0) // 2, y1), slice(x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4))
    assert out[region].mean() < img[region].mean() - 25
    assert out[region].mean() < 90


def test_mouth_is_painted_only_inside_the_lips(toy_rig):
    img, ref, rig = toy_rig
    kp = ref.keypoints[0].copy()
    fh = float(K.face_height(kp[None, :, :2])[0])
    kp[K.INNER_LIPS.start + 5:K.INNER_LIPS.stop, 1] += 0.6 * fh  # noisy inner lips, past the chin
    out = warp_frame(rig, kp)
    from pose2video.face import paint_mouth
    import cv2

    outer = np.zeros(img.shape[:2], np.uint8)  # the face (the toy's outer lips are a line)
    face = np.round(kp[K.FACE.start:K.MOUTH.start, :2]).astype(np.int32)
    cv2.fillConvexPoly(outer, cv2.convexHull(face), 1)
    outer = cv2.dilate(outer, np.ones((3, 3), np.uint8)) > 0
    frame = out.copy()
    assert paint_mouth(frame, kp[:, :2], kp[:, 2] > 0.3, rig.mouth) > 0
    changed = np.any(frame != out, -1) | np.any(out != warp_frame(rig, ref.keypoints[0]), -1)
    # whatever the mouth painting touched lies within the outer lip contour
    painted = np.any(frame != out, -1)
    assert painted.any() and not (painted & ~outer).any()
    assert changed.any()


def test_raised_hand_moves_pixels_at_the_hand(toy_rig):
    img, ref, rig = toy_rig
    kp = ref.keypoints[0].copy()
    lift = np.array([0.0, -0.12 * H])
    kp[K.RIGHT_WRIST, :2] += lift
    kp[K.RIGHT_HAND, :2] += lift
    out = warp_frame(rig, kp)
    new = kp[K.RIGHT_HAND, :2].mean(0).astype(int)
    old = ref.xy[0, K.RIGHT_HAND].mean(0).astype(int)
    r = 4
    win = lambda im, c: im[c[1] - r:c[1] + r, c[0] - r:c[0] + r].astype(int)  # noqa: E731
    # the hand's pixels are now at the new place, and the old place changed
    assert np.abs(win(out, new) - win(img, old)).mean() < np.abs(win(img, new) - win(img, old)).mean()
    assert np.abs(win(out, old) - win(img, old)).mean() > 10
    far = (slice(0, 20), slice(0, 20))
    np.testing.assert_array_equal(out[far], img[far])  # the background corner is untouched


def test_render_cli_writes_video(tmp_path):
    from csg.cli import main
    from csg.image import save_image
    from csg.video import probe_video

    img = _textured(96, 128)
    save_image(tmp_path / "ref.png", img)
    make_reference_pose(96, 128).save(tmp_path / "ref.json")
    make_moving_pose(6, 96, 128, fps=12.0).save(tmp_path / "pose.json")
    out = tmp_path / "out.mp4"
    args = ["render", "--ref", str(tmp_path / "ref.png"), "--pose", str(tmp_path / "pose.json"),
            "--ref-pose", str(tmp_path / "ref.json"), "-o", str(out), "--quiet"]
    assert main(args) == 0
    info = probe_video(out)
    assert info["num_frames"] == 6 and float(info["fps"]) == pytest.approx(12.0)
    assert main(args) != 0  # exists, no --overwrite
    bad = make_moving_pose(2, 50, 128)
    bad.save(tmp_path / "bad.json")
    assert main(["render", "--ref", str(tmp_path / "ref.png"), "--pose", str(tmp_path / "bad.json"),
                 "--ref-pose", str(tmp_path / "ref.json"), "-o", str(tmp_path / "b.mp4")]) == 2
    assert main(["render", "--ref", str(tmp_path / "ref.png"), "--pose", str(tmp_path / "pose.json"),
                 "-o", str(tmp_path / "c.mp4"), "--renderer", "nope"]) == 1


def test_renderers_command_lists_needs(capsys):
    from csg.cli import main

    assert main(["renderers"]) == 0
    text = capsys.readouterr().out
    assert "warp" in text and "diffusers" in text and "needs: nothing" in text


def test_elbow_split_overlaps_so_a_straight_arm_is_whole():
    from pose2video.masks import elbow_split

    ref = make_reference_keypoints(H, W)[:, :2].astype(np.float64)
    up, fore = elbow_split(ref, "r", (H, W), 6.0)
    assert up.shape == fore.shape == (H, W)
    # wherever the forearm layer is not opaque the upper-arm layer is: no base shows through
    assert np.all(up[fore < 1.0] == 1.0)
    s, e, w = (np.round(ref[j]).astype(int) for j in (K.RIGHT_SHOULDER, K.RIGHT_ELBOW,
                                                       K.RIGHT_WRIST))
    assert up[s[1], s[0]] == 1.0 and fore[s[1], s[0]] == 0.0
    assert up[w[1], w[0]] == 0.0 and fore[w[1], w[0]] == 1.0
    assert 0.0 < fore[e[1], e[0]] < 1.0  # the two cross-fade at the elbow


def test_soft_alpha_is_feathered_inside_the_mask():
    from pose2video.masks import soft_alpha

    m = np.zeros((40, 60), bool)
    m[10:30, 10:50] = True
    a = soft_alpha(m, 4.0)
    assert a[~m].max() == 0.0 and a[20, 30] == 1.0
    assert 0.0 < a[10, 30] < a[12, 30] < a[15, 30] == 1.0  # a ramp, not a step


def test_uncovered_area_behind_an_arm_takes_the_side_it_belongs_to():
    from pose2video.masks import behind_body

    person = np.zeros((40, 60), np.float32)
    person[:, :30] = 1.0  # body on the left, wall on the right
    arm = np.zeros((40, 60), bool)
    arm[:, 22:38] = True  # an arm across the silhouette edge
    person[arm] = 1.0
    ref = np.zeros((133, 2))
    t = behind_body(arm, person, ref, np.zeros(133, bool))
    assert t[20, 23] == 1.0 and t[20, 37] == 0.0  # body side -> body, wall side -> wall


def _arm_beside_body(arm_x0=38, arm_x1=62, horizontal=False):
    """A 160x200 photo: white wall, a blue body (x 60..130), one skin-coloured arm either hanging
    beside the body's left edge (x ``arm_x0..arm_x1``) or held out across it at y 60..84."""
    h, w = 160, 200
    img = np.full((h, w, 3), 230, np.uint8)
    person = np.zeros((h, w), np.float32)
    img[20:160, 60:130], person[20:160, 60:130] = (40, 60, 160), 1.0
    ref, ok = np.zeros((133, 2)), np.zeros(133, bool)
    ref[K.RIGHT_SHOULDER], ref[K.LEFT_SHOULDER] = (50, 25), (150, 25)  # arm radius 10 px
    if horizontal:
        ref[[K.RIGHT_SHOULDER, K.RIGHT_ELBOW, K.RIGHT_WRIST]] = (110, 72), (70, 72), (30, 72)
        arm = np.zeros((h, w), bool)
        arm[60:84, 20:115] = True
    else:
        ref[K.RIGHT_ELBOW], ref[K.RIGHT_WRIST] = (50, 80), (50, 130)
        arm = np.zeros((h, w), bool)
        arm[25:140, arm_x0:arm_x1] = True
    ok[[K.RIGHT_SHOULDER, K.RIGHT_ELBOW, K.RIGHT_WRIST]] = True
    img[arm], person[arm] = (220, 160, 130), 1.0
    return img, person, ref, ok, arm


def test_an_arm_hanging_beside_the_body_uncovers_wall_and_keeps_the_body_edge():
    """#13: the strip an arm hanging beside the hip leaves is wall beyond the body's visible edge,
    not body out to the middle of the arm (the demo's shorts widened by a blue band)."""
    from pose2video.masks import arm_free_base, behind_body

    img, person, ref, ok, arm = _arm_beside_body()
    holes = np.zeros_like(arm)
    holes[23:142, 36:64] = True  # the arm grown by 2 px, as the rig's holes are
    t = behind_body(holes, person, ref, ok)
    assert t[80, 62] > 0.9 and t[80, 59] > 0.9  # the body goes on a few px under the arm
    assert t[80, 36:54].max() < 0.05  # the rest of the strip is wall (medial axis: x ~ 50)
    fill = arm_free_base(img, holes, ref, ok, person).astype(int)
    wall = fill[30:135, 36:54].reshape(-1, 3)
    assert np.abs(wall - 230).max() < 20  # wall: no blue band, no skin streak from the arm
    assert np.abs(fill[30:135, 61:64].reshape(-1, 3) - (40, 60, 160)).max() < 30  # the body edge


def test_a_raised_forearm_at_the_body_edge_keeps_the_nearest_label():
    """#13: only a hanging arm takes the across-strip rule; a forearm pointing up along the body's
    edge (a seated speaker's hand on the jacket's hem) keeps the nearest visible label, so the
    body side of the strip stays body out to its middle (the interview clip got wall and chair
    there)."""
    from pose2video.masks import behind_body

    img, person, ref, ok, arm = _arm_beside_body()
    ok[:] = False
    ref[K.RIGHT_ELBOW], ref[K.RIGHT_WRIST] = (50, 130), (50, 80)  # forearm pointing up
    ok[[K.RIGHT_ELBOW, K.RIGHT_WRIST]] = True
    holes = np.zeros_like(arm)
    holes[23:142, 36:64] = True
    raised = behind_body(holes, person, ref, ok)
    ref[K.RIGHT_ELBOW], ref[K.RIGHT_WRIST] = (50, 80), (50, 130)  # the same forearm hanging
    hanging = behind_body(holes, person, ref, ok)
    assert hanging[90:120, 50].max() < 0.05  # hanging: wall from the medial axis out
    assert raised[90:120, 52:60].min() > 0.5  # raised: body on the body's half of the strip


def test_an_arm_across_the_body_edge_hides_body_inside_the_silhouette_only():
    from pose2video.masks import behind_body

    img, person, ref, ok, arm = _arm_beside_body(horizontal=True)
    t = behind_body(arm, person, ref, ok)
    assert t[72, 70:112].min() > 0.95  # over the body: body above and below it
    assert t[72, 20:55].max() < 0.05  # held out over the wall


def test_folded_elbow_keeps_the_forearm_whole(toy_rig):
    img, ref, rig = toy_rig
    kp = ref.keypoints[0].copy()
    s, e, w = (kp[j, :2].copy() for j in (K.RIGHT_SHOULDER, K.RIGHT_ELBOW, K.RIGHT_WRIST))
    fore = np.linalg.norm(w - e)
    up = (s - e) / np.linalg.norm(s - e)
    side = np.array([-up[1], up[0]])
    new_w = e + fore * (0.94 * up + 0.34 * side)  # folded ~160 degrees, beside the upper arm
    m = align.bone_transform(e, w, e, new_w)  # the hand turns with the forearm
    for j in [K.RIGHT_WRIST, *range(K.RIGHT_HAND.start, K.RIGHT_HAND.stop)]:
        kp[j, :2] = m[:, :2] @ kp[j, :2] + m[:, 2]
    out = warp_frame(rig, kp)
    # along the folded forearm's axis the frame shows the photo's forearm, turned (no tears)
    dst = np.round(e[None] + np.linspace(0.3, 0.7, 9)[:, None] * (new_w - e)).astype(int)
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    src = dst @ inv[:, :2].T + inv[:, 2]
    want = np.array([_bilinear(img, x, y) for x, y in src])
    got = out[dst[:, 1], dst[:, 0]].astype(float)
    assert np.abs(got - want).mean() < 12


def _bilinear(img: np.ndarray, x: float, y: float) -> np.ndarray:
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    p = img[y0:y0 + 2, x0:x0 + 2].astype(float)
    return (p[0, 0] * (1 - fx) * (1 - fy) + p[0, 1] * fx * (1 - fy) + p[1, 0] * (1 - fx) * fy
            + p[1, 1] * fx * fy)


def test_stabilize_face_is_rigid_robust_and_keeps_the_identity():
    from pose2video.face import HEAD_POINTS, MOBILE, stabilize_face

    ref = make_reference_keypoints(H, W).astype(np.float64)
    ref_xy, ref_ok = ref[:, :2], ref[:, 2] >= 0.3
    rng = np.random.default_rng(0)
    kps = np.repeat(ref[None], 5, 0)
    shift = np.array([3.0, -2.0])
    kps[1:, HEAD_POINTS, :2] += shift  # the head moves...
    eye = K.FACE.start + 36
    kps[1:, eye, :2] += 15.0  # ...one eye point is an outlier
    kps[1:, K.FACE, :2] += rng.normal(0, 0.3, (4, 68, 2))  # and the rest is noisy
    out = stabilize_face(kps, ref_xy, ref_ok, sigma=0.0)
    np.testing.assert_array_equal(out[0], ref)  # the photo's own pose is untouched
    rigid = np.setdiff1d(HEAD_POINTS, MOBILE)
    # the skull moved rigidly with the head: the outlier did not drag the eye along
    err = np.abs(out[1:, rigid, :2] - (ref_xy[rigid] + shift)).max()
    assert err < 1.0
    assert np.abs(out[1:, eye, :2] - (ref_xy[eye] + shift)).max() < 1.0
    # the lips keep their own (noisy) motion, within the clip
    assert not np.allclose(out[1:, K.MOUTH, :2], ref_xy[K.MOUTH] + shift)


def test_bad_input_far_skeleton_is_one_clear_error():
    from csg.errors import InputError

    img = _textured(96, 128)
    ref = make_reference_pose(96, 128)
    r = WarpRenderer(WarpConfig(segment=False, align=False))
    state = r.prepare(img, ref)
    far = np.repeat(ref.keypoints, 3, 0)
    far[2, :, 0] += 600.0  # frame 2 jumps far off the canvas
    with pytest.raises(InputError, match="frame 2: the person is far outside"):
        list(r.render(state, ref.replace(keypoints=far), progress=False))


def test_two_people_the_other_stays_still_and_a_chest_crop_renders(real_photo, caplog):
    import logging

    from csg.extract import extract_pose

    from csg.errors import InputError

    img, _ = real_photo
    two = np.hstack([img, img[:, ::-1]])  # the speaker and a second person
    with pytest.raises(InputError, match="2 people in the photo"):
        extract_pose(two, source="two.png")  # csg run / pose extract: one clear line
    one = extract_pose(img)  # a skeleton given for one of them (--ref-pose): the documented fallback
    ref = one.replace(width=two.shape[1])
    r = WarpRenderer(WarpConfig())
    state = r.prepare(two, ref)
    kp = ref.keypoints.copy()
    kp[0, [K.RIGHT_WRIST, *range(K.RIGHT_HAND.start, K.RIGHT_HAND.stop)], 1] -= 25  # a hand lifts
    out = next(iter(r.render(state, ref.replace(keypoints=kp), progress=False)))[0]
    mid = two.shape[1] // 2
    other = slice(mid + 10, None) if ref.xy[0, K.LEFT_SHOULDER, 0] < mid else slice(0, mid - 10)
    assert np.any(out != two)
    np.testing.assert_array_equal(out[:, other], two[:, other])  # documented: it stays still
    cut = np.ascontiguousarray(img[: int(img.shape[0] * 0.32)])  # cut at the chest: no elbows
    cref = extract_pose(cut)
    with caplog.at_level(logging.WARNING, logger="pose2video.warp"):
        state = r.prepare(cut, cref)
    assert "arm is not fully visible" in caplog.text
    moved = cref.keypoints.copy()
    moved[0, :, 0] += 2.0
    frame = next(iter(r.render(state, cref.replace(keypoints=moved), progress=False)))[0]
    assert frame.shape == cut.shape and 20.0 < psnr(frame, cut) < float("inf")


def test_texture_fill_copies_the_photos_own_pattern():
    from pose2video.masks import texture_fill

    yy, xx = np.mgrid[0:80, 0:120]
    img = np.dstack([((xx // 4 + yy // 4) % 2) * 200 + 20] * 3).astype(np.uint8)  # a checker
    hole = np.zeros((80, 120), bool)
    hole[30:46, 40:60] = True
    blur = np.full((80, 120, 3), 120.0, np.float32)  # what a diffusion fill would give
    out = texture_fill(img, hole, ~hole, blur)
    # the hole gets checker texture (high contrast), close to what was there, not the flat grey
    assert out[hole].std() > 60
    assert np.abs(out[hole] - img[hole]).mean() < 40
    np.testing.assert_array_equal(out[~hole], blur[~hole])


def test_stabilize_face_rigid_residual_lets_eyes_move_within_a_bound():
    from pose2video.face import stabilize_face

    ref = make_reference_keypoints(H, W).astype(np.float64)
    ref_xy, ref_ok = ref[:, :2], ref[:, 2] >= 0.3
    fh = float(K.face_height(ref_xy[None])[0])
    kps = np.repeat(ref[None], 3, 0)
    lid, eye = K.FACE.start + 37, K.FACE.start + 36
    kps[1:, lid, 1] += 0.02 * fh  # a small blink follows the skeleton
    kps[1:, eye, :2] += 0.5 * fh  # an outlier is held within the bound
    out = stabilize_face(kps, ref_xy, ref_ok, sigma=0.0, rigid_residual=0.05)
    np.testing.assert_array_equal(out[0], ref)
    assert abs(out[1, lid, 1] - (ref_xy[lid, 1] + 0.02 * fh)) < 0.01 * fh
    assert np.linalg.norm(out[1:, eye, :2] - ref_xy[eye], axis=-1).max() <= 0.05 * fh + 0.5
    assert np.linalg.norm(out[1:, eye, :2] - ref_xy[eye], axis=-1).min() > 0.03 * fh


def test_still_background_keeps_the_background_beside_a_moving_head(real_photo):
    img, ref = real_photo
    r = WarpRenderer(WarpConfig(still_background=True, map_stride=1))
    state = r.prepare(img, ref)
    rig = state.rig
    assert rig.plate is not None and rig.person is not None
    kp = ref.keypoints.copy()
    kp[0, K.FACE, 0] += 6.0  # the head moves sideways
    kp[0, K.NOSE:K.RIGHT_EAR + 1, 0] += 6.0
    out = next(iter(r.render(state, ref.replace(keypoints=kp), progress=False)))[0]
    assert np.any(out != img)
    # background pixels near the head (in the person zone, far from the person) are the photo's
    import cv2

    far = cv2.dilate((rig.person > 0).astype(np.uint8), np.ones((25, 25), np.uint8)) == 0
    face = ref.xy[0, K.FACE]
    near = np.zeros(img.shape[:2], bool)
    (x0, y0), (x1, y1) = face.min(0).astype(int) - 40, face.max(0).astype(int) + 40
    near[max(y0, 0):y1, max(x0, 0):x1] = True
    sel = far & near & ~rig.outside
    assert sel.sum() > 50
    np.testing.assert_array_equal(out[sel], img[sel])


def test_head_zone_holds_face_and_neck_not_the_body():
    from pose2video.masks import head_zone

    ref = make_reference_pose(H, W)
    xy, ok = ref.keypoints[0, :, :2].astype(np.float64), ref.keypoints[0, :, 2] >= 0.3
    z = head_zone(xy, ok, (H, W))
    at = lambda j: bool(z[int(round(xy[j, 1])), int(round(xy[j, 0]))])  # noqa: E731
    assert at(K.NOSE) and all(at(j) for j in K.indices(K.FACE)[::7])
    assert not any(at(j) for j in (K.LEFT_HIP, K.RIGHT_HIP, K.LEFT_WRIST, K.RIGHT_WRIST))
    assert not head_zone(xy, np.zeros_like(ok), (H, W)).any()  # no face: nothing excluded


def test_fingers_are_in_the_hand_layer_alone(toy_rig):
    """Away from the wrist, a finger pixel has no weight in the upper-arm or forearm layer (it
    would travel with them and stay on the chest as a fragment when the hand moves)."""
    img, ref, rig = toy_rig
    xy = ref.keypoints[0, :, :2]
    names = {a.name: a for a in rig.arms}
    assert {"r_hand", "l_hand"} & set(names)  # the toy rig has hand layers to check
    for side in ("r", "l"):
        if f"{side}_hand" not in names:
            continue
        from pose2video.rig import SIDES

        root = SIDES[side][3]
        tips = [root + i for i in (8, 12, 16)]  # index, middle, ring tips
        for j in tips:
            x, y = int(round(xy[j, 0])), int(round(xy[j, 1]))
            assert names[f"{side}_hand"].image[y, x, 3] > 0
            assert names[f"{side}_upper"].image[y, x, 3] == 0
            assert names[f"{side}_fore"].image[y, x, 3] == 0


def test_texture_fill_prefers_the_pattern_to_a_flat_patch_of_its_mean_colour():
    from pose2video.masks import texture_fill

    yy, xx = np.mgrid[0:96, 0:200]
    # a checker (a patterned jacket) beside a flat area of its mean colour (a plain blouse)
    img = np.where(xx < 130, ((xx // 7 + yy // 7) % 2) * 200 + 20, 120)
    img = np.dstack([img] * 3).astype(np.uint8)
    hole = np.zeros((96, 200), bool)
    hole[8:88, 56:72] = True  # a long strip: where a forearm lay on the jacket
    blur = np.full((96, 200, 3), 120.0, np.float32)
    out = texture_fill(img, hole, ~hole, blur)
    assert out[hole].std() > 60  # the pattern, not the flat patch (nor the flat fallback)
    assert np.abs(out[hole] - img[hole]).mean() < 30  # in phase with the pattern around it
    np.testing.assert_array_equal(out[~hole], blur[~hole])


def _bare_arm_scene(arm_rgb):
    """A grey top, a hanging left arm of colour ``arm_rgb``, a ruffle of the top over its upper
    arm near the elbow; returns image, keypoints, ok, the arm's capsule (ruffle included) and the
    ruffle."""
    import cv2

    from pose2video.masks import arm_radius, capsules

    rng = np.random.default_rng(0)
    kp = make_reference_keypoints(H, W)
    ref, ok = kp[:, :2].astype(np.float64), kp[:, 2] >= 0.3
    img = np.full((H, W, 3), 245, np.uint8)
    quad = np.round(ref[[K.LEFT_SHOULDER, K.RIGHT_SHOULDER, K.RIGHT_HIP, K.LEFT_HIP]]).astype(
        np.int32)
    cv2.fillConvexPoly(img, quad, (110, 100, 115))
    r = arm_radius(ref)
    arm = capsules(ref, ok, "l", (H, W), 1.15 * r, 0.25 * r)
    img[arm] = arm_rgb
    e = ref[K.LEFT_ELBOW]
    ruffle = np.zeros((H, W), bool)
    ruffle[int(e[1] - 2.5 * r):int(e[1] - 0.5 * r), int(e[0] - 2.5 * r):int(e[0] + 0.2 * r)] = True
    ruffle &= arm
    img[ruffle] = (110, 100, 115)
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    return img, ref, ok, arm, ruffle, r


def test_a_ruffle_over_a_bare_upper_arm_does_not_travel_with_it():
    from pose2video.masks import arm_mask

    img, ref, ok, arm, ruffle, r = _bare_arm_scene((225, 175, 150))  # bare skin
    out = arm_mask(img, ref, ok, "l")
    assert ruffle.sum() > 20
    # the cloth over the bone leaves the arm (GrabCut alone kept 78 of its 80 pixels)
    assert (ruffle & out).sum() <= 0.2 * ruffle.sum()
    assert (arm & ~ruffle & out).sum() >= 0.95 * (arm & ~ruffle).sum()  # the skin stays


def test_a_sleeve_of_the_tops_own_cloth_stays_whole():
    from pose2video.masks import _drop_clothes

    img, ref, ok, arm, _, r = _bare_arm_scene((110, 100, 115))  # a sleeve: the top's colour
    np.testing.assert_array_equal(_drop_clothes(img, arm, ref, ok, "l", r, (H, W)), arm)


def test_cloth_over_an_arm_stays_in_front_and_the_arm_is_whole_when_it_moves():
    img, ref, ok, arm, ruffle, r = _bare_arm_scene((225, 175, 150))
    kp = make_reference_keypoints(H, W)
    rig = build_rig(img, PoseSequence(kp[None], fps=25.0, width=W, height=H), WarpConfig())
    assert rig.cloth
    cloth = np.any([lay.image[..., 3] > 0 for lay in rig.cloth], axis=0)
    assert (cloth & ruffle).sum() >= 0.8 * ruffle.sum() and not (cloth & ~ruffle).any()
    np.testing.assert_array_equal(warp_frame(rig, kp), img)  # the photo's pose: the photo
    moved = kp.copy()
    dx = 2.0 * r  # the left elbow, wrist and hand out to the side; shoulders and torso stay
    for j in [K.LEFT_ELBOW, K.LEFT_WRIST, *range(K.LEFT_HAND.start, K.LEFT_HAND.stop)]:
        moved[j, 0] += dx
    out = warp_frame(rig, moved).astype(int)
    # the ruffle stays with the body, in front of everything
    assert np.abs(out[ruffle] - img[ruffle].astype(int)).mean() < 12
    # where the arm behind it went, skin (the arm continued under the cloth), not the wall
    ys, xs = np.nonzero(ruffle)
    e, s = ref[K.LEFT_ELBOW], ref[K.LEFT_SHOULDER]
    shift = np.round(dx * (ys - s[1]) / (e[1] - s[1])).astype(int)  # the upper arm turns
    landed = out[ys, np.clip(xs + shift, 0, W - 1)]
    assert landed.mean(0)[2] < 200 and landed.mean(0)[0] > landed.mean(0)[2] + 30  # skin, not white


def test_hand_turn_against_the_forearm_is_limited():
    """A palm turned 90 degrees about the wrist while the forearm stays: the hand layer turns at
    most ``hand_twist`` degrees, about the hand root (the wrist lands where the skeleton says)."""
    from pose2video.rig import P, part_transforms

    ref = make_reference_keypoints(480, 640).astype(np.float64)
    ok = ref[:, 2] > 0.3
    tgt = ref[:, :2].copy()
    root = tgt[K.RIGHT_HAND][0].copy()
    c, s = np.cos(np.pi / 2), np.sin(np.pi / 2)
    tgt[K.RIGHT_HAND] = (tgt[K.RIGHT_HAND] - root) @ np.array([[c, -s], [s, c]]).T + root

    def turn_and_root(twist):
        m = part_transforms(ref[:, :2], ok, tgt, ok, hand_twist=twist)[P["r_hand"]]
        return np.degrees(np.arctan2(m[1, 0], m[0, 0])), m[:, :2] @ ref[K.RIGHT_HAND][0, :2] + m[:, 2]

    free, free_root = turn_and_root(None)
    limited, root_at = turn_and_root(45.0)
    assert abs(free - 90.0) < 1.0 and abs(limited - 45.0) < 1e-6
    assert np.allclose(root_at, free_root, atol=1e-6)
    still = part_transforms(ref[:, :2], ok, ref[:, :2], ok, hand_twist=45.0)
    assert np.array_equal(still[P["r_hand"]], np.array([[1.0, 0, 0], [0, 1.0, 0]]))


def test_lip_arc_passes_through_its_points_and_is_smooth():
    from pose2video.face import lip_arc

    ang = np.linspace(np.pi, 2 * np.pi, 5)  # an upper arc of a circle of radius 10
    pts = np.stack([10 * np.cos(ang), 10 * np.sin(ang)], -1)
    arc = lip_arc(pts, per_segment=8)
    for p in pts:  # through every key point
        assert np.linalg.norm(arc - p, axis=1).min() < 1e-9
    r = np.linalg.norm(arc, axis=1)
    # between the inner points it follows the circle (a polygon's chord is 0.76 inside); the end
    # segments, whose tangent is a reflection, stay nearer their chord (sharp mouth corners)
    assert np.abs(r[8:-8] - 10).max() < 0.1 and np.abs(r - 10).max() < 0.76
    line = lip_arc(np.stack([np.arange(5.0), 2 * np.arange(5.0)], -1))
    assert np.allclose(line[:, 1], 2 * line[:, 0])


def test_open_mouth_teeth_at_the_centre_dark_corners(toy_rig):
    """The upper teeth show under the lip's centre; at the mouth corners the cavity stays dark
    (the previous band of teeth followed the whole lip arc, corners included)."""
    img, ref, rig = toy_rig
    kp = ref.keypoints[0].copy()
    fh = float(K.face_height(kp[None, :, :2])[0])
    kp[K.INNER_LIPS.start + 5:K.INNER_LIPS.stop, 1] += 0.25 * fh  # lower inner lip drops
    out = warp_frame(rig, kp).astype(float).mean(-1)
    inner = kp[K.INNER_LIPS, :2]
    row = int(kp[K.UPPER_INNER_LIP, 1]) + 1  # just under the upper lip
    x_lo, x_hi = int(inner[:, 0].min()), int(inner[:, 0].max())
    centre = int(round(kp[K.UPPER_INNER_LIP, 0]))
    assert out[row, centre - 1:centre + 1].mean() > 180  # teeth
    assert max(out[row, x_lo], out[row, x_hi]) < 100  # cavity at both corners
