"""The co-speech performance rules: speech events -> 133-keypoint motion.

The same rules make the synthetic corpus and the rule-based stage-1 baseline
(:func:`rule_based_poses`). Times are seconds; frame ``i`` is sampled at its centre
``(i + 0.5) / fps``, the centre of the audio span ``frame_bounds`` gives it. The rules (and their
ranges, sampled per speaker by :func:`sample_style`) are written out in ``docs/data.md``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import keypoints as K
from .synth_audio import ENV_RATE, SpeechEvents
from .synth_body import (BodyShape, neutral_state, neutral_xy, pose_frames, rest_wrists,
                         sample_shape, shape_from_reference)


@dataclass(frozen=True)
class Style:
    """How one speaker performs (see docs/data.md for the ranges)."""

    lead: float = 0.07          # s, mouth leads the sound
    max_open: float = 0.14      # jaw opening at full articulation, head units
    gesture_prob: float = 0.7   # chance a stressed syllable gets a beat gesture
    both_prob: float = 0.15     # chance a gesture uses both hands
    amp: float = 0.75           # stroke amplitude, head units
    stroke: float = 0.14        # stroke duration, s
    nod_prob: float = 0.6       # chance a stressed syllable gets a head nod
    nod_amp: float = 0.07       # rad
    blink_rate: float = 0.3     # blinks per second
    breath_hz: float = 0.25
    breath_amp: float = 0.04    # head units of shoulder lift
    sway: float = 0.07          # head units of idle head sway
    trunk: float = 0.1          # head units of torso sway (the shoulders and everything above)
    occlusion_prob: float = 0.35


def sample_style(generator: np.random.Generator) -> Style:
    g = generator
    return Style(lead=float(g.uniform(0.04, 0.10)), max_open=float(g.uniform(0.10, 0.18)),
                 gesture_prob=float(g.uniform(0.5, 0.9)), both_prob=float(g.uniform(0.05, 0.3)),
                 amp=float(g.uniform(0.5, 1.0)), stroke=float(g.uniform(0.1, 0.18)),
                 nod_prob=float(g.uniform(0.4, 0.9)), nod_amp=float(g.uniform(0.04, 0.1)),
                 blink_rate=float(g.uniform(0.2, 0.45)), breath_hz=float(g.uniform(0.2, 0.33)),
                 breath_amp=float(g.uniform(0.03, 0.06)), sway=float(g.uniform(0.04, 0.10)),
                 trunk=float(g.uniform(0.04, 0.12)), occlusion_prob=0.35)


def frame_times(T: int, fps: float) -> np.ndarray:
    """(T,) seconds at the centre of each pose frame."""
    return (np.arange(T) + 0.5) / float(fps)


def _smooth_noise(g, t, hz, amp, dims=1):
    """Sum of three sinusoids near ``hz`` with random phases; (T,) or (T, dims), peak ~amp."""
    out = np.zeros((len(t), dims))
    for _ in range(3):
        f = g.uniform(0.5, 1.5, dims) * hz
        out += np.sin(2 * np.pi * f * t[:, None] + g.uniform(0, 2 * np.pi, dims)) / 3
    out *= amp
    return out[:, 0] if dims == 1 else out


def ease_path(key_t: np.ndarray, key_v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Cosine-eased interpolation between keyframes (zero velocity at each key).

    key_t: (K,) increasing seconds; key_v: (K, D); t: (T,). Returns (T, D); held outside the keys.
    """
    k = np.clip(np.searchsorted(key_t, t, side="right") - 1, 0, len(key_t) - 1)
    k1 = np.minimum(k + 1, len(key_t) - 1)
    span = np.maximum(key_t[k1] - key_t[k], 1e-9)
    u = np.clip((t - key_t[k]) / span, 0, 1)
    w = (0.5 - 0.5 * np.cos(np.pi * u))[:, None]
    return key_v[k] + w * (key_v[k1] - key_v[k])


def _hand_keys(b: BodyShape, st: Style, beats: list[float], hand: int, g, seconds: float):
    """Keyframes (times (K,), values (K, 3) = wrist x, y, curl) of one hand's beat gestures.

    Preparation 0.45-0.7 s from rest (0.15-0.3 s between strokes), stroke of ``st.stroke`` s ending
    on the beat (-40..+30 ms),
    hold 80-150 ms, retraction to rest 0.4-0.7 s after the last stroke when the next beat of this
    hand is more than 1.2 s away (so hands rest in pauses).
    """
    side = 1 if hand == 0 else -1
    rest = np.r_[rest_wrists(b)[hand], g.uniform(0.55, 0.8)]
    keys = [(0.0, rest)]
    active, last = False, 0.0
    for tb in beats:
        end = tb + g.uniform(-0.04, 0.03)
        start = end - st.stroke
        if active and end - last > 1.2 + st.stroke:
            ret = last + g.uniform(0.4, 0.7)
            keys.append((ret, rest))
            last, active = ret, False
        prep = start - (g.uniform(0.45, 0.7) if not active else g.uniform(0.15, 0.3))
        if prep <= keys[-1][0] + 0.04:
            continue
        if not active:
            keys.append((prep, rest))
        if b.rest == "front":  # gestures around the speaker's own rest posture
            centre = np.array([side * (b.rest_x + g.uniform(-0.15, 0.35)),
                               rest[1] - g.uniform(0.15, 0.65)])
        else:
            centre = np.array([side * g.uniform(0.55, 1.2), g.uniform(1.3, 2.1)])
        amp = st.amp * g.uniform(0.8, 1.2)
        curl = g.uniform(0.05, 0.35)
        keys.append((start, np.r_[centre + [side * 0.1 * amp, -amp], curl]))
        keys.append((end, np.r_[centre, curl]))
        last = end + g.uniform(0.08, 0.15)
        keys.append((last, np.r_[centre + g.normal(0, 0.03, 2), curl]))
        active = True
    if active:
        keys.append((last + g.uniform(0.4, 0.7), rest))
    keys.append((max(seconds, keys[-1][0]) + 1.0, rest))
    return np.array([k[0] for k in keys]), np.stack([k[1] for k in keys])


def _assign_beats(st: Style, b: BodyShape, stress: np.ndarray, g) -> list[list[float]]:
    dominant = 1 if b.handed > 0 else 0
    out: list[list[float]] = [[], []]
    for t in stress:
        if g.random() >= st.gesture_prob:
            continue
        r = g.random()
        hands = [0, 1] if r < st.both_prob else [dominant] if r < 0.8 else [1 - dominant]
        for h in hands:
            if not out[h] or t - out[h][-1] >= 0.4:
                out[h].append(float(t))
    return out


def perform_state(ev: SpeechEvents, b: BodyShape, st: Style, T: int, fps: float,
                  g: np.random.Generator) -> dict:
    """The per-frame body state (see :func:`csg.data.synth_body.pose_frames`) for T frames."""
    t = frame_times(T, fps)
    s = neutral_state(T)
    # mouth: articulation read ``lead`` seconds ahead (the mouth moves before the sound)
    m = np.arange(len(ev.articulation))
    art = np.interp((t + st.lead) * ENV_RATE - 0.5, m, ev.articulation, left=0, right=0)
    s["mouth"] = st.max_open * art
    speaking = np.zeros(T)
    for a, c in ev.phrases:
        speaking[(t >= a) & (t < c)] = 1.0
    # head: idle sway (larger while speaking) + nods on stressed syllables
    gain = 1 + 0.6 * speaking
    s["head"] = _smooth_noise(g, t, 0.4, st.sway, 2) * gain[:, None]
    s["yaw"] = _smooth_noise(g, t, 0.2, 0.15) * gain
    s["roll"] = _smooth_noise(g, t, 0.25, 0.05)
    pitch = _smooth_noise(g, t, 0.3, 0.04)
    for ts in ev.stress_times:
        if g.random() < st.nod_prob:
            pitch += st.nod_amp * g.uniform(0.7, 1.2) * np.exp(-0.5 * ((t - ts + 0.03) / 0.08) ** 2)
    s["pitch"] = pitch
    s["head"][:, 1] += 0.5 * pitch
    # blinks: Poisson, 100-200 ms
    blink = np.zeros(T)
    tb = g.exponential(1 / st.blink_rate)
    while tb < T / fps:
        dur = g.uniform(0.1, 0.2)
        u = (t - tb) / dur
        blink = np.maximum(blink, np.where((u > 0) & (u < 1), np.sin(np.pi * u.clip(0, 1)), 0))
        tb += 0.25 + g.exponential(1 / st.blink_rate)
    s["blink"] = blink
    # breathing: shoulders rise and fall, plus an inhalation just before each phrase
    lift = st.breath_amp * (0.5 + 0.5 * np.sin(2 * np.pi * st.breath_hz * t + g.uniform(0, 6.3)))
    for a, _ in ev.phrases:
        lift += st.breath_amp * np.exp(-0.5 * ((t - a + 0.3) / 0.15) ** 2)
    s["shoulder_lift"] = lift
    s["trunk"] = _smooth_noise(g, t, 0.3, st.trunk, 2) * [1, 0.4] * (1 + 0.5 * speaking)[:, None]
    # arms: beat gestures with preparation / stroke / hold / retraction; idle drift
    beats = _assign_beats(st, b, ev.stress_times, g)
    wrists, curl = np.zeros((T, 2, 2)), np.zeros((T, 2))
    for h in (0, 1):
        kt, kv = _hand_keys(b, st, beats[h], h, g, T / fps)
        path = ease_path(kt, kv, t)
        wrists[:, h] = path[:, :2] + _smooth_noise(g, t, 0.25, 0.04, 2)
        curl[:, h] = path[:, 2]
    s["wrists"], s["curl"] = wrists, curl.clip(0, 1)
    s["beats"] = beats
    return s


def _scores(xy: np.ndarray, b: BodyShape, st: Style, fps: float, g, noisy: bool) -> np.ndarray:
    """(T, 133) confidences: 0.9-1.0, 0.05-0.3 off-canvas, hand occlusion stretches < 0.5."""
    T = xy.shape[0]
    base = g.uniform(0.9, 1.0, K.NUM_KEYPOINTS)
    sc = np.clip(base + (g.normal(0, 0.015, (T, K.NUM_KEYPOINTS)) if noisy else 0), 0.85, 1.0)
    off = ((xy[..., 0] < 0) | (xy[..., 0] >= b.width) | (xy[..., 1] < 0)
           | (xy[..., 1] >= b.height))
    sc = np.where(off, g.uniform(0.05, 0.3, sc.shape), sc)
    if noisy:
        for hand in (K.LEFT_HAND, K.RIGHT_HAND):
            if g.random() < st.occlusion_prob:
                a = int(g.integers(0, T))
                n = int(g.uniform(0.5, 2.0) * fps)
                sc[a:a + n, hand] = g.uniform(0.1, 0.45, sc[a:a + n, hand].shape)
    return sc


def perform(ev: SpeechEvents, b: BodyShape, st: Style, T: int, fps: float,
            generator: np.random.Generator, *, noisy: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Speech events -> ``(poses (T,133,3), ref (133,3))`` float32 on ``b``'s canvas.

    ``ref`` is the clean (noise-free) first frame: the speaker in the rest posture with the head
    pose of t = 0, as a photo of the person would be (inference takes the photo's skeleton as
    frame 0). ``noisy`` adds detector-like jitter (0.4 % of a head unit, half on the face) and
    occluded hand stretches.
    """
    g = generator
    st_ = perform_state(ev, b, st, T, fps, g)
    xy = pose_frames(b, st_)
    clean0 = xy[0].copy()
    if noisy:
        sig = np.full(K.NUM_KEYPOINTS, 0.004 * b.s)
        sig[K.FACE] *= 0.5
        xy = xy + g.normal(0, 1, xy.shape) * sig[None, :, None]
    poses = np.concatenate([xy, _scores(xy, b, st, fps, g, noisy)[..., None]], -1)
    rxy = clean0[None]
    ref = np.concatenate([rxy, _scores(rxy, b, st, fps, g, False)[..., None]], -1)[0]
    return poses.astype(np.float32), ref.astype(np.float32)


def rule_based_poses(wav: np.ndarray, sr: int, fps: float, ref: np.ndarray, *,
                     generator: np.random.Generator, style: Style | None = None) -> np.ndarray:
    """The rule-based stage-1 baseline: the corpus rules driven by any audio's energy and onsets.

    wav: (N,) mono; ref: (133, 3) reference skeleton (pixels + score). Returns (T, 133, 3) float32
    with ``T = num_frames_for(N, sr, fps)``: ref plus the displacements the rules give a body of the
    same neck position and torso size (so the identity of ``ref`` is kept); scores are ref's.
    """
    from ..audio import num_frames_for
    from .synth_audio import events_from_audio

    ref = np.asarray(ref, np.float32)
    T = num_frames_for(len(wav), sr, fps)
    ev = events_from_audio(wav, sr)
    b = shape_from_reference(ref[:, :2].astype(np.float64), (1 << 30, 1 << 30))
    st = style or sample_style(generator)
    xy, _ = perform(ev, b, st, T, fps, generator, noisy=False)
    delta = xy[..., :2] - neutral_xy(b)[None]
    out = np.repeat(ref[None], T, 0)
    out[..., :2] += delta
    return out.astype(np.float32)


def random_speaker(generator: np.random.Generator, size_hw: tuple[int, int]):
    """(BodyShape, Style) of a new synthetic speaker."""
    return sample_shape(generator, size_hw), sample_style(generator)


IDLE_KEYS = ("head", "yaw", "roll", "pitch", "trunk", "shoulder_lift")
"""The state keys of :func:`perform_state` that :func:`idle_motion` keeps (head, torso, breathing)."""


def idle_motion(wav: np.ndarray, sr: int, fps: float, T: int, ref_xy: np.ndarray, *,
                generator: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    """The corpus's head and torso process for any audio, as a displacement to add to a sequence.

    Head sway, yaw, roll and pitch (nods on stressed syllables included), torso sway and breathing
    exactly as :func:`perform_state` makes them for the corpus (one speaker style drawn from
    ``generator`` by :func:`sample_style`; speech events read off ``wav`` by
    ``events_from_audio``), on the mean-proportion body fitted to ``ref_xy`` (133, 2) pixels, with
    the mouth closed, the eyes open and the arms at rest (they move only with the shoulders).
    Returns (T, 133, 2) float64 pixels, ``gain`` x the corpus amplitudes, **zero at frame 0** (a
    sequence that starts at its reference still does). The hips and legs do not move.
    """
    from .synth_audio import events_from_audio

    ref_xy = np.asarray(ref_xy, np.float64)
    if T < 1:
        return np.zeros((0, K.NUM_KEYPOINTS, 2))
    ev = events_from_audio(np.asarray(wav, np.float32), sr)
    b = shape_from_reference(ref_xy, (1 << 30, 1 << 30))
    st = sample_style(generator)
    full = perform_state(ev, b, st, T, fps, generator)
    s = neutral_state(T)
    for k in IDLE_KEYS:
        s[k] = np.asarray(full[k], np.float64) * float(gain)
    xy = pose_frames(b, s)
    return xy - xy[:1]
