"""bench/mouth_calibration.py: its pure pieces on made-up faces and rows (no MediaPipe, no ../shared)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from csg import keypoints as K
from tests.helpers import make_reference_keypoints

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import mouth_calibration as mc  # noqa: E402


def test_body_under_face_keeps_the_face_and_hangs_a_body_below_it():
    face = make_reference_keypoints()[K.FACE, :2].astype(np.float64)
    ref, (H, W) = mc.body_under_face(face, (200, 300))
    assert (H, W) == (mc.PAD * 200, mc.PAD * 300)
    np.testing.assert_allclose(ref[K.FACE, :2], face + [300, 0], atol=1e-3)  # moved by one width
    assert np.allclose(ref[K.NOSE, :2], ref[K.FACE.start + 30, :2])
    chin_y = ref[K.FACE.start + 8, 1]
    sh = ref[[K.LEFT_SHOULDER, K.RIGHT_SHOULDER]]
    assert (sh[:, 1] > chin_y).all() and (sh[:, 2] > 0.3).all()             # shoulders below the chin
    assert ref[K.LEFT_SHOULDER, 0] != ref[K.RIGHT_SHOULDER, 0]
    assert (ref[K.LEFT_HIP:K.FEET.stop, 2] == 0).all()                       # a half-body photo
    # the body's proportions follow the face: twice the face, twice the shoulder width
    big, _ = mc.body_under_face(face * 2.0, (200, 300))
    sw = lambda r: np.linalg.norm(r[K.LEFT_SHOULDER, :2] - r[K.RIGHT_SHOULDER, :2])  # noqa: E731
    np.testing.assert_allclose(sw(big), 2 * sw(ref), rtol=1e-5)


def test_lip_stats_known_answers():
    xy = make_reference_keypoints()[:, :2].astype(np.float64)
    fh = float(K.face_height(xy))
    f = K.FACE.start
    up, lo = f + np.array([61, 62, 63]), f + np.array([67, 66, 65])
    xy[lo] = xy[up] + [0.0, 0.05 * fh]                       # inner gap 0.05 face heights
    xy[f + np.array([50, 51, 52])] = xy[up] - [0.0, 0.04 * fh]  # upper lip 0.04 thick
    xy[f + np.array([58, 57, 56])] = xy[lo] + [0.0, 0.06 * fh]  # lower lip 0.06 thick
    xy[f + 48], xy[f + 54] = xy[f + 62] + [-0.2 * fh, 0], xy[f + 62] + [0.2 * fh, 0]
    st = mc.lip_stats(xy)
    np.testing.assert_allclose([st["opening"], st["lips"], st["width"]], [0.05, 0.10, 0.40],
                               atol=1e-9)


def test_speech_stats_gain_free_and_louder_bursts_widen_the_range():
    sr = 16000
    t = np.arange(2 * sr) / sr
    tone = np.sin(2 * np.pi * 220 * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    env = np.where((t % 0.4) < 0.2, 1.0, 0.1)                  # 20 dB bursts, 2.5 per second
    a = mc.speech_stats(tone * env, sr)
    b = mc.speech_stats(0.1 * tone * env, sr)                  # -20 dB gain: same statistics
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a["loud_range_db"], 20.0, atol=0.5)
    assert a["tilt_db"] < -20 and 150 < a["centroid_hz"] < 300  # a 220 Hz tone + faint noise
    deep = mc.speech_stats(tone * np.where((t % 0.4) < 0.2, 1.0, 0.01), sr)
    assert deep["loud_range_db"] > a["loud_range_db"] + 15


def test_fit_report_finds_an_exact_law_and_counts_the_shipped_rule():
    g = np.random.default_rng(0)
    rows = {}
    for i in range(12):
        o = float(g.uniform(0.01, 0.15))
        real = float(np.exp(-2.0) * o ** 0.5)
        rows[f"c{i}"] = {"real": {"mean": real},
                         "ref": {"opening": o, "width": float(g.uniform(0.3, 0.4)),
                                 "lips": float(g.uniform(0.1, 0.15))},
                         "gen": {"mean": float(g.uniform(0.05, 0.2)), "canon": real / 0.3},
                         "speech": {"db_std": float(g.uniform(6, 10))}}
    rep = mc.fit_report(rows)
    line = next(x for x in rep.splitlines() if x.startswith("| log ref opening |"))
    assert "| 0.000 | 12/12 | -2 +0.5 |" in line                # exact law: no error, 12 of 12
    const = next(x for x in rep.splitlines() if x.startswith("| constant |"))
    assert float(const.split("|")[2]) > 0.1
    canon = next(x for x in rep.splitlines() if x.startswith("| c x canonical level"))
    assert "c = real / canonical = 0.3000 | 0.000 | 12/12 |" in canon  # a proportional law
    assert "shipped rule (0.49 x network level)" in rep
