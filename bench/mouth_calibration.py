"""Stage 1's mouth against real talking faces (permissive ``../shared/data/video/face``, issue #14).

    python bench/mouth_calibration.py [--faces ../shared/data/video/face] [--out runs/mouth_cal]
        [--checkpoint student] [--seeds 0 1 2] [--threads 1] [--json rows.json]
    python bench/mouth_calibration.py --rows rows.json          # the fit only
    python bench/mouth_calibration.py --speech A.mp4 ... --canon-c C   # canonical level of speech

For every face clip: its real per-frame skeleton (MediaPipe through :class:`csg.extract.PoseExtractor`
in video mode, the extractor ``csg`` uses; shoulders not required: most clips are tight face crops),
its frame 0 as the reference photo and its own speech. The crops have no shoulders to anchor
stage 1, so the reference is the real frame-0 face hung on the synthetic corpus's neutral upper
body (:func:`body_under_face`). Stage 1 (the checkpoint's sampling with ``mouth_scale`` 1: the
network's own mouth) runs on that reference and the speech for each seed, and again on
:func:`canonical_reference` (a photo of the corpus's own kind: the speech's level without the
photo's influence). Per clip: the real mean
inner-lip opening / face height (:func:`csg.keypoints.mouth_opening`), the generated one, and the
input-side quantities a mouth rule could read (the reference's own lip geometry, the speech's
loudness and spectral statistics). Then :func:`fit_report`: log(real mean opening) regressed on
each candidate, leave-one-out over the clips. The fit with the reference's opening is
``audio2pose.postprocess.MOUTH_LEVEL``. Calibration happens here, on data that may be used for
training; the validation clips are only measured (``bench/measure_motion.py --mouth-level``).

Extraction is cached in ``OUT/<clip>.npz``; delete it to redo. Skips (exit 0) without the folder.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from csg import keypoints as K

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FACES = ROOT.parent / "shared" / "data" / "video" / "face"
PAD = 3  # the stage-1 canvas: PAD x the frame's width and height, the frame at the top centre


def face_clips(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".mp4", ".mpg", ".avi", ".mov"))


def body_under_face(face68: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, tuple]:
    """A (133, 3) reference for stage 1 from a real face alone: the synthetic corpus's neutral
    upper body (:func:`csg.data.synth_body.neutral_xy`, mean proportions, the "front" rest posture
    with its default wrists) scaled so that its face height is the real face's and hung under it,
    with the real 68 face points (nose and eye centres from them). Canvas: PAD x the frame's
    height and width, the frame's area at the top centre (the face clips are crops without
    shoulders). Upper body and face score 0.95; hips and legs 0 (a half-body photo).
    Returns (ref, (H, W))."""
    from dataclasses import replace

    from csg.data.synth_body import BodyShape, neutral_xy

    h, w = size_hw
    H, W = PAD * h, PAD * w
    face = np.asarray(face68, np.float64) + np.array([w, 0.0])
    canon = BodyShape(H, W, 1.0, (0.0, 0.0), rest="front")
    unit = neutral_xy(canon)
    s = float(K.face_height(_with_face(unit, face)) / K.face_height(unit))  # px per head unit
    off = unit[K.FACE].mean(0)                      # face centre relative to the neck, head units
    neck = face.mean(0) - s * off
    xy = neutral_xy(replace(canon, s=s, neck=(float(neck[0]), float(neck[1]))))
    xy = _with_face(xy, face)
    ref = np.concatenate([xy, np.full((K.NUM_KEYPOINTS, 1), 0.95)], 1).astype(np.float32)
    ref[K.LEFT_HIP:K.FEET.stop, 2] = 0.0
    return ref, (H, W)


def canonical_reference():
    """The corpus's own kind of photo: :func:`csg.data.synth_body.neutral_xy` of the mean
    proportions in the "front" rest posture with the template face (mouth closed), on a 512 x 512
    canvas, head unit 11 % of the height, neck at 30 %; upper body and face score 0.95, hips and
    legs 0. A T=1 :class:`csg.pose.PoseSequence`."""
    from csg.data.synth_body import BodyShape, neutral_xy
    from csg.pose import PoseSequence

    H = W = 512
    xy = neutral_xy(BodyShape(H, W, 0.11 * H, (W / 2, 0.3 * H), rest="front"))
    ref = np.concatenate([xy, np.full((K.NUM_KEYPOINTS, 1), 0.95)], 1).astype(np.float32)
    ref[K.LEFT_HIP:K.FEET.stop, 2] = 0.0
    return PoseSequence(ref[None], fps=25.0, width=W, height=H)


def mean_opening(pipe, wav: np.ndarray, ref, seeds: list[int]) -> tuple[float, float]:
    """Mean over seeds of the generated sequence's mean and std opening (frames 1..)."""
    import torch

    from csg.audio import SAMPLE_RATE

    means, stds = [], []
    for s in seeds:
        g = pipe(wav, SAMPLE_RATE, ref, generator=torch.Generator().manual_seed(s), progress=False)
        mo = K.mouth_opening(g.keypoints[1:, :, :2].astype(np.float64))
        means.append(mo.mean())
        stds.append(mo.std())
    return float(np.mean(means)), float(np.mean(stds))


def _with_face(xy: np.ndarray, face: np.ndarray) -> np.ndarray:
    out = np.array(xy, np.float64, copy=True)
    out[K.FACE] = face
    out[K.NOSE] = face[30]
    out[K.RIGHT_EYE_C] = face[36:42].mean(0)
    out[K.LEFT_EYE_C] = face[42:48].mean(0)
    return out


def extract_clip(path: Path, cache: Path) -> dict:
    """{"kp": (T, 133, 3) real keypoints (score 0 where nothing was found), "fps", "frame_hw",
    "wav" (16 kHz mono)}, cached as ``cache`` (.npz)."""
    if cache.is_file():
        d = np.load(cache)
        return {k: (d[k] if d[k].ndim else d[k].item()) for k in d.files}
    from csg.extract import PoseExtractor
    from csg.video import probe_video, read_audio_track, read_video

    fps = float(probe_video(path)["fps"])
    frames = list(read_video(path))
    kp = np.zeros((len(frames), K.NUM_KEYPOINTS, 3), np.float32)
    with PoseExtractor(video=True, min_shoulder_score=0.0) as ex:
        for i, f in enumerate(frames):
            k = ex(f, str(path.name))
            if k is not None:
                kp[i] = k
    wav, _ = read_audio_track(path)
    out = {"kp": kp, "fps": fps, "frame_hw": np.array(frames[0].shape[:2]), "wav": wav}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **out)
    return out


def speech_stats(wav: np.ndarray, sr: int, fps: float = 25.0) -> dict:
    """Loudness statistics of the speech (per 25 fps frame, :func:`csg.features.log_rms_envelope`):
    ``loud_range_db`` (95th - 10th percentile of the frames within 50 dB of the loudest),
    ``db_std`` (its std over the speech frames), ``speech_frac`` (share of frames within 30 dB of
    the 95th percentile), ``onset_rate`` (:func:`csg.features.onset_frames` per second of speech);
    over the loud STFT frames (within 20 dB of the 95th percentile): ``tilt_db`` (median 1-4 kHz
    over 0.1-1 kHz energy; flatter = more vocal effort) and ``centroid_hz``."""
    from csg.features import log_rms_envelope, onset_frames

    T = max(1, int(len(wav) / sr * fps))
    db = log_rms_envelope(wav, sr, fps, T).astype(np.float64)
    live = db > db.max() - 50.0
    p95 = np.percentile(db[live], 95)
    speech = db > p95 - 30.0
    on = onset_frames(wav, sr, fps, T)
    n, hop = 512, sr // 100                                     # 32 ms Hann frames, 10 ms hop
    fr = np.lib.stride_tricks.sliding_window_view(np.asarray(wav, np.float64), n)[::hop]
    pw = np.abs(np.fft.rfft(fr * np.hanning(n), axis=1)) ** 2
    f = np.fft.rfftfreq(n, 1.0 / sr)
    e = 10 * np.log10(pw.sum(1) + 1e-12)
    pw = pw[e > np.percentile(e, 95) - 20.0]                    # the loud (voiced) frames
    lo = pw[:, (f >= 100) & (f < 1000)].sum(1)
    hi = pw[:, (f >= 1000) & (f < 4000)].sum(1)
    return {"loud_range_db": float(p95 - np.percentile(db[live], 10)),
            "db_std": float(db[speech].std()),
            "speech_frac": float(speech.mean()),
            "onset_rate": float(len(on) / max(speech.sum() / fps, 1e-6)),
            "tilt_db": float(np.median(10 * np.log10((hi + 1e-12) / (lo + 1e-12)))),
            "centroid_hz": float(np.median((pw * f).sum(1) / (pw.sum(1) + 1e-12)))}


def lip_stats(xy: np.ndarray) -> dict:
    """The reference face's own lip geometry over its face height (:func:`csg.keypoints.face_height`):
    ``opening`` (inner-lip gap, :func:`csg.keypoints.mouth_opening`), ``width`` (mouth corners),
    ``lips`` (upper + lower lip thickness: outer minus inner lip gap along the three centre pairs)."""
    xy = np.asarray(xy, np.float64)
    fh = max(float(K.face_height(xy)), 1e-6)
    f = K.FACE.start
    outer = np.linalg.norm(xy[f + np.array([57, 58, 56])] - xy[f + np.array([51, 50, 52])], axis=-1)
    inner = np.linalg.norm(xy[f + np.array([66, 67, 65])] - xy[f + np.array([62, 61, 63])], axis=-1)
    return {"opening": float(K.mouth_opening(xy)),
            "width": float(np.linalg.norm(xy[f + 48] - xy[f + 54]) / fh),
            "lips": float((outer - inner).mean() / fh)}


def real_mouth(kp: np.ndarray) -> dict:
    ok = kp[:, K.FACE, 2].mean(1) > 0.3
    mo = K.mouth_opening(kp[ok, :, :2].astype(np.float64))
    return {"mean": float(mo.mean()), "std": float(mo.std()), "p90": float(np.percentile(mo, 90)),
            "frames": int(ok.sum())}


def generate(pipe, d: dict, seeds: list[int]) -> dict:
    """Stage 1 on the clip's reference (:func:`body_under_face`) and speech: mean opening over
    frames 1.. (``mean``, ``std``), and ``canon``: the mean with :func:`canonical_reference`
    instead (the speech's own level, free of the photo)."""
    from csg.pose import PoseSequence

    ref, hw = body_under_face(d["kp"][0, K.FACE, :2], tuple(d["frame_hw"]))
    ref = PoseSequence(ref[None], fps=25.0, width=int(hw[1]), height=int(hw[0]))
    m, sd = mean_opening(pipe, d["wav"], ref, seeds)
    return {"mean": m, "std": sd, "canon": mean_opening(pipe, d["wav"], canonical_reference(), seeds)[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=Path, default=DEFAULT_FACES)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "mouth_cal")
    ap.add_argument("--checkpoint", default="student")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sampling", nargs="*", default=["mouth_scale=1.0"], metavar="KEY=VALUE",
                    help="override the checkpoint's sampling options [mouth_scale=1.0]")
    ap.add_argument("--extract-only", action="store_true")
    ap.add_argument("--speech", type=Path, nargs="*", default=[],
                    help="media files: print the canonical level of their speech (times --canon-c)")
    ap.add_argument("--canon-c", type=float, default=None,
                    help="c of the canonical rule (printed by the fit); with --speech")
    ap.add_argument("--json", type=Path, default=None, help="write the per-clip rows here")
    ap.add_argument("--rows", type=Path, default=None,
                    help="fit only, from the rows of an earlier --json")
    args = ap.parse_args(argv)
    if args.rows is not None:
        print(fit_report(json.loads(args.rows.read_text())))
        return 0
    if not args.faces.is_dir():
        print(f"skipped: no face clips in {args.faces} (needs ../shared/data/video/face)")
        return 0
    data = {}
    for p in face_clips(args.faces):
        data[p.stem] = extract_clip(p, args.out / f"{p.stem}.npz")
    if args.extract_only:
        return 0
    import torch

    from audio2pose.pipeline import Audio2PosePipeline
    from csg.audio import SAMPLE_RATE

    torch.set_num_threads(args.threads)
    pipe = Audio2PosePipeline.from_pretrained(args.checkpoint)
    if args.sampling:
        from dataclasses import asdict

        from audio2pose.config import SamplingConfig
        from csg.config import deep_merge, from_dict, parse_overrides

        pipe.sampling = from_dict(SamplingConfig, deep_merge(asdict(pipe.sampling),
                                                             parse_overrides(args.sampling)),
                                  "--sampling")
    if args.speech:
        from csg.video import read_audio_track

        for f in args.speech:
            level = mean_opening(pipe, read_audio_track(f)[0], canonical_reference(), args.seeds)[0]
            extra = f", c x level {args.canon_c * level:.4f}" if args.canon_c else ""
            print(f"{f.name}: canonical level {level:.4f}{extra}")
        return 0
    rows = {}
    for name, d in data.items():
        row = {"real": real_mouth(d["kp"]), "speech": speech_stats(d["wav"], SAMPLE_RATE)}
        if d["kp"][0, K.FACE, 2].mean() > 0.3:
            row["ref"] = lip_stats(d["kp"][0, :, :2])
            row["gen"] = generate(pipe, d, args.seeds)
        rows[name] = row
        print(name, json.dumps(row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    print(fit_report(rows))
    return 0


def _loo(y: np.ndarray, cols: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out predictions of least squares ``y ~ 1 + cols``, and the all-data coefficients."""
    A = np.column_stack([np.ones(len(y))] + cols)
    pred = np.empty(len(y))
    for i in range(len(y)):
        m = np.arange(len(y)) != i
        pred[i] = A[i] @ np.linalg.lstsq(A[m], y[m], rcond=None)[0]
    return pred, np.linalg.lstsq(A, y, rcond=None)[0]


def fit_report(rows: dict, floor: float = 0.005, scale: float = 0.49) -> str:
    """Which input predicts a real speaker's mean opening: log(real mean) regressed on each
    candidate (the reference's lip geometry, the speech statistics, the network's own level),
    leave-one-out over clips; and the shipped rule (``scale`` x the network's level)."""
    names = [n for n in rows if "gen" in rows[n]]
    y = np.log([rows[n]["real"]["mean"] for n in names])
    cand = {"log ref opening": np.log(np.maximum([rows[n]["ref"]["opening"] for n in names], floor)),
            "ref mouth width": np.array([rows[n]["ref"]["width"] for n in names]),
            "ref lip thickness": np.array([rows[n]["ref"]["lips"] for n in names]),
            "log network level": np.log([rows[n]["gen"]["mean"] for n in names])}
    if all("canon" in rows[n]["gen"] for n in names):
        cand["log canonical level"] = np.log([rows[n]["gen"]["canon"] for n in names])
    for k in rows[names[0]]["speech"]:
        cand[f"speech {k}"] = np.array([rows[n]["speech"][k] for n in names])

    def line(label, pred, coef):
        r = np.exp(pred - y)
        ok = int(((r <= 1.3) & (r >= 1 / 1.3)).sum())
        return (f"| {label} | {np.sqrt(np.mean((pred - y) ** 2)):.3f} | {ok}/{len(y)} | "
                + " ".join(f"{c:+.4g}" for c in coef) + " |")

    out = [f"{len(y)} clips; real mean opening: mean {np.exp(y).mean():.4f}, "
           f"{np.exp(y).min():.4f}-{np.exp(y).max():.4f}",
           "| log(real mean) ~ | LOO rms (log) | LOO within 1.3x | coefficients |",
           "| --- | --- | --- | --- |", line("constant", *_loo(y, []))]
    for k, v in cand.items():
        out.append(line(k, *_loo(y, [v])))
        if k != "log ref opening":
            out.append(line(f"log ref opening + {k}", *_loo(y, [cand["log ref opening"], v])))
    if "log canonical level" in cand:
        L, R = np.exp(cand["log canonical level"]), np.exp(y)
        c = R.mean() / L.mean()
        loo = np.array([np.delete(R, i).mean() / np.delete(L, i).mean() * L[i] / R[i]
                        for i in range(len(R))])
        out.append(f"| c x canonical level, c = real / canonical = {c:.4f} | "
                   f"{np.sqrt(np.mean(np.log(loo) ** 2)):.3f} | "
                   f"{int(((loo <= 1.3) & (loo >= 1 / 1.3)).sum())}/{len(y)} | {c:.4g} |")
    r = scale * np.exp(cand["log network level"]) / np.exp(y)
    out.append(f"shipped rule ({scale} x network level): within 1.3x "
               f"{int(((r <= 1.3) & (r >= 1 / 1.3)).sum())}/{len(y)}, median ratio {np.median(r):.2f}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
