"""``csg distill audio2pose``: the few-step stage-1 student (:mod:`audio2pose.distill`)."""
from __future__ import annotations

import click


@click.command("audio2pose")
@click.option("--teacher", default=None,
              help="Teacher pipeline folder (default: the embedded checkpoint).")
@click.option("--data", default=None, help="Dataset root (train split), e.g. from csg data synth.")
@click.option("--out", default=None, help="Run folder; the student is OUT/final.")
@click.option("--steps", "student_steps", type=click.IntRange(1, 50), default=None,
              help="Student DDIM steps (default 4).")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="YAML config (default: the defaults of audio2pose.distill.DistillConfig).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set max_steps=500 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in the run.")
def distill_audio2pose(teacher, data, out, student_steps, config_path, overrides, resume):
    """Distil stage 1 into a few-step student without classifier-free guidance."""
    from csg.config import flag_overrides, load_config

    from .distill import DistillConfig, distill

    extra = flag_overrides(overrides, {"teacher": teacher, "data": data, "out": out,
                                       "student_steps": student_steps})
    cfg = load_config(DistillConfig, config_path, extra)
    final = distill(cfg, resume=resume, echo=click.echo)
    click.echo(f"student pipeline: {final} (use --checkpoint {final}, or --set "
               f"stage1.checkpoint={final} in csg run)")
