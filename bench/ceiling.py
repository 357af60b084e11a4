"""The best a renderer working at S pixels can score in ``bench/recon.py``: an oracle that sees the
real frames.

    python bench/ceiling.py [CLIPS ...] [--sizes 128 256] [--max-side 256] [--max-frames 48]
        [--every 6] [--codec taef2] [--json out.json]

For every clip and working size S, each real frame (at ``--max-side``, as recon.py compares) is
resized to S on the long side (both sides multiples of 16, as the ``vdm`` renderer does), optionally
round-tripped through the latent codec (TAEF2 encode + decode), resized back with the renderer's
interpolation and scored against the real frame with recon.py's :func:`frame_metrics` (whole frame,
person, face box, hand boxes). No renderer can beat its row at its size: a row below ``warp``'s
recon figures means that working size cannot win on that metric whatever the training. Default:
the validation clips (skipped with a line when ``../shared`` is absent).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def oracle_frame(real: np.ndarray, size: int, codec=None, multiple: int = 16) -> np.ndarray:
    """``real`` (H, W, 3) uint8 -> down to long side ``size`` (sides multiples of ``multiple``),
    through ``codec`` if given, back up to (H, W) as the vdm renderer resizes its output."""
    import cv2

    H, W = real.shape[:2]
    f = size / max(H, W)
    h = max(multiple, int(round(H * f / multiple)) * multiple)
    w = max(multiple, int(round(W * f / multiple)) * multiple)
    small = cv2.resize(real, (w, h), interpolation=cv2.INTER_AREA if h < H else cv2.INTER_LINEAR)
    if codec is not None:
        import torch

        x = torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255.0
        y = codec.decode(codec.encode(x))[0].permute(1, 2, 0).numpy()
        small = np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)


def _mean_exact(vals: list) -> float:
    """Mean of the given values (None skipped); inf when every one is inf (identical pixels)."""
    v = [x for x in vals if x is not None and not np.isnan(x)]
    if not v:
        return float("nan")
    return float("inf") if all(np.isinf(x) for x in v) else float(np.mean([x for x in v
                                                                             if np.isfinite(x)]))


def _fmt(key: str, v: float) -> str:
    if np.isinf(v):
        return "exact"
    return f"{v:.3f}" if "ssim" in key else f"{v:.1f}"


def main(argv: list[str] | None = None) -> int:
    from bench.recon import (THRESHOLD, clip_keypoints, find_clips, frame_metrics,
                             read_frames, working_size)
    from csg.video import probe_video

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clips", nargs="*", type=Path,
                    default=[ROOT.parent / "shared/data/validation"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--max-frames", type=int, default=48)
    ap.add_argument("--every", type=int, default=1, help="score every n-th frame")
    ap.add_argument("--codec", default="taef2", help="'taef2', 'taef2_lite' or 'none'")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    clips = find_clips(a.clips)
    if not clips:
        print("no clips: nothing measured")
        return 0
    codec = None
    if a.codec != "none":
        from pose2video.vdm.codec import build_codec

        codec = build_codec(a.codec)
    rows = []
    for path in clips:
        info = probe_video(path)
        src_hw = (int(info["height"]), int(info["width"]))
        hw = working_size(*src_hw, a.max_side)
        kp, _ = clip_keypoints(path, hw, src_hw, a.max_frames, None)
        per: dict[str, list[dict[str, float]]] = {}
        for t, real in enumerate(read_frames(path, hw, a.max_frames)):
            if t % a.every or t >= len(kp) or not (kp[t, :, 2] > THRESHOLD).any():
                continue
            for s in a.sizes:
                for c in ((None, codec) if codec is not None else (None,)):
                    name = f"{s}{'' if c is None else ' + ' + a.codec}"
                    per.setdefault(name, []).append(frame_metrics(oracle_frame(real, s, c), real,
                                                                  kp[t]))
        for name, ms in per.items():
            r = {"clip": path.name, "oracle": name, "frames": len(ms)}
            for k in ("psnr", "ssim", "psnr_person", "ssim_person", "psnr_face"):
                r[k] = _mean_exact([m.get(k) for m in ms])
            r["psnr_hand"] = _mean_exact([m.get(k) for m in ms
                                          for k in ("psnr_hand_l", "psnr_hand_r")])
            rows.append(r)
    cols = ("psnr", "ssim", "psnr_person", "ssim_person", "psnr_face", "psnr_hand")
    print("| clip | oracle (working size + codec) | frames | PSNR | SSIM | person PSNR | person SSIM"
          " | face box | hand box |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        vals = " | ".join(_fmt(k, r[k]) for k in cols)
        print(f"| {r['clip'][:28]} | {r['oracle']} | {r['frames']} | {vals} |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
