"""``csg train renderer``: train or personalise the ``vdm`` renderer."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("renderer")
@click.option("--config", "config_path", default="configs/pose2video/vdm_cpu.yaml",
              show_default=True, type=click.Path(dir_okay=False), help="YAML training config.")
@click.option("--data", multiple=True, help="Prepared dataset root(s) (override the config's).")
@click.option("--out", default=None, help="Run folder (overrides the config's out).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set max_steps=500 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in the run.")
@click.option("--init", default=None,
              help="Model folder to fine-tune from (default with --video: the embedded one).")
@click.option("--video", "videos", multiple=True, type=click.Path(dir_okay=False),
              help="Personalise: prepare this talking video (repeatable) and fine-tune on it.")
def train_renderer(config_path, data, out, overrides, resume, init, videos):
    """Train the vdm renderer (accelerate: one CPU or many GPUs); --video personalises it."""
    from csg.config import find_config, load_config
    from csg.errors import InputError

    from .config import VdmTrainConfig
    from .train import train

    extra = list(overrides) + ([f"out={out}"] if out else [])
    if data:
        extra.append("data=[" + ", ".join(repr(str(d)) for d in data) + "]")
    cfg = load_config(VdmTrainConfig, find_config(config_path), extra)
    if videos and init is None:
        from .renderer import EMBEDDED

        init = str(EMBEDDED)
    if init:  # fine-tuning: the model's own size, window, carry and audio features, unless --set
        cfg = _from_init(cfg, Path(init), overrides)
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise InputError(f"{cfg.out}: the run folder (--out) is a file")
    if videos:
        if data:
            raise InputError("--video and --data: give one or the other")
        root = prepare_personal(videos, Path(cfg.out), cfg.size)
        from dataclasses import replace

        cfg = replace(cfg, data=(str(root),), framing=PERSONAL_MARGIN)
    final = train(cfg, resume=resume, init=init, echo=click.echo)
    click.echo(f"renderer weights: {final} (use: csg run --renderer vdm --set "
               f"render.weights={final})")


def _from_init(cfg, init: Path, overrides) -> "VdmTrainConfig":  # noqa: F821
    """``cfg`` with size, window, carry, features and codec of the model at ``init`` (its vdm.json),
    except keys given with --set."""
    import json
    from dataclasses import replace

    from csg.config import from_dict
    from csg.errors import WeightsNotFoundError
    from csg.features import AudioFeatureConfig

    note_path = init / "vdm.json"
    if not note_path.is_file():
        raise WeightsNotFoundError(f"{init}: not a vdm model folder (no vdm.json); train one with "
                                   f"`csg train renderer --out {init}`")
    note = json.loads(note_path.read_text())
    given = {o.split("=", 1)[0].strip().split(".")[0] for o in overrides}
    keep = {k: note[k] for k in ("size", "window", "carry", "codec", "codec_path")
            if k in note and k not in given}
    if "features" in note and "features" not in given:
        keep["features"] = from_dict(AudioFeatureConfig, note["features"], f"{note_path} features")
    return replace(cfg, **keep)


PERSONAL_MARGIN = 1.0  # crop margin of a personalisation video (most of the frame around the person)


def prepare_personal(videos, out: Path, size: int) -> Path:
    """``csg data prepare`` on the given videos into ``OUT/data`` (one speaker, all train)."""
    import shutil

    from csg.data.prepare import PrepareConfig, prepare_videos
    from csg.errors import DataError, require_file
    from csg.training import new_run_folder
    from csg.video import probe_video

    for v in videos:  # each a readable video, before anything is written
        probe_video(require_file(v, "video"))
    src = out / "videos"
    with new_run_folder(out):  # (prepared clips are .npz files: prepare_videos resumes from them)
        src.mkdir(exist_ok=True)
        for v in videos:
            p = Path(v)
            dst = src / p.name
            if not dst.exists():
                shutil.copyfile(p, dst)
        cfg = PrepareConfig(size_hw=(size, size), min_face=0.5, min_body=0.5, min_visible=0.5,
                            min_seconds=1.0, split_by="file", margin=PERSONAL_MARGIN)
        recs = prepare_videos(src, out / "data", cfg)
        if not recs:
            raise DataError(f"{', '.join(videos)}: no usable clip (a visible person for at least "
                            "1 s is needed)")
    return out / "data"
