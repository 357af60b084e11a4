"""``csg train classifier``: train a PAHA sync classifier (PCE). Only click at import."""
from __future__ import annotations

import click

STAGES = ("pose", "video")
CONFIGS = {"pose": "configs/classifier/pose.yaml",  # relative to the cwd, else to the repository
           "video": "configs/classifier/video.yaml"}


@click.command("classifier")
@click.option("--stage", type=click.Choice(STAGES), default="pose", show_default=True,
              help="Which stage's classifier (pose: stage 1 on skeletons; video: stage 2 on vdm "
                   "latents).")
@click.option("--region", type=click.Choice(("face", "nonface")), required=True,
              help="face: mouth + jaw; nonface: body, feet and hands.")
@click.option("--data", default=None,
              help="Dataset root (overrides the config's data; video: the latent cache folder).")
@click.option("--generator", default=None,
              help="Generator folder for self-distillation negatives (pose: stage-1 checkpoint, "
                   "video: vdm weights, whose encoder also initialises the classifier; default: "
                   "the embedded one).")
@click.option("--out", default=None, help="Run folder (overrides the config's out).")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="YAML config (default: configs/classifier/<stage>.yaml).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set max_steps=500 (repeatable).")
@click.option("--cpu", is_flag=True, help="Force the CPU even when a GPU is visible.")
def train_classifier(stage, region, data, generator, out, config_path, overrides, cpu):
    """Train a sync classifier (accelerate: one CPU or many GPUs via `accelerate launch`)."""
    from csg.config import load_config

    if stage == "video":
        return _train_video(region, data, generator, out, config_path, overrides)
    from .classifier_train import ClassifierTrainConfig, train

    extra = list(overrides) + [f"region={region}"]
    extra += [f"data={data}"] if data else []
    extra += [f"generator={generator}"] if generator else []
    extra += [f"out={out}"] if out else []
    cfg = load_config(ClassifierTrainConfig, config_path or _default_config(stage), extra)
    result = train(cfg, cpu=cpu)
    acc = {k: round(v["acc"], 3) for k, v in result.get("val", {}).items()}
    click.echo(f"classifier ({cfg.region}) saved to {cfg.out}/final; held-out accuracy {acc}")


def _train_video(region, data, generator, out, config_path, overrides):
    """``--stage video``: :mod:`pose2video.vdm.classifier_train` (one process, CPU threads from
    the config)."""
    from csg.config import load_config
    from pose2video.vdm.classifier_train import VideoClassifierTrainConfig, train

    extra = list(overrides) + [f"region={region}"]
    extra += [f"cache={data}"] if data else []
    extra += [f"generator={generator}"] if generator else []
    extra += [f"out={out}"] if out else []
    cfg = load_config(VideoClassifierTrainConfig, config_path or _default_config("video"), extra)
    result = train(cfg)
    acc = {k: round(v["acc"], 3) for k, v in result.get("val", {}).items()}
    click.echo(f"video classifier ({cfg.region}) saved to {cfg.out}/final; held-out accuracy {acc}")


def _default_config(stage: str) -> str:
    from pathlib import Path

    rel = Path(CONFIGS[stage])
    repo = Path(__file__).resolve().parents[1] / rel
    return str(rel if rel.is_file() or not repo.is_file() else repo)
