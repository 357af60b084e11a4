"""End-to-end speed and memory of `csg run` on the embedded defaults, timed from the shell.

For each clip length (``--seconds 4 10``, the speech repeated to that length) it prints

- **cold**: a fresh ``python -m csg run`` process, timed around the process (interpreter start,
  imports, model loads included): what a user waits for. ``--repeat N`` runs it N times;
- its per-phase times from the run record (``<out>.run.json``: ``timings`` and ``timeline``,
  seconds since the process started, so overlapping phases show as overlapping);
- **warm** (``--warm``, labelled): the same ``csg run`` code called a second time in one Python
  process with stage 1 in that process (imports done, thread pools started, the stage-1 model
  kept between runs as ``csg batch`` keeps it), what a long-lived process gets per run;
- the real-time factor, seconds of video per wall second (>= 1: faster than real time), the peak
  RSS and the load average, because the development machine is shared.

Usage::

    python bench/bench_run.py [--seconds 4 10] [--square] [--repeat 3] [--warm]
                              [--photo PATH] [--audio PATH] [--max-side 512] [--renderer warp]
    python bench/bench_run.py --seconds 600             # the 10-minute long-input benchmark
    python bench/bench_run.py --imports                 # CPU seconds of each import, fresh process

``CSG_STAGE1_PROCESS=0`` in the environment runs stage 1 in the main process (no worker), for a
side-by-side.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("inputs", "extract", "prepare", "stage1_load", "stage1_wait", "stage1_generate",
          "audio2pose_wait", "first_frame", "render")


def make_inputs(tmp: Path, seconds: float, audio: str, photo: str, square: bool) -> tuple[str, str]:
    from csg.audio import load_audio, save_audio

    wav = load_audio(audio, 16000)
    n = int(round(seconds * 16000))
    wav = np.tile(wav, int(np.ceil(n / len(wav))))[:n]
    speech = tmp / f"speech_{seconds:g}s.wav"
    save_audio(speech, wav, 16000)
    if square:
        from csg.image import load_image, save_image

        img = load_image(photo)
        side = min(img.shape[:2])
        photo = str(tmp / "square.png")
        save_image(photo, img[:side, (img.shape[1] - side) // 2:][:, :side])
    return str(speech), photo


def run_args(photo: str, speech: str, out: Path, args) -> list[str]:
    return ["run", "--ref", photo, "--audio", speech, "-o", str(out), "--quiet", "--overwrite",
            "--set", f"render.max_side={args.max_side}",
            "--set", f"limits.max_audio_seconds={max(600.0, max(args.seconds) + 1)}",
            "--renderer", args.renderer]


def cold(photo: str, speech: str, out: Path, args) -> dict:
    """One fresh `python -m csg run` process, timed from outside."""
    cmd = [sys.executable, "-m", "csg", *run_args(photo, speech, out, args)]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = json.loads(out.with_name(out.stem + ".run.json").read_text())
    return {"wall": wall, "record": record, "load": load,
            "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}


def warm_child(photo: str, speech: str, out: Path, args) -> None:
    """In this process: `csg run` twice through its own code; print the second run's record."""
    from csg.cli import main
    from pipeline.worker import in_process

    argv = run_args(photo, speech, out, args)
    with in_process():  # as `csg batch`: stage 1 here, so torch stays imported between runs
        assert main(argv) == 0
        t0 = time.perf_counter()
        assert main(argv) == 0
        wall = time.perf_counter() - t0
    record = json.loads(out.with_name(out.stem + ".run.json").read_text())
    print("WARM " + json.dumps({"wall": wall, "record": record}))


def warm(photo: str, speech: str, out: Path, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_warm-child", "--photo", photo,
           "--audio", speech, "--out", str(out), "--max-side", str(args.max_side),
           "--renderer", args.renderer, "--seconds", *map(str, args.seconds)]
    load = os.getloadavg()[0]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    line = [x for x in res.stdout.splitlines() if x.startswith("WARM ")][-1]
    data = json.loads(line[5:])
    data["load"] = load
    return data


def show(label: str, seconds: float, r: dict, fresh: bool = True) -> None:
    rec, t = r["record"], r["record"]["timings"]
    video = rec["seconds"]
    print(f"  {label}: wall {r['wall']:.2f} s -> real-time factor {video / r['wall']:.2f}"
          f"  (in-run {t['total']:.2f} s, RTF {rec['realtime_factor']:.2f}; load {r['load']:.1f}"
          + (f"; CPU {r['cpu']:.1f} s" if "cpu" in r else "") + ")")
    tl = rec.get("timeline", {})
    origin = 0.0 if fresh else tl.get("total", [0.0])[0]  # warm: from the start of the call
    if fresh and "startup" in t and "first_frame" in tl:
        print(f"    before the run code (interpreter, CLI imports): {t['startup']:.2f} s; "
              f"first frame drawn at {tl['first_frame'][1]:.2f} s")
    if not tl:  # a record from before the timeline existed
        print("    " + ", ".join(f"{k} {v:.2f} s" for k, v in t.items()))
    for name in PHASES:
        if name in tl:
            a, b = tl[name][0] - origin, tl[name][1] - origin
            print(f"    {name:16s} {b - a:6.2f} s   [{a:6.2f} .. {b:6.2f}]")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, nargs="+", default=[4.0, 10.0])
    ap.add_argument("--photo", default=str(ROOT / "examples/images/moore_anyone-3.png"))
    ap.add_argument("--audio", default=str(ROOT / "examples/audio/whisper_jfk.flac"))
    ap.add_argument("--max-side", type=int, default=512)
    ap.add_argument("--renderer", default="warp")
    ap.add_argument("--square", action="store_true",
                    help="crop the photo to its top square first, so the video is max-side^2")
    ap.add_argument("--repeat", type=int, default=1, help="cold runs per clip length")
    ap.add_argument("--warm", action="store_true", help="also the warm (second call) figure")
    ap.add_argument("--imports", action="store_true",
                    help="only: CPU seconds of each import csg run needs, in a fresh process")
    ap.add_argument("--_imports-child", dest="imports_child", action="store_true",
                    help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_warm-child", dest="warm_child", action="store_true",
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.warm_child:
        warm_child(args.photo, args.audio, Path(args.out), args)
        return
    if args.imports_child:
        import_costs()
        return
    if args.imports:
        print(f"import costs, fresh process, load {os.getloadavg()[0]:.1f}:")
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_imports-child"],
                       check=True)
        return
    print(f"machine: {os.cpu_count()} CPUs, {_cpu_model()}; python {sys.version.split()[0]}; "
          f"CSG_STAGE1_PROCESS={os.environ.get('CSG_STAGE1_PROCESS', '(unset: auto)')}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for seconds in args.seconds:
            speech, photo = make_inputs(tmp, seconds, args.audio, args.photo, args.square)
            out = tmp / f"talk_{seconds:g}s.mp4"
            print(f"{seconds:g} s of speech, {args.renderer}, max side {args.max_side}"
                  f"{' (square photo)' if args.square else ''}:")
            walls = []
            for i in range(args.repeat):
                r = cold(photo, speech, out, args)
                walls.append(r["wall"])
                rec = r["record"]
                if i == 0:
                    print(f"  video {tuple(rec['video_size_hw'])}, {rec['frames']} frames, "
                          f"{rec['seconds']:.2f} s")
                show(f"cold #{i + 1} (fresh process, what a user waits for)", seconds, r)
            if args.repeat > 1:
                v = rec["seconds"]
                print(f"  cold over {args.repeat} runs: wall median {np.median(walls):.2f} s "
                      f"(min {min(walls):.2f}, max {max(walls):.2f}) -> real-time factor "
                      f"{v / np.median(walls):.2f} (best {v / min(walls):.2f})")
            if args.warm:
                show("warm (second call in one process; not what a user waits for)", seconds,
                     warm(photo, speech, out, args), fresh=False)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS of one process: {peak_mb:.0f} MB (the stage-1 worker is a second process)")


IMPORTS = [  # (label, modules), imported in this order in one fresh process
    ("numpy, click, yaml, csg.cli, pipeline", ["numpy", "click", "yaml", "csg.cli", "pipeline.cli",
                                                "pipeline.pipeline"]),
    ("cv2 + pose2video.warp", ["cv2", "pose2video.warp"]),
    ("mediapipe", ["mediapipe"]),
    ("av", ["av"]),
    ("torch", ["torch"]),
    ("torch._dynamo (diffusers imports it)", ["torch._dynamo"]),
    ("transformers (diffusers imports it)", ["transformers.utils.quantization_config"]),
    ("diffusers.models.modeling_utils", ["diffusers.models.modeling_utils"]),
    ("audio2pose.model / pipeline / sampling", ["audio2pose.model", "audio2pose.pipeline",
                                                "audio2pose.sampling"]),
    ("scipy.signal", ["scipy.signal"]),
]


def import_costs() -> None:
    """CPU and wall seconds of each import `csg run` needs, in a fresh process (``--imports``)."""
    import importlib

    def step(label, fn):
        c, w = time.process_time(), time.perf_counter()
        fn()
        print(f"  {label:44s} CPU {time.process_time() - c:5.2f} s   wall "
              f"{time.perf_counter() - w:5.2f} s", flush=True)

    for label, mods in IMPORTS:
        step(label, lambda mods=mods: [importlib.import_module(m) for m in mods])
        if mods == ["torch"]:
            step("stage-1 weights + config.json: safetensors, no diffusers", _plain_load)
    from audio2pose import Audio2PosePipeline

    step("stage-1 weights (Audio2PosePipeline.from_pretrained)",
         lambda: Audio2PosePipeline.from_pretrained())


def _plain_load() -> None:
    from safetensors.torch import load_file

    from audio2pose.pipeline import DEFAULT_DIR

    json.loads((DEFAULT_DIR / "model" / "config.json").read_text())
    for f in (DEFAULT_DIR / "model").glob("*.safetensors"):
        load_file(str(f))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
