"""``csg render`` and ``csg renderers``: stage 2 from the command line."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .base import available_renderers, get_renderer


def renderer_options(name: str, config: str | None) -> dict[str, Any]:
    """Keyword options for ``get_renderer(name)``: the YAML file if given, else the packaged
    ``configs/pose2video/<name>.yaml`` when present, else the defaults."""
    from csg.config import read_yaml

    if config is not None:
        return read_yaml(config)
    packaged = Path(__file__).resolve().parent.parent / "configs" / "pose2video" / f"{name}.yaml"
    return read_yaml(packaged) if packaged.is_file() else {}


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
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of stochastic renderers.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def render(ref_path: str, pose_path: str, audio_path: str | None, out_path: str, name: str,
           config: str | None, ref_pose_path: str | None, retarget: bool, seed: int,
           overwrite: bool, quiet: bool) -> None:
    """Render a skeleton JSON into a video of the photo, with the audio muxed in."""
    import torch

    from csg.image import load_image
    from csg.pose import PoseSequence
    from csg.video import VideoWriter, check_output_path

    check_output_path(out_path, overwrite=overwrite)
    renderer = get_renderer(name, **renderer_options(name, config))
    image = load_image(ref_path)
    poses = PoseSequence.load(pose_path)
    ref_pose = PoseSequence.load(ref_pose_path) if ref_pose_path else None
    if retarget:
        from .align import retarget as fit
        from .base import reference_pose_for

        ref_pose = reference_pose_for(image, ref_pose)
        poses = fit(poses, ref_pose)
    audio = None
    if audio_path is not None:
        from csg.audio import SAMPLE_RATE, load_audio

        audio = load_audio(audio_path, SAMPLE_RATE)
    gen = torch.Generator().manual_seed(seed)
    n = 0
    with VideoWriter(out_path, poses.fps, image.shape[:2], audio=audio,
                     overwrite=overwrite) as writer:
        for window in renderer.render(image, poses, ref_pose=ref_pose, audio=audio, generator=gen,
                                      progress=not quiet):
            for frame in window:
                writer.write(frame)
            n += len(window)
    if not quiet:
        click.echo(f"wrote {out_path}: {n} frames at {poses.fps:g} fps ({name})")


@click.command("renderers")
def renderers() -> None:
    """List the registered renderers and what each needs."""
    rows = available_renderers()
    width = max(len(n) for n, _, _ in rows)
    for name, needs, desc in rows:
        click.echo(f"{name:<{width}}  {desc}")
        click.echo(f"{'':<{width}}  needs: {needs}")
