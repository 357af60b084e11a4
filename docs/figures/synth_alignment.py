"""Make docs/figures/synth_alignment.png: is a synthetic clip's motion aligned with its audio?

Top: mouth opening (csg.keypoints.mouth_opening) against the audio's log-RMS energy.
Bottom: wrist speed against audio onsets (csg.features.onset_frames) and the planned beats.
Prints the best-lag cross-correlations (positive lag = motion leads the audio), refined to sub-frame
precision by a parabola through the peak.

    .venv/bin/python docs/figures/synth_alignment.py [--seed 0] [--clip 0] [--out PATH]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def best_lag(x: np.ndarray, y: np.ndarray, max_lag: int) -> tuple[float, float]:
    """(lag, r): lag in frames maximising corr(x[t], y[t + lag]) (x leads y when > 0), sub-frame."""
    lags = np.arange(-max_lag, max_lag + 1)
    r = np.array([np.corrcoef(x[max(0, -L):len(x) - max(0, L)],
                              y[max(0, L):len(y) - max(0, -L)])[0, 1] for L in lags])
    k = int(np.argmax(r))
    frac = 0.0
    if 0 < k < len(r) - 1:
        den = r[k - 1] - 2 * r[k] + r[k + 1]
        frac = 0.5 * (r[k - 1] - r[k + 1]) / den if den else 0.0
    return float(lags[k] + frac), float(r[k])


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from csg import keypoints as K
    from csg.audio import fit_to_frames, num_frames_for
    from csg.data.synth import SynthConfig, num_speakers, speaker
    from csg.data.synth_audio import procedural_speech
    from csg.data.synth_motion import perform
    from csg.features import log_rms_envelope, onset_frames

    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clip", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).with_name("synth_alignment.png")))
    args = ap.parse_args()
    cfg = SynthConfig(clips=args.clip + 1, seconds=8.0, seed=args.seed, size_hw=(256, 256),
                      frames=False, espeak=False)
    sp = speaker(cfg, args.clip % num_speakers(cfg), False)
    g = np.random.default_rng([cfg.seed, 0, args.clip])  # the clip's generator, as make_clip
    wav, ev = procedural_speech(cfg.seconds, sp["voice"], g)
    fps = cfg.fps
    T = num_frames_for(len(wav), 16000, fps)
    wav = fit_to_frames(wav, T, 16000, fps)
    poses, ref = perform(ev, sp["shape"], sp["style"], T, fps, g)
    style = sp["style"]
    t = (np.arange(T) + 0.5) / fps
    mouth = K.mouth_opening(poses[..., :2])
    energy = log_rms_envelope(wav, 16000, fps, T)
    lag, r = best_lag(mouth, np.maximum(energy, energy.max() - 50), 6)
    onsets = onset_frames(wav, 16000, fps, T)
    wrists = poses[:, [K.LEFT_WRIST, K.RIGHT_WRIST], :2]
    speed = np.r_[0, np.linalg.norm(np.diff(wrists, axis=0), axis=-1).max(1) * fps]
    stress = np.zeros(T)
    stress[np.clip((ev.stress_times * fps).astype(int), 0, T - 1)] = 1
    from scipy.ndimage import gaussian_filter1d
    from scipy.signal import argrelmin

    lag_w, r_w = best_lag(speed, gaussian_filter1d(stress, 1.5), 12)
    # BAS (AIST++): kinematic beats = local minima of wrist speed while moving, vs audio onsets
    mins = [m for m in argrelmin(speed, order=2)[0] if speed[max(0, m - 5):m + 6].max() > 0.5 *
            speed.max()]
    sigma = 3
    bas = float(np.mean([np.exp(-np.min((m - onsets) ** 2) / (2 * sigma ** 2)) for m in mins]))
    fig, ax = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    ax[0].plot(t, mouth, color="C3", label="mouth opening")
    ax0 = ax[0].twinx()
    ax0.plot(t, energy, color="C0", alpha=0.6, label="log-RMS (dBFS)")
    ax0.set_ylim(energy.max() - 50, energy.max() + 3)
    ax[0].set_title(f"mouth vs energy: best lag {lag / fps * 1000:+.0f} ms (r={r:.2f}; mouth leads "
                    f"when > 0; rule lead {style.lead * 1000:.0f} ms)")
    ax[0].set_ylabel("mouth opening")
    ax0.set_ylabel("dBFS")
    ax[1].plot(t, speed / K.torso_size(ref[:, :2]), color="C2", label="wrist speed")
    for o in onsets:
        ax[1].axvline(t[o], color="C1", alpha=0.35, lw=1)
    for ts in ev.stress_times:
        ax[1].axvline(ts, color="k", ls="--", lw=1)
    ax[1].plot(t[mins], speed[mins] / K.torso_size(ref[:, :2]), "kv", ms=5)
    ax[1].set_title(f"fastest wrist speed (torso/s); onsets orange, stressed syllables dashed, "
                    f"kinematic beats v; speed-stress lag {lag_w / fps * 1000:+.0f} ms (r={r_w:.2f}), "
                    f"BAS {bas:.2f}", fontsize=9)
    ax[1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"clip {args.clip}: mouth-energy best lag {lag / fps * 1000:+.1f} ms (r={r:.3f}), rule lead "
          f"{style.lead * 1000:.1f} ms; wrist speed-stress best lag {lag_w / fps * 1000:+.1f} ms "
          f"(r={r_w:.3f}), BAS(sigma={sigma} frames)={bas:.3f} over {len(mins)} kinematic beats; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
