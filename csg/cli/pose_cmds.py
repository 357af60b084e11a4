"""``csg pose draw | validate | convert``: look at, check and convert skeleton files."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

MAX_DRAW_PIXELS = 40_000_000
"""Largest canvas (width x height) ``csg pose draw`` draws: a 40 MP frame is 120 MB."""


@click.command()
@click.argument("pose_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="out.mp4 (all frames) or out.png (one frame).")
@click.option("--audio", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Speech to mux into the mp4, trimmed or padded to the pose length.")
@click.option("--frame", "frame_index", type=int, default=0, show_default=True,
              help="Frame drawn for a png output.")
@click.option("--threshold", type=float, default=0.3, show_default=True,
              help="Keypoints scored below this are not drawn.")
@click.option("--overwrite", is_flag=True, help="Replace the output if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def draw(pose_file: Path, output: Path, audio: Path | None, frame_index: int, threshold: float,
         overwrite: bool, quiet: bool) -> None:
    """Draw POSE_FILE (csg.pose JSON) as DWPose-style skeletons to an mp4 or a png."""
    from ..errors import InputError
    from ..outputs import OutputSet
    from ..pose import PoseSequence

    from ..validate import fraction

    fraction(threshold, "--threshold")
    suffix = output.suffix.lower()
    if suffix not in (".mp4", ".png", ".jpg", ".jpeg"):
        raise InputError(f"{output}: output must end in .mp4 (video) or .png/.jpg (one frame)")
    outputs = OutputSet({"-o": output}, overwrite=overwrite,
                        inputs={"POSE_FILE": pose_file, "--audio": audio})
    pose = PoseSequence.load(pose_file)
    if pose.width * pose.height > MAX_DRAW_PIXELS:
        raise InputError(f"{pose_file}: canvas {pose.width}x{pose.height} is too large to draw "
                         f"(over {MAX_DRAW_PIXELS // 1_000_000} megapixels); scale the skeleton "
                         "to a smaller canvas first")
    if suffix == ".mp4":
        with outputs:
            _draw_video(pose, outputs.temp("-o"), audio, threshold, quiet)
        click.echo(f"wrote {output}: {pose.num_frames} frames, {pose.fps:g} fps, "
                   f"{pose.width}x{pose.height}" + (f", audio from {audio}" if audio else ""))
        return
    if audio is not None:
        raise InputError(f"{output}: --audio needs an .mp4 output, not {suffix}")
    if not -pose.num_frames <= frame_index < pose.num_frames:
        raise InputError(f"{pose_file}: --frame {frame_index} is out of range; the file has "
                         f"{pose.num_frames} frames (0..{pose.num_frames - 1})")
    from ..draw import draw_pose
    from ..image import save_image

    img = draw_pose(pose.keypoints[frame_index], pose.size_hw, threshold=threshold)
    with outputs:
        save_image(outputs.temp("-o"), img, overwrite=True)
    click.echo(f"wrote {output}: frame {frame_index % pose.num_frames} of {pose.num_frames}, "
               f"{pose.width}x{pose.height}")


def _draw_video(pose, output: Path, audio: Path | None, threshold: float, quiet: bool) -> None:
    from ..audio import SAMPLE_RATE, load_audio
    from ..draw import draw_sequence
    from ..video import VideoWriter

    wav = (load_audio(audio, SAMPLE_RATE, first_seconds=pose.duration + 1.0)
           if audio is not None else None)  # (only what is muxed under the skeleton is decoded)
    frames = draw_sequence(pose, threshold=threshold)
    with VideoWriter(output, pose.fps, pose.size_hw, audio=wav, audio_sr=SAMPLE_RATE,
                     overwrite=True) as vw:  # output: a live OutputSet temp
        with click.progressbar(frames, length=pose.num_frames, label="drawing",
                               file=sys.stderr,
                               hidden=quiet) as bar:
            for img in bar:
                vw.write(img)


@click.command()
@click.argument("pose_file", type=click.Path(dir_okay=False, path_type=Path))
def validate(pose_file: Path) -> None:
    """Check POSE_FILE against the csg.pose contract; print a summary or the first fault."""
    from ..pose import PoseSequence

    pose = PoseSequence.load(pose_file)
    click.echo(f"ok: {pose.num_frames} frames, {pose.fps:g} fps, {pose.width}x{pose.height}, "
               f"{pose.duration:.2f} s")


@click.command()
@click.argument("input_path", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="csg.pose JSON file, or OpenPose JSON folder/file.")
@click.option("--to", "target", type=click.Choice(["csg", "openpose"]), default=None,
              help="Target format (default: the other one than INPUT's).")
@click.option("--fps", type=float, default=25.0, show_default=True,
              help="Frame rate of OpenPose input, which does not store one.")
@click.option("--width", type=int, default=None, help="Canvas width of OpenPose input without "
              "canvas_width.")
@click.option("--height", type=int, default=None, help="Canvas height of OpenPose input without "
              "canvas_height.")
@click.option("--body", "body_format", type=click.Choice(["coco18", "body25"]), default="coco18",
              show_default=True,
              help="OpenPose body layout to write: coco18 (pose editors) or body25 (keeps the "
                   "six foot points). Reading accepts both.")
@click.option("--overwrite", is_flag=True, help="Replace the output if it exists.")
def convert(input_path: Path, output: Path, target: str | None, fps: float, width: int | None,
            height: int | None, body_format: str, overwrite: bool) -> None:
    """Convert between csg.pose JSON and OpenPose JSON (a folder of per-frame files, or one .json
    for a one-frame pose). The target defaults to the other format than INPUT_PATH's."""
    from .. import openpose
    from .. import validate as V
    from ..errors import InputError
    from ..outputs import OutputSet, check_distinct, require_suffix
    from ..pose import PoseSequence

    if not input_path.exists():
        raise InputError(f"{input_path}: input not found")
    V.fps(fps, "--fps")
    for name, v in (("--width", width), ("--height", height)):
        if v is not None:
            V.canvas_side(v, name)
    check_distinct({"-o": output}, {"INPUT_PATH": input_path})
    if target is None:
        target = "openpose" if _is_csg_pose(input_path) else "csg"
    if target == "openpose":
        pose = PoseSequence.load(input_path)
        written = openpose.to_openpose(pose, output, body_format=body_format,
                                       overwrite=overwrite)
        click.echo(f"wrote {written}: {pose.num_frames} frame(s) as OpenPose JSON "
                   f"({body_format.upper()} body)")
    else:
        require_suffix(output, (".json",), "the skeleton (-o)")
        outputs = OutputSet({"-o": output}, overwrite=overwrite, inputs={"INPUT_PATH": input_path})
        pose = openpose.from_openpose(input_path, fps=fps, width=width, height=height)
        pose.validate(str(output))  # (save validates again, naming the temporary file)
        with outputs:
            pose.save(outputs.temp("-o"))
        click.echo(f"wrote {output}: {pose.num_frames} frames, {pose.fps:g} fps, "
                   f"{pose.width}x{pose.height}")


def _is_csg_pose(path: Path) -> bool:
    """True when ``path`` is a JSON file whose top level says ``"format": "csg.pose"``."""
    if not path.is_file():
        return False
    try:
        with path.open("r", encoding="utf-8") as f:
            head = f.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    if '"csg.pose"' in head:
        return True
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == "csg.pose"
    except (ValueError, AttributeError, OSError):
        return False
