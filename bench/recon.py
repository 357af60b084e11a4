"""Reconstruction benchmark for any renderer: re-render a real clip from its own frame 0.

Usage::

    python bench/recon.py PATH [PATH ...] [--renderer warp] [--option key=value ...]
        [--max-side 512] [--max-frames N] [--every 3] [--json out.json] [--sheets DIR]

PATH: video files or folders of them (``.mp4``, ``.mpg``, ``.mov``, ``.avi``, ``.mkv``, ``.webm``).
Missing paths are skipped with a line (the validation clips live outside the project).

The standard protocol of pose-guided video (Animate Anyone, UniAnimate): the reference photo is the
clip's frame 0, the skeleton is the clip's own keypoints - read from ``<stem>_mediapipe_kp.npz``
(``coco_wholebody133_2d`` in source pixels) when it sits beside the clip, else extracted with
``csg.extract.PoseExtractor`` (cached under ``--cache``) - and every rendered frame is compared with
the real one:

- PSNR and SSIM (``eval.video_metrics``) over the frame, the person box (the real skeleton's box,
  10 % margin), the face box (68 face points, 20 % margin) and each hand box (21 hand points, 25 %
  margin; only where the real skeleton has the hand); per-frame values in dB averaged over frames;
- frame-0 PSNR (the render of the reference pose against the photo itself);
- PCK@0.1 of the skeleton re-detected on the rendered frames (MediaPipe Holistic, every ``--every``-th
  frame) against the driving keypoints, per group: body (COCO 0-12), elbows, wrists, hands (the
  ``eval.pose_metrics.pck`` convention: alpha x the driving torso size, driving score > 0.3);
- the same re-detection on the real frames (``--real-pck``): the ceiling this protocol allows,
  since the detector disagrees with the clip's own keypoints on real video too (``pck_*_real``,
  shown in brackets);
- temporal flicker (mean |frame_t - frame_t-1| outside the union of the real person boxes; the real
  clip's own value beside it), and the background change against frame 0 there;
- speed: ``prepare`` seconds once and rendered frames per second (wall clock, this machine).

Renderers follow protocol v2 (``prepare(photo, ref_pose) -> state``; ``render(state, poses)``).
Prints a Markdown table and writes JSON. Frames are compared at ``--max-side`` (long side).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BODY_UPPER = np.arange(0, 13)  # nose .. hips: the half-body points
GROUPS = {"body": BODY_UPPER, "elbows": np.array([7, 8]), "wrists": np.array([9, 10]),
          "hands": np.arange(91, 133)}
THRESHOLD = 0.3
COLUMNS = [("frames", "frames", "{:.0f}"), ("psnr0", "frame-0 PSNR", "{:.1f}"),
           ("psnr", "PSNR", "{:.1f}"), ("ssim", "SSIM", "{:.3f}"),
           ("psnr_person", "person PSNR", "{:.1f}"), ("ssim_person", "person SSIM", "{:.3f}"),
           ("psnr_face", "face PSNR", "{:.1f}"), ("psnr_hand", "hand PSNR", "{:.1f}"),
           ("pck_body", "PCK body", "{:.2f}"), ("pck_elbows", "PCK elbows", "{:.2f}"),
           ("pck_wrists", "PCK wrists", "{:.2f}"), ("pck_hands", "PCK hands", "{:.2f}"),
           ("flicker", "flicker (real)", None), ("fps", "fps", "{:.1f}")]


# --- inputs ----------------------------------------------------------------------------------------
def find_clips(paths: list[Path]) -> list[Path]:
    """Video files under ``paths`` (files or folders), sorted; missing paths print a line."""
    from csg.video import VIDEO_SUFFIXES

    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            print(f"skip {p}: not found (the validation data lives outside the project)")
    return out


def working_size(h: int, w: int, max_side: int) -> tuple[int, int]:
    """(h, w) scaled so the long side is at most ``max_side``, both even."""
    f = min(1.0, max_side / max(h, w))
    return max(2, int(round(h * f / 2)) * 2), max(2, int(round(w * f / 2)) * 2)


def read_frames(path: Path, size_hw: tuple[int, int], max_frames: int | None):
    """Yield (h, w, 3) uint8 RGB frames resized to ``size_hw``."""
    import cv2

    from csg.video import read_video

    for f in read_video(path, max_frames=max_frames):
        if f.shape[:2] != size_hw:
            f = cv2.resize(f, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
        yield f


def clip_keypoints(path: Path, size_hw: tuple[int, int], src_hw: tuple[int, int],
                   max_frames: int | None, cache: Path | None) -> tuple[np.ndarray, str]:
    """(T, 133, 3) keypoints in working pixels, and where they came from."""
    npz = path.with_name(path.stem + "_mediapipe_kp.npz")
    if npz.is_file():
        d = np.load(npz)
        kp = np.asarray(d["coco_wholebody133_2d"], np.float64)[:max_frames].copy()
        sh, sw = float(d["height"]), float(d["width"])
        source = npz.name
    else:
        kp, source = None, "csg.extract.PoseExtractor"
        key = cache / f"{path.stem}_{size_hw[1]}x{size_hw[0]}_{max_frames}_ms0.npz" if cache else None
        if key is not None and key.is_file():
            kp = np.load(key)["kp"]
        if kp is None:
            from csg.extract import PoseExtractor

            frames = []
            # min_shoulder_score=0: face crops have no shoulders, their face is still measured
            with PoseExtractor(video=True, min_shoulder_score=0.0) as ex:
                for t, f in enumerate(read_frames(path, size_hw, max_frames)):
                    k = ex(f, f"{path.name} frame {t}")
                    frames.append(np.zeros((133, 3), np.float32) if k is None else k)
            kp = np.stack(frames).astype(np.float64)
            if key is not None:
                key.parent.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(key, kp=kp)
        sh, sw = size_hw
    kp[..., 0] *= size_hw[1] / sw
    kp[..., 1] *= size_hw[0] / sh
    return kp, source


# --- metrics ---------------------------------------------------------------------------------------
def boxes(kp: np.ndarray, size_hw: tuple[int, int]) -> dict[str, Any]:
    """Person, face and hand boxes (y0, x0, y1, x1) of one (133, 3) real skeleton (None if absent)."""
    from csg import keypoints as K
    from eval import video_metrics as VM

    out: dict[str, Any] = {"person": VM.keypoint_bbox(kp, size_hw, margin=0.1,
                                                      score_threshold=THRESHOLD)}
    face_ok = (kp[K.FACE, 2] > THRESHOLD).sum() >= 40
    out["face"] = VM.keypoint_bbox(kp, size_hw, group=K.FACE, margin=0.2,
                                   score_threshold=THRESHOLD) if face_ok else None
    for name, g in (("hand_l", K.LEFT_HAND), ("hand_r", K.RIGHT_HAND)):
        ok = (kp[g, 2] > THRESHOLD).sum() >= 10
        out[name] = VM.keypoint_bbox(kp, size_hw, group=g, margin=0.25,
                                     score_threshold=THRESHOLD) if ok else None
    return out


def frame_metrics(out: np.ndarray, real: np.ndarray, kp: np.ndarray) -> dict[str, float]:
    """PSNR / SSIM of one rendered frame against the real one, whole and per region."""
    from eval import video_metrics as VM

    hw = real.shape[:2]
    m = VM.ssim_map(out, real)
    res = {"psnr": VM.psnr(out, real), "ssim": float(m.mean())}
    for name, box in boxes(kp, hw).items():
        if box is None:
            continue
        mask = VM.box_mask(box, hw)
        res[f"psnr_{name}"] = VM.psnr(out, real, mask)
        res[f"ssim_{name}"] = float(m[mask].mean())
    return res


def _mean(vals: list[float]) -> float:
    v = [x for x in vals if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def pck_groups(detected: np.ndarray, driving: np.ndarray, alpha: float = 0.1) -> dict[str, float]:
    """PCK@alpha per group of (T, 133, 3) re-detected against (T, 133, 3) driving keypoints."""
    from eval.pose_metrics import pck

    return {f"pck_{g}": pck(detected[..., :2], driving, alpha, score_threshold=THRESHOLD,
                            joints=idx) for g, idx in GROUPS.items()}


def evaluate_clip(renderer: Any, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Render one clip from its frame 0 and measure it against the real frames."""
    from csg.errors import CsgError
    from csg.pose import PoseSequence
    from csg.video import probe_video
    from eval import video_metrics as VM

    info = probe_video(path)
    src_hw = (int(info["height"]), int(info["width"]))
    hw = working_size(*src_hw, args.max_side)
    kp, kp_source = clip_keypoints(path, hw, src_hw, args.max_frames, args.cache)
    fps = float(info["fps"])
    frames_in = read_frames(path, hw, args.max_frames)
    photo = next(frames_in)
    T = len(kp)
    poses = PoseSequence(kp.astype(np.float32), fps=fps, width=hw[1], height=hw[0])
    ref_pose = poses.frame(0) if (kp[0, :, 2] > THRESHOLD).any() else None
    t0 = time.perf_counter()
    try:
        state = renderer.prepare(photo, ref_pose)
    except CsgError as e:  # the renderer refuses this photo: say so, measure the next clip
        return {"clip": path.name, "keypoints": kp_source, "frames": 0, "error": str(e)}
    prep = time.perf_counter() - t0

    sheet_at = set(np.linspace(0, T - 1, 8).round().astype(int).tolist())
    redetect_at = set(range(0, T, args.every)) if args.every > 0 else set()
    per: list[dict[str, float]] = []
    person_union = np.zeros(hw, bool)
    for t in range(T):
        person_union |= VM.box_mask(VM.keypoint_bbox(kp[t], hw, margin=0.1,
                                                     score_threshold=THRESHOLD), hw)
    bg = ~person_union
    flick = {"out": [0.0, 0], "real": [0.0, 0]}
    bg_change: list[float] = []
    kept: dict[int, np.ndarray] = {}
    kept_real: dict[int, np.ndarray] = {}
    sheet: list[tuple[int, np.ndarray, np.ndarray, float]] = []
    prev: dict[str, np.ndarray | None] = {"out": None, "real": None}
    render_s, t, real = 0.0, 0, photo
    it = renderer.render(state, poses, progress=False, chunk=16)
    while t < T:
        t1 = time.perf_counter()
        try:
            chunk = next(it)
        except StopIteration:
            raise SystemExit(f"{path.name}: the renderer stopped after {t} of {T} frames") from None
        render_s += time.perf_counter() - t1
        for out in chunk:
            if t > 0:
                real = next(frames_in, None)
                if real is None:  # the video has fewer frames than its keypoints
                    T = t
                    break
            m = frame_metrics(out, real, kp[t])
            per.append(m)
            for key, img in (("out", out), ("real", real)):
                if prev[key] is not None and bg.any():
                    d = np.abs(img[bg].astype(np.int16) - prev[key][bg].astype(np.int16))
                    flick[key][0] += float(d.sum())
                    flick[key][1] += d.size
                prev[key] = img
            if bg.any():
                bg_change.append(float(np.abs(out[bg].astype(np.int16)
                                              - photo[bg].astype(np.int16)).mean()))
            if t in redetect_at:
                kept[t] = out
                if args.real_pck:
                    kept_real[t] = real
            if t in sheet_at:
                sheet.append((t, out, real, m["psnr"]))
            t += 1
    it.close()
    n = len(per)
    s: dict[str, Any] = {"clip": path.name, "keypoints": kp_source, "height": hw[0],
                         "width": hw[1], "frames": n, "fps_clip": fps,
                         "psnr0": per[0]["psnr"] if per else float("nan")}
    keys = sorted({k for m in per for k in m})
    for k in keys:
        s[k] = _mean([m.get(k) for m in per])
    s["psnr_hand"] = _mean([m.get(k) for m in per for k in ("psnr_hand_l", "psnr_hand_r")])
    s["ssim_hand"] = _mean([m.get(k) for m in per for k in ("ssim_hand_l", "ssim_hand_r")])
    s["flicker"] = flick["out"][0] / max(flick["out"][1], 1)
    s["flicker_real"] = flick["real"][0] / max(flick["real"][1], 1)
    s["bg_change_max"] = max(bg_change) if bg_change else float("nan")
    s["bg_fraction"] = float(bg.mean())
    s["prepare_s"] = prep
    s["fps"] = n / max(render_s, 1e-9)
    if kept:
        from eval.video_eval import detect_keypoints

        idx = sorted(kept)
        det = detect_keypoints(np.stack([kept[i] for i in idx]))
        s.update(pck_groups(det, kp[idx]))
        s["redetected_frames"] = len(idx)
        s["detection_rate"] = float((det[..., 2].max(axis=1) > 0).mean())
        if kept_real:
            det_r = detect_keypoints(np.stack([kept_real[i] for i in idx]))
            s.update({f"{k}_real": v for k, v in pck_groups(det_r, kp[idx]).items()})
    if args.sheets is not None:
        ys, xs = np.nonzero(person_union)
        crop = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) if len(ys) else None
        s["sheet"] = str(write_sheet(args.sheets / f"{args.sheet_prefix}{path.stem}.png", sheet,
                                     path.name, crop))
    return s


def write_sheet(path: Path, cells: list[tuple[int, np.ndarray, np.ndarray, float]],
                title: str, crop: tuple[int, int, int, int] | None = None,
                cell_h: int = 300) -> Path:
    """A contact sheet: real frames on top, rendered below, 8 columns, labelled; ``crop``
    (y0, x0, y1, x1): the part shown (the union of the person boxes)."""
    import cv2

    cols = []
    for t, out, real, p in cells:
        if crop is not None:
            out, real = (x[crop[0]:crop[2], crop[1]:crop[3]] for x in (out, real))
        f = cell_h / real.shape[0]
        size = (max(int(round(real.shape[1] * f)), 1), cell_h)
        a = cv2.resize(real, size, interpolation=cv2.INTER_AREA)
        b = cv2.resize(out, size, interpolation=cv2.INTER_AREA)
        lab = np.full((22, size[0], 3), 255, np.uint8)
        cv2.putText(lab, f"t={t}  {p:.1f} dB", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0),
                    1, cv2.LINE_AA)
        cols.append(np.vstack([lab, a, b]))
    grid = np.hstack([np.pad(c, ((0, 0), (0, 3), (0, 0)), constant_values=255) for c in cols])
    head = np.full((26, grid.shape[1], 3), 255, np.uint8)
    cv2.putText(head, f"{title}: real (top) / rendered (bottom)", (4, 18),
                cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack([head, grid]), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def markdown(rows: list[dict[str, Any]]) -> str:
    """The summary table (one row per clip, plus the mean)."""
    head = "| clip | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + " --- |" * (len(COLUMNS) + 1)]

    def cell(r: dict[str, Any], key: str, fmt: str | None) -> str:
        if key == "flicker":
            return f"{r.get('flicker', float('nan')):.2f} ({r.get('flicker_real', float('nan')):.2f})"
        v = r.get(key)
        if key.startswith("pck_") and r.get(f"{key}_real") is not None and v is not None:
            return f"{fmt.format(v)} ({fmt.format(r[f'{key}_real'])})"
        if isinstance(v, float) and np.isinf(v):
            return "inf (exact)"
        return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v)
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['clip'][:32]} | refused: {r['error']} |")
            continue
        lines.append(f"| {r['clip'][:32]} | " + " | ".join(cell(r, k, f) for k, _, f in COLUMNS)
                     + " |")
    return "\n".join(lines)


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` with a YAML value (``segment=false``, ``map_stride=1``)."""
    import yaml

    if "=" not in text:
        raise SystemExit(f"--option {text!r}: expected key=value")
    k, v = text.split("=", 1)
    return k.strip(), yaml.safe_load(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--renderer", default="warp")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="renderer option (repeatable)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--max-side", type=int, default=512)
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--every", type=int, default=3,
                    help="re-detect every n-th rendered frame (0: no re-detection)")
    ap.add_argument("--real-pck", action="store_true",
                    help="also re-detect the real frames: the PCK ceiling of this protocol")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--sheets", type=Path, default=None,
                    help="folder for contact sheets (PNG, 8 frames, real over rendered)")
    ap.add_argument("--sheet-prefix", default="recon_")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache/csg/recon",
                    help="extracted keypoints are cached here")
    args = ap.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING)
    from pose2video import get_renderer

    opts = dict(parse_option(o) for o in args.option)
    if args.device is not None:
        opts["device"] = args.device
    if args.dtype is not None:
        opts["dtype"] = args.dtype
    renderer = get_renderer(args.renderer, **opts)
    if not hasattr(renderer, "prepare"):
        raise SystemExit(f"renderer {args.renderer!r} does not implement protocol v2 (prepare)")
    clips = find_clips(args.paths)
    if not clips:
        print("no clips to measure")
        return 0
    rows = []
    for p in clips:
        t0 = time.perf_counter()
        r = evaluate_clip(renderer, p, args)
        rows.append(r)
        print(f"{p.name}: {r['frames']} frames in {time.perf_counter() - t0:.0f} s", flush=True)
    print()
    print(markdown(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        settings = {"renderer": args.renderer, "options": {k: str(v) for k, v in opts.items()},
                    "max_side": args.max_side, "max_frames": args.max_frames,
                    "redetect_every": args.every, "groups": {k: v.tolist()
                                                             for k, v in GROUPS.items()},
                    "protocol": __doc__}
        args.json.write_text(json.dumps({"settings": settings, "clips": rows}, indent=1,
                                        default=float))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
