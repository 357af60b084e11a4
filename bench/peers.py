"""csg's stages timed side by side with the cost of the field's peers, in one process, same input.

    python bench/peers.py [--size 256] [--seconds 10] [--rows stage1,csg405,warp,vdm,sd15]
                          [--stage1-student DIR] [--vdm-student DIR] [--vdm-decoder DIR]
                          [--vdm-sparse DIR]
                          [--json out.json]

Every row is printed as *compute seconds per second of video* (lower is better; 1.0 = real time)
and as a ratio to csg's default for that stage (stage 1: the embedded audio2pose teacher; stage 2:
``warp``). Peers are timed with **random weights built from their public architecture** (the cost
is what matters, not the output):

- ``csg405``: the Democratizing-CSG stage-1 denoiser (transformer encoder, 16 layers, width 1024,
  250-frame windows with 25 carried frames, 100 DDIM steps with classifier-free guidance = 2 forward
  passes per step). One forward pass is timed and multiplied out; the windows of the asked length
  are counted exactly.
- ``sd15``: one denoising step of a Stable-Diffusion-1.5-sized UNet (``UNet2DConditionModel``
  defaults = the SD 1.x layout, 860 M parameters) plus a ControlNet built from it (``ControlNetModel.
  from_unet``), one frame at ``--size``. Animate Anyone / MimicMotion-class renderers pay about this
  per frame and step (their reference network or temporal layers add to it), so the per-frame cost
  is printed for 25 steps with classifier-free guidance (x2).

csg rows are timed as used: stage 1 warm (a second call in the same process; start-up and model
load are printed beside it), ``warp`` over ``--seconds`` of real DWPose motion, ``vdm`` rows when the
``vdm`` renderer and its weights are present (else the row says why it is missing).

The machine is shared and noisy: compare the ratios within one run, not the absolute seconds
across runs.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FPS = 25.0


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _square_photo(size: int):
    import cv2

    from csg.image import load_image

    img = load_image(ROOT / "examples/images/moore_anyone-3.png")
    side = min(img.shape[0] // 2, img.shape[1])  # the upper half: a half-body square
    x0 = (img.shape[1] - side) // 2
    return cv2.resize(img[:side, x0:x0 + side], (size, size), interpolation=cv2.INTER_AREA)


def _speech(seconds: float) -> np.ndarray:
    from csg.audio import SAMPLE_RATE, load_audio

    wav = load_audio(ROOT / "examples/audio/whisper_jfk.flac")
    return np.resize(wav, int(seconds * SAMPLE_RATE)).astype(np.float32)


def row_stage1(args, ref_pose, wav, checkpoint=None, label="csg stage 1 (teacher)"):
    import torch

    from audio2pose.pipeline import Audio2PosePipeline
    from csg.audio import SAMPLE_RATE

    t0 = time.perf_counter()
    pipe = Audio2PosePipeline.from_pretrained(checkpoint)
    load = time.perf_counter() - t0
    run = lambda: pipe(wav, SAMPLE_RATE, ref_pose, generator=torch.Generator().manual_seed(0),  # noqa
                       progress=False)
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    warm = _best(run, args.repeat)
    s = pipe.sampling
    return dict(stage=1, name=label, sec_per_sec=warm / args.seconds,
                note=f"{s.steps} DDIM steps, cfg {s.cfg_scale:g}; warm; model load {load:.2f} s, "
                     f"first call {first:.2f} s")


def row_csg405(args):
    import torch

    from audio2pose.model import PoseDenoiser

    torch.manual_seed(0)
    window, carried, steps = 250, 25, 100
    m = PoseDenoiser(audio_dim=768, dim=1024, depth=16, heads=16, ff_mult=4).eval()
    params = sum(p.numel() for p in m.parameters()) / 1e6
    B = 2  # classifier-free guidance: conditional + unconditional pass per step
    z = torch.randn(B, window, 133, 2)
    a = torch.randn(B, window, 768)
    r = torch.randn(B, 133, 2)
    t = torch.full((B,), 500)
    with torch.no_grad():
        m(z, t, a, r)  # warm-up
        step = _best(lambda: m(z, t, a, r), max(1, args.repeat - 1))
    frames = int(round(args.seconds * FPS))
    n_windows = 1 + max(0, math.ceil((frames - window) / (window - carried)))
    total = step * steps * n_windows
    return dict(stage=1, name="CSG-405 stage-1 architecture", sec_per_sec=total / args.seconds,
                note=f"{params:.0f} M params, random weights; {step:.2f} s per CFG forward "
                     f"(batch 2 x {window} frames) x {steps} steps x {n_windows} window(s)")


def _drive_poses(size: int, seconds: float, photo, renderer_ref):
    from csg.pose import PoseSequence

    drive = PoseSequence.load(ROOT / "examples/motion/echomimicv2_pose01.pose.json")
    from pose2video.align import retarget  # the warp renderer's retargeting of a foreign skeleton

    poses = retarget(drive, renderer_ref)
    n = int(round(seconds * FPS))
    idx = np.arange(n) % len(poses)
    return PoseSequence(poses.keypoints[idx], fps=FPS, width=size, height=size)


def row_renderer(args, name: str, photo, ref_pose, poses, wav, label: str, **options):
    import torch

    from pose2video import get_renderer

    try:
        r = get_renderer(name, **options)
        t0 = time.perf_counter()
        state = r.prepare(photo, ref_pose)
        prep = time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 - a missing optional renderer is a row, not a crash
        return dict(stage=2, name=label, sec_per_sec=None, note=f"not run: {type(e).__name__}: {e}")

    def run():
        for _ in r.render(state, poses, audio=wav, generator=torch.Generator().manual_seed(0),
                          progress=False):
            pass

    t = _best(run, 1)
    return dict(stage=2, name=label, sec_per_sec=t / (len(poses) / FPS),
                note=f"{len(poses)} frames at {args.size}px, {len(poses) / t:.1f} fps; "
                     f"prepare {prep:.2f} s")


def row_sd15(args):
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=args.size // 8, cross_attention_dim=768).eval()
    cn = ControlNetModel.from_unet(unet).eval()
    params = (sum(p.numel() for p in unet.parameters()) + sum(p.numel() for p in cn.parameters()))
    h = args.size // 8
    x = torch.randn(1, 4, h, h)
    cond = torch.randn(1, 3, args.size, args.size)
    text = torch.randn(1, 77, 768)
    t = torch.tensor([500])

    def step():
        down, mid = cn(x, t, encoder_hidden_states=text, controlnet_cond=cond, return_dict=False)
        unet(x, t, encoder_hidden_states=text, down_block_additional_residuals=down,
             mid_block_additional_residual=mid)

    with torch.no_grad():
        step()  # warm-up
        s = _best(step, max(1, args.repeat - 1))
    per_frame = s * 25 * 2
    return dict(stage=2, name="SD1.5 UNet + ControlNet (Animate Anyone / MimicMotion class)",
                sec_per_sec=per_frame * FPS,
                note=f"{params / 1e6:.0f} M params, random weights; one step {s:.2f} s per frame at "
                     f"{args.size}px; x 25 steps x 2 (CFG) = {per_frame:.1f} s per frame")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--rows", default="stage1,csg405,warp,vdm,sd15")
    ap.add_argument("--stage1-student", default=None, help="a distilled stage-1 checkpoint folder")
    ap.add_argument("--vdm-weights", default=None, help="vdm teacher weights (default: embedded)")
    ap.add_argument("--vdm-student", default=None, help="distilled vdm weights folder")
    ap.add_argument("--vdm-decoder", default=None,
                    help="small decoder folder for the student row (default: the shipped one)")
    ap.add_argument("--vdm-sparse", default=None,
                    help="vdm fine-tuned to global+local attention (default: the teacher's weights)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows_wanted = set(args.rows.split(","))

    import torch

    from csg.extract import extract_pose

    t_start = time.perf_counter()
    photo = _square_photo(args.size)
    ref_pose = extract_pose(photo)
    wav = _speech(args.seconds)
    rows = []
    if "stage1" in rows_wanted:
        rows.append(row_stage1(args, ref_pose, wav))
        if args.stage1_student:
            rows.append(row_stage1(args, ref_pose, wav, args.stage1_student,
                                   "csg stage 1 (student)"))
    if "csg405" in rows_wanted:
        rows.append(row_csg405(args))
    poses = None
    if rows_wanted & {"warp", "vdm"}:
        poses = _drive_poses(args.size, args.seconds, photo, ref_pose)
    if "warp" in rows_wanted:
        rows.append(row_renderer(args, "warp", photo, ref_pose, poses, wav, "csg warp"))
    if "vdm" in rows_wanted:
        short = poses.slice(0, min(len(poses), 25))  # diffusion rows: one second of video
        opts = {"weights": args.vdm_weights} if args.vdm_weights else {}
        rows.append(row_renderer(args, "vdm", photo, ref_pose, short, wav, "csg vdm (teacher)",
                                 **opts))
        sp = {"weights": args.vdm_sparse} if args.vdm_sparse else dict(opts)
        rows.append(row_renderer(args, "vdm", photo, ref_pose, short, wav,
                                 "csg vdm + sparse attention (global+local)",
                                 attention="global+local", **sp))
        if args.vdm_student:
            rows.append(row_renderer(args, "vdm", photo, ref_pose, short, wav,
                                     "csg vdm (student, TAEF2 decoder)", weights=args.vdm_student,
                                     codec="taef2"))
            rows.append(row_renderer(args, "vdm", photo, ref_pose, short, wav,
                                     "csg vdm (student + small decoder)",
                                     weights=args.vdm_student, codec="taef2_lite",
                                     codec_path=args.vdm_decoder or ""))
    if "sd15" in rows_wanted:
        rows.append(row_sd15(args))

    base = {}
    for r in rows:
        if r["sec_per_sec"] is not None and r["stage"] not in base:
            base[r["stage"]] = r["sec_per_sec"]
    print(f"peers: {args.seconds:g} s of speech, {args.size}x{args.size}, torch threads "
          f"{torch.get_num_threads()}; compute seconds per second of video (1.0 = real time); "
          f"ratio = row / csg default of that stage")
    print(f"| stage | what | s per s of video | ratio to csg | notes |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        v = r["sec_per_sec"]
        ratio = "-" if v is None else f"{v / base[r['stage']]:.3g}x"
        r["ratio"] = None if v is None else v / base[r["stage"]]
        print(f"| {r['stage']} | {r['name']} | {'-' if v is None else f'{v:.3g}'} | {ratio} | "
              f"{r['note']} |")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"total {time.perf_counter() - t_start:.0f} s, peak RSS {rss:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(dict(size=args.size, seconds=args.seconds, rows=rows),
                                        indent=2))


if __name__ == "__main__":
    main()
