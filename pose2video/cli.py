"""``csg render`` and ``csg renderers``: stage 2 from the command line."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from . import available_renderers, get_renderer


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def renderer_options(name: str, config: str | None) -> dict[str, Any]:
    """Keyword options for ``get_renderer(name)``, resolved the same way by ``csg render
    --config`` and ``csg run --set render.config=...``: the YAML file if given (a relative path that
    is not found from the working folder is tried from the project root, so
    ``configs/pose2video/warp.yaml`` works anywhere), else the packaged
    ``configs/pose2video/<name>.yaml`` when present, else the defaults."""
    from csg.config import read_yaml

    if config is not None:
        p = Path(config)
        if not p.is_file() and not p.is_absolute() and (PROJECT_ROOT / p).is_file():
            p = PROJECT_ROOT / p
        return read_yaml(p)
    packaged = PROJECT_ROOT / "configs" / "pose2video" / f"{name}.yaml"
    return read_yaml(packaged) if packaged.is_file() else {}


DTYPES = ("float32", "float16", "bfloat16")


def build_renderer(name: str, device: str, options: dict[str, Any], dtype: str | None = None):
    """``get_renderer(name, device=device, dtype=dtype, **options)`` (protocol v2): the one way
    ``csg run``, ``csg render`` and :class:`pipeline.CoSpeechPipeline` build a renderer, so the
    options, device and dtype reach it alike and a bad option fails here, before any stage runs."""
    if dtype is not None and dtype not in DTYPES:
        from csg.errors import ConfigError

        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    clash = sorted({"device", "dtype"} & set(options))
    if clash:
        from csg.errors import ConfigError

        raise ConfigError(f"renderer options: {', '.join(clash)}: device and dtype are run "
                          "settings, not renderer options (protocol v2); remove them from the "
                          "renderer YAML and use --device / --dtype (csg run: --set "
                          "render.dtype=...)")
    return get_renderer(name, device=device, dtype=dtype, **options)


@click.command("render")
@click.option("--ref", "ref_path", required=True, type=click.Path(dir_okay=False),
              help="Reference photo of the person.")
@click.option("--pose", "pose_path", required=True, type=click.Path(dir_okay=False),
              help="Skeleton JSON (csg.pose) on the photo's canvas.")
@click.option("--audio", "audio_path", type=click.Path(dir_okay=False), default=None,
              help="Speech to mux into the video (optional).")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Output .mp4.")
@click.option("--renderer", "name", default="warp", show_default=True,
              help="Registered renderer (see `csg renderers`).")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="Renderer YAML (default: configs/pose2video/<renderer>.yaml).")
@click.option("--ref-pose", "ref_pose_path", type=click.Path(dir_okay=False), default=None,
              help="The photo's own skeleton JSON (default: extracted from the photo).")
@click.option("--retarget", is_flag=True,
              help="The skeleton comes from another person or canvas: fit it onto the photo's "
                   "skeleton first.")
@click.option("--max-side", type=int, default=512, show_default=True,
              help="Work at this longer side (the photo and skeletons are scaled down to it, as "
                   "in `csg run`); 0 keeps the photo's size.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of stochastic renderers (the same stage-2 noise as `csg run --seed`).")
@click.option("--device", default="cpu", show_default=True, help="torch device: cpu, cuda, cuda:N.")
@click.option("--dtype", type=click.Choice(DTYPES), default=None,
              help="Weights dtype of model renderers [default: the renderer's].")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def render(ref_path: str, pose_path: str, audio_path: str | None, out_path: str, name: str,
           config: str | None, ref_pose_path: str | None, retarget: bool, max_side: int,
           seed: int, device: str, dtype: str | None, overwrite: bool, quiet: bool) -> None:
    """Render a skeleton JSON into a video of the photo, with the audio muxed in."""
    from csg import validate as V
    from csg.errors import require_file
    from csg.image import load_image
    from csg.outputs import OutputSet, require_suffix
    from csg.pose import PoseSequence
    from csg.seeds import stage_generator
    from csg.video import VideoWriter

    V.seed(seed)
    V.work_side(max_side, "--max-side")
    device = V.device(device)
    outputs = OutputSet({"-o": out_path}, overwrite=overwrite,
                        inputs={"--ref": ref_path, "--pose": pose_path, "--audio": audio_path,
                                "--ref-pose": ref_pose_path, "--config": config})
    require_suffix(out_path, (".mp4",), "the video (-o)")
    renderer = build_renderer(name, device, renderer_options(name, config), dtype)
    require_file(ref_path, "photo")
    poses = PoseSequence.load(pose_path)
    ref_pose = PoseSequence.load(ref_pose_path).frame(0) if ref_pose_path else None
    audio = None
    if audio_path is not None:
        from csg.audio import SAMPLE_RATE, load_audio

        audio = load_audio(audio_path, SAMPLE_RATE, first_seconds=poses.duration + 1.0)
    image = load_image(ref_path)
    from .base import reference_pose_for

    # the photo's skeleton on the full photo, named by its path in errors, as `csg run` extracts it
    ref_pose = reference_pose_for(image, ref_pose, str(ref_path))
    if retarget:
        from .align import retarget as fit

        poses = fit(poses, ref_pose)
    work, poses_w, ref_w = _working_inputs(image, poses, ref_pose, max_side)
    state = renderer.prepare(work, ref_w)
    gen = stage_generator(seed, "render")
    n = 0
    with outputs, VideoWriter(outputs.temp("-o"), poses.fps, work.shape[:2], audio=audio,
                              overwrite=True) as writer:
        for window in renderer.render(state, poses_w, audio=audio, generator=gen,
                                      progress=not quiet):
            for frame in window:
                writer.write(frame)
            n += len(window)
    if not quiet:
        click.echo(f"wrote {out_path}: {n} frames at {poses.fps:g} fps, "
                   f"{work.shape[1]}x{work.shape[0]} ({name})")
    from csg.cli import exit_without_teardown

    exit_without_teardown()  # outputs are committed: skip the interpreter's teardown


def _working_inputs(image, poses, ref_pose, max_side: int):
    """The photo at the working size and the skeletons scaled onto it, after checking that they
    are on the photo's canvas."""
    from csg.canvas import rescale_pose, resize_to_working

    from .base import CanvasMismatchError

    h0, w0 = image.shape[:2]
    for what, p in (("--pose", poses), ("--ref-pose", ref_pose)):
        if p is not None and (p.height, p.width) != (h0, w0):
            raise CanvasMismatchError(
                f"{what}: canvas is {p.width}x{p.height} (width x height) but the reference photo "
                f"is {w0}x{h0}; generate the skeleton for this photo, or fit it onto the photo "
                "with `csg render --retarget`")
    work = resize_to_working(image, max_side)
    h, w = work.shape[:2]
    return (work, rescale_pose(poses, h, w),
            None if ref_pose is None else rescale_pose(ref_pose, h, w))


@click.command("renderers")
def renderers() -> None:
    """List the registered renderers and what each needs."""
    rows = available_renderers()
    width = max(len(n) for n, _, _ in rows)
    for name, needs, desc in rows:
        click.echo(f"{name:<{width}}  {desc}")
        click.echo(f"{'':<{width}}  needs: {needs}")
