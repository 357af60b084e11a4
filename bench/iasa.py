"""IASA-style ablation of the ``vdm`` renderer in one run: teacher -> + global -> + local ->
+ distillation -> + region loss, with speed (denoiser and decoder apart), reconstruction metrics on
real clips and lip sync from pixels.

    python bench/iasa.py [CLIPS ...] [--rows teacher,global0,global,local0,local,student,region,decoder]
        [--global-weights runs/iasa/ft_global] [--local-weights runs/iasa/ft_local]
        [--student runs/iasa/student_uniform] [--region runs/iasa/student_region] [--decoder DIR]
        [--max-side 256] [--max-frames 32] [--every 8] [--speed-frames 16] [--threads 1]
        [--dtype float32|bfloat16] [--json out.json]

Rows (each a ``vdm`` renderer; missing weights skip the row with a line):

| row | model | attention | sampler |
| --- | --- | --- | --- |
| teacher | the embedded checkpoint | dense | 12 DDIM steps, pose CFG 2 (24 passes) |
| localref0 / localref | local mask with the reference exempt, without / with fine-tuning (not in the default rows) | global+local+ref | as teacher |
| dense_ft | control: fine-tuned as the sparse rows, attention kept dense (not in the default rows) | dense | as teacher |
| global0 / local0 | the same weights, sparse attention switched on *without* fine-tuning | global / global+local | as teacher |
| global / local | fine-tuned to that attention (``csg distill vdm --method finetune``) | global / global+local | as teacher |
| student | few-step student, uniform loss (``csg distill vdm --set region_loss=false``) | global+local | its ``vdm.json``: 1 step, no CFG |
| region | few-step student with the PAR region loss | global+local | 1 step, no CFG |
| decoder | the region student decoded by the small decoder (``csg distill decoder``, ``--decoder``) | as region | as region |
| teacher_decoder | control: the teacher decoded by the small decoder (not in the default rows) | dense | as teacher |

Speed: every row renders the same ``--speed-frames`` frames of a moving test skeleton on a
``--max-side`` square photo, rounds interleaved over the rows (``--rounds``), best round kept;
denoiser (all sampling passes of all windows) and decoder (TAEF2 or the small one, + resize)
timed apart. The machine
is shared: compare the ratios of one run.

Quality: ``bench/recon.py``'s protocol and functions (:func:`bench.recon.evaluate_clip`) on each clip
(``CLIPS``: files or folders; default ``../shared/data/validation``; missing paths are skipped): the
clip's frame 0 as the photo, its own keypoints as the skeleton, its own audio as the speech; PSNR /
SSIM whole, person, face box, hand boxes; re-detected PCK every ``--every`` frames. **Lip sync from
pixels**: MediaPipe re-detects the face on every rendered frame, and the mouth opening
(:func:`csg.keypoints.mouth_opening`) is correlated with the audio's log-RMS envelope
(:func:`eval.sync.lagged_correlation`, lags +-4 frames); the real clip's own value is printed beside
it. The validation clips are non-commercial, measure only: nothing of them is written except the
numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ROWS = {
    "teacher": ("teacher", "", "dense"),
    "dense_ft": ("teacher fine-tuned, dense (control)", "dense_weights", "dense"),
    "global0": ("+ global (no fine-tune)", "", "global"),
    "global": ("+ global", "global_weights", "global"),
    "local0": ("+ local (no fine-tune)", "", "global+local"),
    "local": ("+ local", "local_weights", "global+local"),
    "localref0": ("+ local, reference exempt (no fine-tune)", "", "global+local+ref"),
    "localref": ("+ local, reference exempt", "localref_weights", "global+local+ref"),
    "student": ("+ distillation (1 step)", "student", "", "taef2"),
    "region": ("+ region loss (1 step)", "region", "", "taef2"),
    "decoder": ("+ small decoder (1 step)", "region", "", "taef2_lite"),
    "teacher_decoder": ("teacher with the small decoder (control)", "", "dense", "taef2_lite"),
}


class Timed:
    """A vdm renderer whose sampler and decoder are timed, whose audio is fixed, and whose frames
    are kept (for the lip-sync re-detection)."""

    def __init__(self, r):
        self.r, self.audio, self.frames = r, None, []
        self.t = {"denoise": 0.0, "decode": 0.0}
        sample, decode = r._sample, r._decode

        def ts(*a, **k):
            t0 = time.perf_counter()
            out = sample(*a, **k)
            self.t["denoise"] += time.perf_counter() - t0
            return out

        def td(*a, **k):
            t0 = time.perf_counter()
            out = decode(*a, **k)
            self.t["decode"] += time.perf_counter() - t0
            return out

        r._sample, r._decode = ts, td

    def prepare(self, *a, **k):
        return self.r.prepare(*a, **k)

    def render(self, state, poses, **k):
        for chunk in self.r.render(state, poses, audio=self.audio, **k):
            self.frames.extend(chunk)
            yield chunk


def build(row: str, args) -> tuple[str, object | None, str]:
    """(label, renderer or None, why missing)."""
    from csg.errors import CsgError
    from pose2video.vdm.renderer import vdm_factory

    label, wkey, attention, *codec = ROWS[row]
    weights = getattr(args, wkey) if wkey else ""
    if wkey and not (weights and (Path(weights) / "config.json").is_file()):
        return label, None, f"no weights at {weights!r} (--{wkey.replace('_', '-')})"
    small = {"codec": codec[0], "codec_path": args.decoder if codec[0] == "taef2_lite" else ""} \
        if codec else {}  # (students: TAEF2 unless the row says otherwise, whatever their vdm.json)
    try:
        r = vdm_factory(weights=weights, attention=attention, attention_topk=args.topk,
                        dtype=args.dtype, **small)
    except CsgError as e:
        return label, None, str(e)
    return label, r, ""


def speed(renderers: dict, args) -> dict:
    """Best-of-rounds seconds per frame, denoiser and decoder apart (module doc)."""
    from tests.helpers import make_moving_pose, make_reference_pose

    S = args.max_side
    photo = np.full((S, S, 3), 180, np.uint8)
    poses = make_moving_pose(args.speed_frames, S, S)
    rng = np.random.default_rng(0)
    wav = (rng.normal(0, 0.05, int(16000 * args.speed_frames / 25))).astype(np.float32)
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for row, r in renderers.items():
            tr = Timed(r)
            tr.audio = wav
            st = r.prepare(photo, make_reference_pose(S, S))
            t0 = time.perf_counter()
            n = sum(len(c) for c in tr.render(st, poses, progress=False))
            wall = time.perf_counter() - t0
            r._sample, r._decode = type(r)._sample.__get__(r), type(r)._decode.__get__(r)
            res = {"denoise": tr.t["denoise"] / n, "decode": tr.t["decode"] / n, "total": wall / n,
                   "work": st.work_hw}
            if row not in best or res["total"] < best[row]["total"]:
                best[row] = res
    return best


def attention_scaling(frames=(7, 16, 32, 64), tokens: int = 64, width: int = 128, topk: int = 2,
                      repeat: int = 3) -> list[dict]:
    """One temporal (cross-frame) attention layer of the denoiser, dense (all F frames) against the
    gathered global mask (self + reference + K past frames), at window lengths ``frames``: where
    the sparse attention starts to pay. Best of ``repeat``, milliseconds."""
    import torch

    from pose2video.vdm.model import Attention
    from pose2video.vdm.sparse import plan_tensors, topk_past_frames, SparsePlan

    att = Attention(width, 4).eval()
    out = []
    for F in frames:
        x = torch.randn(1, F, tokens, width)
        idx, valid = topk_past_frames(np.random.default_rng(0).random((F, F)), topk)
        plan = plan_tensors([SparsePlan(idx, valid, None)])

        def dense():
            h = x.transpose(1, 2).reshape(tokens, F, width)
            att(h)

        def sparse():
            att.gathered(x, plan["index"], plan["mask"])

        res = {"frames": F}
        with torch.no_grad():
            for name, fn in (("dense", dense), ("global", sparse)):
                best = float("inf")
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    fn()
                    best = min(best, time.perf_counter() - t0)
                res[name] = best * 1000
        out.append(res)
    return out


def lipsync(frames: list[np.ndarray], wav: np.ndarray | None, fps: float) -> float:
    """Lagged correlation of the re-detected mouth opening with the audio envelope (module doc)."""
    from csg import keypoints as K
    from csg.features import log_rms_envelope
    from eval import sync as S
    from eval.video_eval import detect_keypoints

    if wav is None or not len(frames):
        return float("nan")
    kp = detect_keypoints(np.stack(frames))
    ok = kp[:, K.MOUTH, 2].min(1) > 0.3
    if ok.sum() < 8:
        return float("nan")
    mouth = K.mouth_opening(kp[..., :2].astype(np.float64))
    env = log_rms_envelope(wav, 16000, fps, len(frames))
    mouth = np.where(ok, mouth, np.median(mouth[ok]))
    return float(S.lagged_correlation(mouth, env, 4).r)


def recon_args(args) -> SimpleNamespace:
    """The options :func:`bench.recon.evaluate_clip` reads, from this script's."""
    return SimpleNamespace(max_side=args.max_side, max_frames=args.max_frames, every=args.every,
                           cache=None, sheets=None, sheet_prefix="", real_pck=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clips", nargs="*", default=[str(ROOT.parent / "shared/data/validation")])
    ap.add_argument("--rows", default=",".join(r for r in ROWS if r not in (
        "dense_ft", "localref0", "localref", "teacher_decoder")))
    ap.add_argument("--dense-weights", default="runs/iasa/ft_dense")
    ap.add_argument("--global-weights", default="runs/iasa/ft_global")
    ap.add_argument("--localref-weights", default="runs/iasa/ft_localref")
    ap.add_argument("--local-weights", default="runs/iasa/ft_local")
    ap.add_argument("--student", default="runs/iasa/student_uniform")
    ap.add_argument("--region", default="runs/iasa/student_region")
    ap.add_argument("--decoder", default="",
                    help="small decoder folder (csg distill decoder; default: the shipped one)")
    ap.add_argument("--topk", type=int, default=0, help="K of the global mask (0: the model's)")
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--max-frames", type=int, default=32)
    ap.add_argument("--every", type=int, default=8)
    ap.add_argument("--speed-frames", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                    help="render.dtype of every row (denoiser and decoder); default float32")
    ap.add_argument("--no-quality", action="store_true", help="speed only")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)

    import torch

    from bench.recon import evaluate_clip, find_clips
    from csg.video import read_audio_track

    torch.set_num_threads(args.threads)
    rows = [r for r in args.rows.split(",") if r]
    renderers, missing = {}, {}
    for row in rows:
        label, r, why = build(row, args)
        if r is None:
            missing[row] = why
            print(f"row {label}: skipped, {why}")
        else:
            renderers[row] = r
    scal = attention_scaling(tokens=(args.max_side // 16) ** 2 // 4 if args.max_side else 64)
    print("one temporal attention layer (width 128, 4 heads), ms: frames / dense / global "
          f"(self + reference + {2} past)")
    for a in scal:
        print(f"  F={a['frames']:3d}  dense {a['dense']:7.2f}  global {a['global']:7.2f}")
    sp = speed(renderers, args)
    base = sp.get("teacher", next(iter(sp.values()), {})).get("total")
    clips = [] if args.no_quality else find_clips([Path(c) for c in args.clips])
    rec = recon_args(args)
    quality: dict[str, list[dict]] = {row: [] for row in renderers}
    real_ls: dict[str, float] = {}
    for clip in clips:
        try:
            wav = read_audio_track(clip)[0]
        except Exception as e:  # noqa: BLE001 - a clip without audio: no lip sync
            print(f"{clip.name}: no audio ({e}); lip sync skipped")
            wav = None
        for row, r in renderers.items():
            tr = Timed(r)
            tr.audio = wav
            s = evaluate_clip(tr, clip, rec)
            r._sample, r._decode = type(r)._sample.__get__(r), type(r)._decode.__get__(r)
            s["lipsync_r"] = lipsync(tr.frames, wav, s.get("fps_clip", 25.0))
            if clip.name not in real_ls:
                from bench.recon import read_frames, working_size
                from csg.video import probe_video

                info = probe_video(clip)
                hw = working_size(int(info["height"]), int(info["width"]), args.max_side)
                real = list(read_frames(clip, hw, len(tr.frames)))
                real_ls[clip.name] = lipsync(real, wav, float(info["fps"]))
            s["lipsync_r_real"] = real_ls[clip.name]
            quality[row].append(s)
            print(f"{clip.name} {row}: PSNR {s.get('psnr', float('nan')):.2f} face "
                  f"{s.get('psnr_face', float('nan')):.2f} hand {s.get('psnr_hand', float('nan')):.2f}"
                  f" lipsync r {s['lipsync_r']:.2f} (real {s['lipsync_r_real']:.2f})", flush=True)

    def mean(row, key):
        v = [q.get(key) for q in quality.get(row, []) if q.get(key) is not None]
        v = [x for x in v if np.isfinite(x)]
        return float(np.mean(v)) if v else float("nan")

    print(f"\nvdm at {args.max_side}x{args.max_side} output, working size "
          f"{next(iter(sp.values()))['work'] if sp else '?'}, CPU threads {args.threads}, "
          f"{args.dtype or 'float32'}; "
          f"quality: mean over {len(clips)} clip(s), first {args.max_frames} frames")
    cols = ("psnr", "ssim", "psnr_person", "psnr_face", "psnr_hand", "pck_body", "pck_hands",
            "lipsync_r")
    print("| row | denoiser s/frame | decoder s/frame | total s/frame | fps | speed-up | PSNR | SSIM "
          "| person PSNR | face PSNR | hand PSNR | PCK body | PCK hands | lip sync r (real) |")
    print("| --- " * 14 + "|")
    table = []
    for row in rows:
        if row not in renderers:
            print(f"| {ROWS[row][0]} | skipped: {missing[row]} |" + " |" * 12)
            continue
        t = sp[row]
        q = {c: mean(row, c) for c in cols}
        real = mean(row, "lipsync_r_real")
        print(f"| {ROWS[row][0]} | {t['denoise']:.3f} | {t['decode']:.3f} | {t['total']:.3f} | "
              f"{1 / t['total']:.2f} | {base / t['total']:.1f}x | {q['psnr']:.2f} | {q['ssim']:.3f} "
              f"| {q['psnr_person']:.2f} | {q['psnr_face']:.2f} | {q['psnr_hand']:.2f} | "
              f"{q['pck_body']:.2f} | {q['pck_hands']:.2f} | {q['lipsync_r']:.2f} ({real:.2f}) |")
        table.append({"row": row, "label": ROWS[row][0], **t, **q, "lipsync_r_real": real})
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": table, "attention_scaling": scal,
                                               "per_clip": quality,
                                               "missing": missing, "args": vars(args)},
                                              indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
