"""Stage-1 maths: coordinates, noise schedule and DDIM (known answers vs diffusers), PAR, windows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from csg.diffusion import schedule as D
from audio2pose.normalize import denormalize, normalize, reference_anchors
from audio2pose.par import ParConfig, gaussian_smooth_time, par_weights, pose_loss
from csg.diffusion.windows import window_spans
from csg import keypoints as K
from tests.helpers import make_moving_pose, make_reference_keypoints


# --- normalisation -------------------------------------------------------------------------------
def test_normalize_round_trip_to_1e4_px():
    poses = make_moving_pose(16, height=480, width=640, seed=1).keypoints
    ref = make_reference_keypoints(480, 640)
    back = denormalize(normalize(poses[..., :2], ref), ref)
    assert np.abs(back - poses[..., :2]).max() < 1e-4


def test_normalize_is_local_and_reference_scaled():
    ref = make_reference_keypoints(480, 640)
    z = normalize(ref[:, :2], ref)
    a = reference_anchors(ref)
    # torso centre -> origin; shoulders one torso-scale unit apart in body units
    assert np.allclose(z[[K.LEFT_SHOULDER, K.RIGHT_SHOULDER, K.LEFT_HIP, K.RIGHT_HIP]].mean(0), 0,
                       atol=1e-6)
    # moving the whole body moves body coordinates but not the face / hands (they are local)
    moved = ref[:, :2] + np.array([30.0, -12.0])
    zm = normalize(moved, ref)
    assert np.allclose(zm[K.FACE], z[K.FACE], atol=1e-5)
    assert np.allclose(zm[K.HANDS], z[K.HANDS], atol=1e-5)
    assert np.allclose(zm[K.BODY] - z[K.BODY], np.array([30.0, -12.0]) / a.torso, atol=1e-5)
    # hand points are relative to their own wrist
    assert np.allclose(z[K.LEFT_HAND_ROOT], (ref[K.LEFT_HAND_ROOT, :2] - ref[K.LEFT_WRIST, :2])
                       / a.hand, atol=1e-6)


def test_reference_without_hips_uses_shoulders_and_without_shoulders_raises():
    ref = make_reference_keypoints(480, 640)
    ref[[K.LEFT_HIP, K.RIGHT_HIP], 2] = 0.0
    a = reference_anchors(ref)
    sw = np.linalg.norm(ref[K.LEFT_SHOULDER, :2] - ref[K.RIGHT_SHOULDER, :2])
    assert a.torso == pytest.approx(sw)
    ref[K.LEFT_SHOULDER, 2] = 0.0
    with pytest.raises(ValueError, match="shoulders"):
        reference_anchors(ref)


# --- schedule and DDIM ------------------------------------------------------------------------
# --- the reference hands' frame and missing hips -------------------------------------------------
def _rel_ref(turn_left=0.0, turn_right=0.0):
    from audio2pose.normalize import turn_hands

    ref = make_reference_keypoints(480, 640)
    return ref, turn_hands(normalize(ref[:, :2], ref), [turn_left, turn_right])


def test_hand_directions_known_answer_and_turn_round_trip():
    from audio2pose.normalize import hand_directions, turn_hands, unturn_hands

    ref, rel = _rel_ref()
    assert np.allclose(hand_directions(rel), [90.0, 90.0], atol=1e-4)  # fingers straight down
    turned = turn_hands(rel, [-180.0, 45.0])  # left: straight up; right: down-left
    assert np.allclose(hand_directions(turned), [-90.0, 135.0], atol=1e-4)
    assert np.allclose(turned[K.BODY], rel[K.BODY]) and np.allclose(turned[K.FACE], rel[K.FACE])
    shift = np.array([[0.3, -0.2], [0.0, 0.1]])
    back = unturn_hands(turn_hands(rel, [-180.0, 45.0], shift), [-180.0, 45.0], shift)
    assert np.allclose(back, rel, atol=1e-5)
    # the shift moves the hand root onto the wrist before turning
    moved = turn_hands(rel + 0.0, [0.0, 0.0], shift)
    assert np.allclose(moved[K.LEFT_HAND] - rel[K.LEFT_HAND], -shift[0], atol=1e-6)


def test_hand_turns_inside_outside_wrap_and_unreliable():
    from audio2pose.normalize import hand_turns

    ref, rel = _rel_ref()  # both hands at 90 degrees
    assert np.allclose(hand_turns(rel, ref[:, 2], [60, 120, 80, 100]), 0)
    # outside: to the nearer edge, the short way round
    assert np.allclose(hand_turns(rel, ref[:, 2], [100, 170, 10, 80]), [10.0, -10.0])
    # a range across +-180 (170 -> -170 counter-clockwise) and a hand pointing at 180
    ref2, rel2 = _rel_ref(90.0, -70.0)  # left 180, right 20
    assert np.allclose(hand_turns(rel2, ref2[:, 2], [170, -170, 0, 30]), [0.0, 0.0])
    assert np.allclose(hand_turns(rel2, ref2[:, 2], [-160, -100, 30, 40]), [20.0, 10.0])
    low = ref[:, 2].copy()
    low[K.LEFT_HAND.start] = 0.1  # unreliable hand root: left untouched
    assert np.allclose(hand_turns(rel, low, [100, 170, 10, 80]), [0.0, -10.0])


def test_direction_range_on_the_circle():
    from audio2pose.normalize import direction_range

    d = np.r_[np.linspace(150, 180, 31), np.linspace(-179, -150, 30)]
    lo, hi = direction_range(d, q=0)
    assert np.isclose(lo, 150) and np.isclose(hi, -150)
    lo, hi = direction_range(np.linspace(10, 90, 81), q=10)
    assert np.isclose(lo, 18) and np.isclose(hi, 82)
    with pytest.raises(ValueError):
        direction_range(np.array([np.nan]))


def test_complete_hips_known_answer_and_anchors():
    from audio2pose.normalize import complete_hips, reference_frame

    ref = make_reference_keypoints(480, 640)  # shoulders 96 px apart at y = 105.6
    assert np.array_equal(complete_hips(ref, (1.5, 0.5)), ref)  # reliable hips: unchanged
    upper = ref.copy()
    upper[[K.LEFT_HIP, K.RIGHT_HIP], 2] = 0.0
    done = complete_hips(upper, (1.5, 0.5))
    assert np.allclose(done[K.LEFT_HIP], [320 + 24, 105.6 + 144, 1.0], atol=1e-3)
    assert np.allclose(done[K.RIGHT_HIP], [320 - 24, 105.6 + 144, 1.0], atol=1e-3)
    assert np.array_equal(np.delete(done, [K.LEFT_HIP, K.RIGHT_HIP], 0),
                          np.delete(upper, [K.LEFT_HIP, K.RIGHT_HIP], 0))
    one = ref.copy()
    one[K.RIGHT_HIP, 2] = 0.0  # a hip the photo shows is kept; only the other is placed
    half = complete_hips(one, (1.5, 0.5))
    assert np.array_equal(half[K.LEFT_HIP], ref[K.LEFT_HIP])
    assert np.allclose(half[K.RIGHT_HIP], [320 - 24, 105.6 + 144, 1.0], atol=1e-3)
    a = reference_anchors(done)  # the torso anchors again, not the shoulder-only fallback
    assert np.isclose(a.torso, 144.0, atol=1e-3)
    # reference_frame gives back the hips of references built that way, and the hands' range
    frame = reference_frame([complete_hips(upper, (1.4, 0.6)), complete_hips(upper, (1.6, 0.6))])
    assert np.allclose(frame["hips"], (1.5, 0.6), atol=1e-3)
    assert np.allclose(frame["hand_range"], (90, 90, 90, 90), atol=1e-3)
    assert "hips" not in reference_frame([upper])  # no reference with hips: the hands only
    nothing = upper.copy()
    nothing[K.HANDS, 2] = 0.0
    with pytest.raises(ValueError):
        reference_frame([nothing])


def test_pipeline_network_reference_is_undone_on_the_output():
    """Turning the photo's hands for the network and back leaves the photo's hand: the
    reference frame's own output equals the reference (out = ref_hand + R(-a) delta, delta = 0)."""
    from dataclasses import replace

    from audio2pose.normalize import hand_directions, unturn_hands
    from csg.pose import PoseSequence
    from tests.test_audio2pose_model import speech, tiny_audio2pose

    pipe = tiny_audio2pose()
    ref, rel_up = _rel_ref(-180.0, 0.0)  # left hand pointing up: outside the range below
    from audio2pose.normalize import denormalize

    photo = ref.copy()
    photo[:, :2] = denormalize(rel_up, ref)
    photo[[K.LEFT_HIP, K.RIGHT_HIP], 2] = 0.0  # an upper-body photo
    pipe.sampling = replace(pipe.sampling, hand_range=(60, 120, 60, 120), hips=(1.5, 0.6))
    net_kp, rel, turns, shifts = pipe.network_reference(photo)
    # -90 is 150 degrees from both edges; the tie goes to the lower edge
    assert np.allclose(turns, [150.0, 0.0], atol=1e-3) and np.allclose(shifts, 0, atol=1e-6)
    assert np.allclose(hand_directions(rel), [60.0, 90.0], atol=1e-3)
    assert (net_kp[[K.LEFT_HIP, K.RIGHT_HIP], 2] == 1).all()
    back = denormalize(unturn_hands(rel, turns, shifts), net_kp)
    assert np.allclose(back[K.HANDS], photo[K.HANDS, :2], atol=1e-3)
    out = pipe(speech(0.5), 16000, PoseSequence(photo[None], width=640, height=480), progress=False)
    assert np.array_equal(out.keypoints[0], photo)  # frame 0 is the photo
    assert (out.keypoints[:, [K.LEFT_HIP, K.RIGHT_HIP], 2] == 0).all()  # completed hips stay hidden
    assert out.meta["hand_frame"]["turn"] == [150.0, 0.0] and out.meta["hips_completed"]
    pipe.sampling = replace(pipe.sampling, hand_range=None, hips=None)  # off: identities
    net_kp, rel, turns, shifts = pipe.network_reference(photo)
    assert np.array_equal(net_kp, photo) and not turns.any() and not shifts.any()


def test_cosine_schedule_matches_diffusers():
    from diffusers import DDIMScheduler

    s = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    assert torch.allclose(D.cosine_alphas_cumprod(1000).float(), s.alphas_cumprod, atol=0, rtol=0)


@pytest.mark.parametrize("prediction_type", ["sample", "v_prediction"])
@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_ddim_step_equals_diffusers(prediction_type, eta):
    from diffusers import DDIMScheduler

    steps = 25
    s = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                      prediction_type=prediction_type, clip_sample=False, set_alpha_to_one=True,
                      timestep_spacing="trailing")
    s.set_timesteps(steps)
    ours = D.ddim_timesteps(1000, steps)
    assert ours == s.timesteps.tolist()
    ac = D.cosine_alphas_cumprod(1000)
    g = torch.Generator().manual_seed(0)
    for i in (0, 7, steps - 1):
        t = ours[i]
        t_prev = ours[i + 1] if i + 1 < steps else -1
        x = torch.randn(2, 8, 133, 2, generator=g)
        out = torch.randn(2, 8, 133, 2, generator=g)
        noise = torch.randn(2, 8, 133, 2, generator=g)
        ref = s.step(out, t, x, eta=eta, variance_noise=noise if eta > 0 else None).prev_sample
        mine, _ = D.ddim_step(out, x, t, t_prev, ac, prediction_type, eta=eta, noise=noise)
        assert torch.allclose(mine, ref, atol=2e-5), (i, (mine - ref).abs().max())


def test_x0_eps_v_conversions_invert_q_sample():
    ac = D.cosine_alphas_cumprod(1000)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    t = torch.tensor([0, 500, 990])
    xt = D.q_sample(x0, t, eps, ac)
    v = D.training_target(x0, eps, t, ac, "v_prediction")
    for pred, kind in ((x0, "sample"), (v, "v_prediction")):
        x0r, epsr = D.to_x0_eps(pred, xt, t, ac, kind)
        assert torch.allclose(x0r, x0, atol=1e-4) and torch.allclose(epsr, eps, atol=1e-3)


def test_cfg_combine_known_answer():
    c, u = torch.tensor([3.0]), torch.tensor([1.0])
    assert D.cfg_combine(c, u, 1.0).item() == 3.0
    assert D.cfg_combine(c, u, 2.0).item() == 5.0
    assert D.cfg_combine(c, u, 0.0).item() == 1.0


# --- PAR -----------------------------------------------------------------------------------------
def test_par_weights_known_answer():
    s = torch.full((1, 5, K.NUM_KEYPOINTS), 0.9)
    s[0, 2, K.LEFT_SHOULDER] = 0.5  # unreliable body point
    s[0, 2, K.NOSE_TIP] = 0.1  # unreliable face point
    cfg = ParConfig(sigma=0.0)
    w = par_weights(s, cfg)
    assert w[0, 0, K.LEFT_SHOULDER] == pytest.approx(2.0)  # ω2
    assert w[0, 0, K.NOSE_TIP] == pytest.approx(10 * 0.9)  # ω1 · c
    assert w[0, 0, K.RIGHT_HAND_ROOT] == pytest.approx(9.0)
    assert w[0, 2, K.LEFT_SHOULDER] == 0 and w[0, 2, K.NOSE_TIP] == 0
    off = par_weights(s, ParConfig(enabled=False))
    assert set(off.unique().tolist()) == {0.0, 1.0} and off[0, 2, K.LEFT_SHOULDER] == 0


def test_par_smoothing_is_temporal_gaussian():
    c = torch.zeros(1, 9, 1)
    c[0, 4, 0] = 1.0
    sm = gaussian_smooth_time(c, 1.0)[0, :, 0]
    x = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-0.5 * x ** 2)
    assert torch.allclose(sm[1:8], k / k.sum(), atol=1e-6)
    assert torch.allclose(gaussian_smooth_time(torch.ones(1, 6, 3), 2.0), torch.ones(1, 6, 3))


def test_pose_loss_weights_regions_and_ignores_known_frames():
    B, T = 1, 4
    pred = torch.zeros(B, T, 133, 2)
    target = torch.zeros(B, T, 133, 2)
    target[:, :, K.NOSE_TIP] = 1.0  # error only on one face point
    scores = torch.ones(B, T, 133)
    logits = torch.full((B, T, 133), 20.0)
    loss_on, logs = pose_loss(pred, target, logits, scores, ParConfig(sigma=0), score_weight=0)
    loss_off, _ = pose_loss(pred, target, logits, scores, ParConfig(enabled=False),
                            score_weight=0)
    assert loss_on.item() == pytest.approx(10 * loss_off.item(), rel=1e-5)
    assert logs["face"] > 0 and logs["body"] == 0 and logs["hands"] == 0
    fm = torch.tensor([[False, False, False, False]])
    loss_known, _ = pose_loss(pred, target, logits, scores, ParConfig(), frame_mask=fm,
                              score_weight=0)
    assert loss_known.item() == 0


# --- windows -----------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 16, 17, 40, 100, 1501])
def test_window_spans_cover_with_overlap(T):
    spans = window_spans(T, 16, 4)
    assert spans[0][0] == 0 and spans[-1][1] == T
    for (a0, b0), (a1, b1) in zip(spans, spans[1:]):
        assert b0 - a1 == 4 and b1 - a1 > 4 and b0 - a0 == 16
    assert all(b - a <= 16 for a, b in spans)


def test_savgol_smooth_reduces_jitter_and_keeps_lines():
    from audio2pose.pipeline import savgol_smooth

    g = np.random.default_rng(0)
    line = np.linspace(0, 50, 40)[:, None, None] * np.ones((1, 133, 2))
    assert np.allclose(savgol_smooth(line, 7), line, atol=1e-3)  # order-2 fit keeps a ramp
    noisy = line + g.normal(0, 1, line.shape)
    acc = lambda x: np.abs(np.diff(x, 2, axis=0)).mean()  # noqa: E731
    assert acc(savgol_smooth(noisy, 7)) < 0.3 * acc(noisy)
    assert np.array_equal(savgol_smooth(noisy[:3], 7), noisy[:3].astype(np.float32))
    assert np.array_equal(savgol_smooth(noisy, 0), noisy.astype(np.float32))


def test_editor_regenerate_uses_the_network_reference(monkeypatch):
    """The browser editor's stage-1 regeneration gives the network the same reference as
    `csg pose generate` (hips completed, hands turned) and keeps locked frames byte-exact."""
    from dataclasses import replace

    import audio2pose.sampling as S
    from audio2pose.normalize import denormalize, hand_directions
    from pipeline.editor.regen import clip_features, regenerate
    from tests.test_audio2pose_model import speech, tiny_audio2pose

    pipe = tiny_audio2pose()
    pipe.sampling = replace(pipe.sampling, hand_range=(60, 120, 60, 120), hips=(1.5, 0.6))
    ref, rel_up = _rel_ref(-180.0, 0.0)
    photo = ref.copy()
    photo[:, :2] = denormalize(rel_up, ref)
    photo[[K.LEFT_HIP, K.RIGHT_HIP], 2] = 0.0
    T = 20
    feats = clip_features(pipe, speech(T / 25.0), T)
    keypoints = np.repeat(photo[None], T, 0)
    locked = np.zeros(T, bool)
    locked[[3, 4, 15]] = True
    seen = []
    real_sample = S.sample
    monkeypatch.setattr(S, "sample", lambda m, a, ref, **kw: seen.append(ref) or
                        real_sample(m, a, ref, **kw))
    out = regenerate(pipe, feats, photo, keypoints, 2, 18, locked, seed=1)
    net_ref = seen[0][0].numpy()
    assert np.allclose(hand_directions(net_ref)[0], 60.0, atol=1e-3)  # turned, as generate does
    assert (net_ref[[K.LEFT_HIP, K.RIGHT_HIP]] != 0).any()  # completed hips are given
    assert out.shape == (16, 133, 3) and np.isfinite(out[..., :2]).all()
    assert np.array_equal(out[[1, 2, 13]], keypoints[[3, 4, 15]])  # locked: same bytes
    assert (out[:, [K.LEFT_HIP, K.RIGHT_HIP], 2] == 0).all()  # completed hips stay hidden
