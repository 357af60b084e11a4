"""``csg run``: photo + speech -> mp4 (with the audio), the skeleton JSON and a run record."""
from __future__ import annotations

import itertools
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import click


def _outputs(out: Path, pose_out: Path | None) -> dict[str, Path]:
    stem = out.name[:-len(out.suffix)] if out.suffix else out.name
    return {"video": out,
            "pose": pose_out or out.with_name(stem + ".pose.json"),
            "run": out.with_name(stem + ".run.json")}


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("csg", "torch", "diffusers", "transformers", "accelerate", "numpy", "mediapipe",
                 "av", "opencv-python"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


@click.command("run")
@click.option("--ref", "ref", required=True, type=click.Path(path_type=Path),
              help="Photo of the person (jpg/png).")
@click.option("--audio", "audio", required=True, type=click.Path(path_type=Path),
              help="Speech recording (wav/flac/ogg, or a video / m4a with an audio track).")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="Output mp4 [default: <ref>_<audio>.mp4].")
@click.option("--pose-out", type=click.Path(path_type=Path), default=None,
              help="Skeleton JSON to write [default: <out>.pose.json].")
@click.option("--pose", "pose_in", type=click.Path(path_type=Path), default=None,
              help="Render this (edited) skeleton JSON instead of running stage 1.")
@click.option("--ref-pose", type=click.Path(path_type=Path), default=None,
              help="Reference skeleton of the photo [default: extracted with MediaPipe].")
@click.option("--renderer", default=None, help="Renderer name (see `csg renderers`).")
@click.option("--guidance", type=click.Choice(["none", "sg", "dg"]), default=None,
              help="PCE sync-classifier guidance for stage 1.")
@click.option("--checkpoint", default=None, help="Stage-1 checkpoint folder or cached hub id.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Run config YAML [default: configs/default.yaml].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set stage1.steps=10 (repeatable).")
@click.option("--seed", type=int, default=None,
              help="Random seed, 0 .. 2**64-1 [default: config seed]; each stage derives its own "
                   "generator from it.")
@click.option("--device", default=None, help="torch device: cpu, cuda, cuda:N [default: config].")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--quiet", is_flag=True, help="No progress bars or summary.")
def run(ref, audio, out, pose_out, pose_in, ref_pose, renderer, guidance, checkpoint, config_path,
        overrides, seed, device, overwrite, quiet):
    """Photo + speech -> video of the person speaking with gestures."""
    from csg import validate as V
    from csg.config import flag_overrides
    from csg.errors import require_file
    from csg.outputs import OutputSet, require_suffix
    from pipeline.config import load_run_config

    if seed is not None:
        V.seed(seed)
    if device is not None:
        device = V.device(device)
    sets = flag_overrides(overrides, {"seed": seed, "device": device, "render.renderer": renderer,
                                      "stage1.guidance": guidance,
                                      "stage1.checkpoint": checkpoint})
    cfg = load_run_config(config_path, sets)
    out = out or Path(f"{Path(ref).stem}_{Path(audio).stem}.mp4")
    paths = _outputs(out, pose_out)
    inputs = {"--ref": ref, "--audio": audio, "--pose": pose_in, "--ref-pose": ref_pose,
              "--config": config_path}
    outputs = OutputSet({"-o": paths["video"], "--pose-out": paths["pose"],
                         "run record": paths["run"]}, overwrite=overwrite, inputs=inputs)
    require_suffix(paths["video"], (".mp4",), "the video (-o)")
    require_suffix(paths["pose"], (".json",), "the skeleton (--pose-out)")
    require_file(ref, "photo")
    require_file(audio, "audio file")
    with outputs:
        record = execute(cfg, ref, audio, outputs, pose_in=pose_in, ref_pose_path=ref_pose,
                         quiet=quiet)
    if not quiet:
        t = record["timings"]
        click.echo(f"wrote {paths['video']} ({record['frames']} frames, {record['seconds']:.2f} s) "
                   f"in {t['total']:.1f} s (real-time factor {record['realtime_factor']:.2f}); "
                   f"skeleton {paths['pose']}; record {paths['run']}")
    from csg.cli import exit_without_teardown

    exit_without_teardown()  # outputs are committed: skip the interpreter's teardown


def execute(cfg, ref: Path, audio: Path, outputs, *, pose_in=None, ref_pose_path=None,
            quiet=False) -> dict:
    """Run both stages through :class:`pipeline.CoSpeechPipeline` and write the outputs into the
    temporary files of ``outputs`` (a :class:`csg.outputs.OutputSet` keyed ``-o``, ``--pose-out``,
    ``run record``, committed by the caller); returns the run record.

    The work overlaps where it can without changing a byte of the outputs: stage 1 loads (torch,
    diffusers, the weights) in a forked worker process (:mod:`pipeline.worker`) while this process
    decodes the audio and extracts the reference skeleton, the renderer prepares the photo while
    stage 1 samples, and a thread encodes the video while the renderer draws the next frames.
    """
    from csg.audio import SAMPLE_RATE, check_audible, load_audio, num_frames_for
    from csg.config import to_dict
    from csg.image import load_image
    from csg.pose import PoseSequence
    from csg.video import VideoWriter
    from pipeline.pipeline import CoSpeechPipeline, check_pose_matches
    from pipeline.worker import start_stage1

    startup = process_age()
    t_start = time.perf_counter()
    spans: dict[str, tuple[float, float]] = {}

    def span(name: str, t0: float) -> None:
        spans[name] = (t0, time.perf_counter())

    if "torch" not in sys.modules:
        # torch's OpenMP threads sleep instead of spinning while they wait for work: spinning
        # threads fight the renderer, the encoder and any other job for the cores (on the shared
        # 2-core machine stage-1 sampling ran 5-30x slower spinning); no effect on the numbers.
        # Read when torch loads, so only before; an OMP_WAIT_POLICY the user set is kept.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    pipe = CoSpeechPipeline.from_config(cfg)
    pipe.renderer()  # built now: a bad renderer name or option fails here, before any stage
    from pipeline.parallel import buffer_bytes, can_split, render_parallel, splittable

    # the helper process: stage 1 (unless a skeleton is given), then frame spans for a renderer
    # whose frames can be drawn anywhere (warp); None when a fork is not safe here (csg batch)
    frame_bytes = buffer_bytes(cfg.render.max_side) if splittable(pipe.renderer()) else 0
    helper = (start_stage1(pipe, stage1=pose_in is None, frame_bytes=frame_bytes)
              if pose_in is None or frame_bytes else None)
    stage1 = helper if pose_in is None else None
    try:
        lim = cfg.limits
        wav = load_audio(audio, SAMPLE_RATE, max_seconds=lim.max_audio_seconds,
                         limit_name="limits.max_audio_seconds (--set limits.max_audio_seconds=N)")
        check_audible(wav, SAMPLE_RATE, str(audio), min_seconds=lim.min_audio_seconds)
        image = load_image(ref)
        ref_pose = poses = None
        if ref_pose_path is not None:
            ref_pose = PoseSequence.load(ref_pose_path).frame(0)
            check_pose_matches(ref_pose, image.shape[:2], str(ref_pose_path))
        if pose_in is not None:
            poses = PoseSequence.load(pose_in)
            check_pose_matches(poses, image.shape[:2], str(pose_in))
            _say_length_policy(poses, num_frames_for(len(wav), SAMPLE_RATE, poses.fps),
                               len(wav) / SAMPLE_RATE, pose_in, quiet)
        span("inputs", t_start)
        t0 = time.perf_counter()
        if ref_pose is None:
            ref_pose = pipe.extract_reference(image, str(ref))
        span("extract", t0)
        if stage1 is not None:
            stage1.submit(wav, SAMPLE_RATE, ref_pose, seed=cfg.seed, guidance=None,
                          progress=not quiet)
        t0 = time.perf_counter()
        prepared = pipe.prepare(image, ref_pose)  # while stage 1 samples in its worker
        span("prepare", t0)
        if stage1 is not None:
            t0 = time.perf_counter()
            if not stage1.in_process:  # idle until the helper answers: import the encoder now
                import av  # noqa: F401
            poses = stage1.result()
            span("audio2pose_wait", t0)
            spans.update(stage1.spans)
        t0 = time.perf_counter()
        drawers = 2 if helper is not None and can_split(pipe.renderer(), helper) else 1
        if drawers == 2:
            from csg.canvas import rescale_pose

            h, w = prepared.size_hw
            frames = render_parallel(pipe.renderer(), prepared.state, rescale_pose(poses, h, w),
                                     helper, audio=wav, progress=not quiet)
        else:
            if helper is not None:
                helper.close()  # stage 1 done; nothing else for it to do
            frames = pipe.render_frames(prepared, poses, audio=wav, sr=SAMPLE_RATE,
                                        progress=not quiet)
        first = next(frames, None)
        if first is None:
            from csg.errors import CsgError

            raise CsgError(f"renderer {cfg.render.renderer!r} produced no frames for "
                           f"{poses.num_frames} skeletons; nothing was written")
        h, w = first.shape[1:3]
        span("first_frame", t0)
        with VideoWriter(outputs.temp("-o"), poses.fps, (h, w), audio=wav,
                         audio_sr=SAMPLE_RATE, overwrite=True, preset="veryfast") as writer:
            n = write_chunks(writer, itertools.chain([first], frames))
        span("render", t0)
    finally:
        if helper is not None:
            helper.close()
    if n != poses.num_frames:
        from csg.errors import CsgError

        raise CsgError(f"renderer {cfg.render.renderer!r} produced {n} frames for "
                       f"{poses.num_frames} skeletons; nothing was written")
    poses.meta.update({"audio": str(audio), "reference": str(ref), "seed": cfg.seed})
    poses.save(outputs.temp("--pose-out"))
    span("total", t_start)
    timings = {name: b - a for name, (a, b) in spans.items()}
    timings["audio2pose"] = timings.get("stage1_load", 0.0) + timings.get("stage1_generate", 0.0)
    timings["stage1_in_process"] = float(stage1 is None or stage1.in_process)
    # when each phase ran: seconds since the process started (or since execute began)
    origin = t_start - (startup or 0.0)
    timeline = {name: [round(a - origin, 3), round(b - origin, 3)] for name, (a, b) in spans.items()}
    seconds = poses.num_frames / poses.fps
    record = {"format": "csg.run", "version": 1, "inputs": {"ref": str(ref), "audio": str(audio),
              "pose": str(pose_in) if pose_in else None},
              "outputs": {"video": str(outputs["-o"]), "pose": str(outputs["--pose-out"]),
                          "run": str(outputs["run record"])},
              "config": to_dict(cfg), "seed": cfg.seed, "frames": poses.num_frames,
              "seconds": seconds, "video_size_hw": [h, w], "timings": timings,
              "timeline": timeline, "realtime_factor": seconds / timings["total"],
              "render_processes": drawers,
              "versions": package_versions()}
    if startup is not None:
        timings["startup"] = startup
        timings["process"] = startup + timings["total"]
        record["realtime_factor_process"] = seconds / timings["process"]
    outputs.temp("run record").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def write_chunks(writer, chunks, depth: int = 2) -> int:
    """Write the (n, H, W, 3) frame chunks of the iterator ``chunks`` with ``writer.write`` from
    a second thread, so encoding (x264, which leaves Python's GIL) overlaps the drawing of the
    next chunk; frames keep their order, so the file is the same as written in one thread. At most
    ``depth`` chunks wait (each is copied: a renderer may reuse its buffer). Returns the number of
    frames; an error in either thread stops both and is raised here."""
    import queue

    import numpy as np

    todo: queue.Queue = queue.Queue(maxsize=depth)
    failed: list[BaseException] = []

    def encode() -> None:
        while True:
            chunk = todo.get()
            if chunk is None:
                return
            if failed:
                continue  # drain, so the producer never blocks on a dead consumer
            try:
                for frame in chunk:
                    writer.write(frame)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                failed.append(e)

    thread = threading.Thread(target=encode, name="csg-encode", daemon=True)
    thread.start()
    n = 0
    try:
        for chunk in chunks:
            if failed:
                break
            todo.put(np.array(chunk, copy=True))
            n += len(chunk)
    finally:
        todo.put(None)
        thread.join()
    if failed:
        raise failed[0]
    return n


def process_age() -> float | None:
    """Seconds since this process started (interpreter start-up and imports included), read from
    Linux's /proc; None elsewhere."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _say_length_policy(poses, audio_frames: int, audio_seconds: float, source, quiet: bool):
    """A --pose file of another length than the audio: the video follows the skeleton."""
    if poses.num_frames == audio_frames or quiet:
        return
    what = "trimmed" if poses.num_frames < audio_frames else "padded with silence"
    click.echo(f"note: {source} has {poses.num_frames} frames ({poses.duration:.2f} s) but the "
               f"audio lasts {audio_seconds:.2f} s ({audio_frames} frames); the video follows the "
               f"skeleton and the audio is {what} to {poses.duration:.2f} s", err=True)
