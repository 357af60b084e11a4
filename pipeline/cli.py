"""``csg run``: photo + speech -> mp4 (with the audio), the skeleton JSON and a run record."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import click


def _outputs(out: Path, pose_out: Path | None) -> dict[str, Path]:
    stem = out.name[:-len(out.suffix)] if out.suffix else out.name
    return {"video": out,
            "pose": pose_out or out.with_name(stem + ".pose.json"),
            "run": out.with_name(stem + ".run.json")}


def check_outputs(paths: dict[str, Path], overwrite: bool) -> None:
    """Create the output folders, then refuse existing outputs (without ``overwrite``) and
    unwritable folders, before any work."""
    from csg.errors import OutputError
    from csg.outputs import check_output_path

    for p in paths.values():
        folder = p.parent if str(p.parent) else Path(".")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{folder}: cannot create the output folder ({e.strerror})") from None
        check_output_path(p, overwrite=overwrite)


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
              help="Speech recording (wav/flac/ogg).")
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
@click.option("--seed", type=int, default=None, help="Random seed [default: config seed].")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--quiet", is_flag=True, help="No progress bars or summary.")
def run(ref, audio, out, pose_out, pose_in, ref_pose, renderer, guidance, checkpoint, config_path,
        overrides, seed, device, overwrite, quiet):
    """Photo + speech -> video of the person speaking with gestures."""
    from pipeline.config import load_run_config

    sets = list(overrides)
    for key, value in (("seed", seed), ("device", device), ("render.renderer", renderer),
                       ("stage1.guidance", guidance), ("stage1.checkpoint", checkpoint)):
        if value is not None:
            sets.append(f"{key}={value}")
    cfg = load_run_config(config_path, sets)
    out = out or Path(f"{Path(ref).stem}_{Path(audio).stem}.mp4")
    paths = _outputs(out, pose_out)
    check_outputs(paths, overwrite)
    record = execute(cfg, ref, audio, paths, pose_in=pose_in, ref_pose_path=ref_pose,
                     overwrite=overwrite, quiet=quiet)
    if not quiet:
        t = record["timings"]
        click.echo(f"wrote {paths['video']} ({record['frames']} frames, {record['seconds']:.2f} s) "
                   f"in {t['total']:.1f} s (real-time factor {record['realtime_factor']:.2f}); "
                   f"skeleton {paths['pose']}; record {paths['run']}")


def execute(cfg, ref: Path, audio: Path, paths: dict[str, Path], *, pose_in=None,
            ref_pose_path=None, overwrite=False, quiet=False) -> dict:
    """Run both stages and write the outputs; returns the run record."""
    import torch

    from csg.audio import check_audible, load_audio, num_frames_for
    from csg.config import to_dict
    from csg.errors import CsgError
    from csg.image import load_image
    from csg.pose import PoseSequence, atomic_write_text
    from csg.video import VideoWriter
    from pipeline.pipeline import CoSpeechPipeline, check_pose_matches, working_size

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise CsgError("--device cuda was asked for, but no CUDA device is available")
    image = load_image(ref)
    lim = cfg.limits
    wav = load_audio(audio, 16000, max_seconds=lim.max_audio_seconds,
                     limit_name="limits.max_audio_seconds (--set limits.max_audio_seconds=N)")
    check_audible(wav, 16000, str(audio), min_seconds=lim.min_audio_seconds)
    sr = 16000
    pipe = CoSpeechPipeline.from_config(cfg)
    generator = torch.Generator("cpu").manual_seed(cfg.seed)

    t0 = time.perf_counter()
    if ref_pose_path is not None:
        ref_pose = PoseSequence.load(ref_pose_path).frame(0)
        check_pose_matches(ref_pose, image.shape[:2], str(ref_pose_path))
    else:
        ref_pose = pipe.extract_reference(image)
    timings["extract"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if pose_in is not None:
        poses = PoseSequence.load(pose_in)
        check_pose_matches(poses, image.shape[:2], str(pose_in))
        _say_length_policy(poses, num_frames_for(len(wav), sr, poses.fps), len(wav) / sr, pose_in,
                           quiet)
    else:
        poses = pipe.generate_poses(wav, sr, ref_pose, generator=generator, progress=not quiet)
    timings["audio2pose"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    h, w = working_size(image.shape[0], image.shape[1], cfg.render.max_side)
    frames = pipe.render_frames(image, poses, ref_pose, generator=generator, audio=wav,
                                progress=not quiet)
    with VideoWriter(paths["video"], poses.fps, (h, w), audio=wav, audio_sr=sr,
                     overwrite=overwrite, preset="veryfast") as writer:
        for window in frames:
            for frame in window:
                writer.write(frame)
    timings["render"] = time.perf_counter() - t0

    poses.meta.update({"audio": str(audio), "reference": str(ref), "seed": cfg.seed})
    poses.save(paths["pose"])
    timings["total"] = time.perf_counter() - t_start
    seconds = poses.num_frames / poses.fps
    record = {"format": "csg.run", "version": 1, "inputs": {"ref": str(ref), "audio": str(audio),
              "pose": str(pose_in) if pose_in else None},
              "outputs": {k: str(v) for k, v in paths.items()},
              "config": to_dict(cfg), "seed": cfg.seed, "frames": poses.num_frames,
              "seconds": seconds, "video_size_hw": [h, w], "timings": timings,
              "realtime_factor": seconds / timings["total"], "versions": package_versions()}
    atomic_write_text(paths["run"], json.dumps(record, indent=2) + "\n")
    return record


def _say_length_policy(poses, audio_frames: int, audio_seconds: float, source, quiet: bool):
    """A --pose file of another length than the audio: the video follows the skeleton."""
    if poses.num_frames == audio_frames or quiet:
        return
    what = "trimmed" if poses.num_frames < audio_frames else "padded with silence"
    click.echo(f"note: {source} has {poses.num_frames} frames ({poses.duration:.2f} s) but the "
               f"audio lasts {audio_seconds:.2f} s ({audio_frames} frames); the video follows the "
               f"skeleton and the audio is {what} to {poses.duration:.2f} s", err=True)
