"""``csg pose extract``: the reference skeleton of a photo, as csg.pose JSON."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("extract")
@click.option("--image", "image_path", required=True, type=click.Path(dir_okay=False),
              help="Reference photo (one person; head and both shoulders visible).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Skeleton JSON to write (csg.pose, one frame).")
@click.option("--backend", type=click.Choice(["mediapipe", "dwpose"]), default="mediapipe",
              show_default=True, help="Pose estimator.")
@click.option("--dwpose", "dwpose", default=None, metavar="PATH_OR_ID",
              help="DWPose weights: a local folder or a cached hub id (never downloaded).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def extract(image_path: str, output: str, backend: str, dwpose: str | None,
            overwrite: bool) -> None:
    """Extract the reference skeleton (133 whole-body keypoints) from a photo."""
    from csg import keypoints as K
    from csg.extract import extract_pose
    from csg.image import load_image
    from csg.outputs import OutputSet, check_distinct, require_suffix

    check_distinct({"-o": output}, {"--image": image_path})
    out = require_suffix(output, (".json",), "the skeleton (-o)")
    outputs = OutputSet({"-o": out}, overwrite=overwrite, inputs={"--image": image_path})
    image = load_image(image_path)
    pose = extract_pose(image, backend=backend, source=image_path, dwpose=dwpose)
    with outputs:
        pose.save(outputs.temp("-o"))
    s = pose.scores[0]
    click.echo(f"wrote {out} ({pose.width}x{pose.height}, {backend}): mean score body "
               f"{s[K.BODY].mean():.2f}, feet {s[K.FEET].mean():.2f}, face {s[K.FACE].mean():.2f}, "
               f"left hand {s[K.LEFT_HAND].mean():.2f}, right hand {s[K.RIGHT_HAND].mean():.2f}")
