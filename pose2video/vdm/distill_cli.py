"""``csg distill vdm``: few-step ``vdm`` students and sparse-attention fine-tunes
(:mod:`pose2video.vdm.distill`)."""
from __future__ import annotations

import click


@click.command("vdm")
@click.option("--teacher", default=None, help="Teacher model folder (default: the embedded checkpoint).")
@click.option("--cache", "caches", multiple=True,
              help="Latent cache folder(s) of csg train renderer (default: data/vdm/cache128).")
@click.option("--out", default=None, help="Run folder; the model is exported into it.")
@click.option("--steps", "student_steps", type=click.IntRange(1, 50), default=None,
              help="Student DDIM steps (default 1).")
@click.option("--method", type=click.Choice(["trajectory", "finetune"]), default=None,
              help="trajectory: few-step student (default); finetune: sparse-attention fine-tune.")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="YAML config (default: pose2video.vdm.distill.VdmDistillConfig defaults).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set max_steps=200 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in the run.")
def distill_vdm(teacher, caches, out, student_steps, method, config_path, overrides, resume):
    """Distil the vdm renderer into a few-step student (or fine-tune it to sparse attention)."""
    from csg.config import flag_overrides, load_config, parse_overrides

    from .distill import VdmDistillConfig, distill

    over = parse_overrides(flag_overrides(overrides, {"teacher": teacher, "out": out,
                                                      "student_steps": student_steps,
                                                      "method": method}))
    if caches:
        over["cache"] = list(caches)
    cfg = load_config(VdmDistillConfig, config_path, over)
    final = distill(cfg, resume=resume, echo=click.echo)
    click.echo(f"vdm model: {final} (use --set render.weights={final} in csg run)")


@click.command("decoder")
@click.option("--cache", "caches", multiple=True,
              help="Latent cache folder(s) of csg train renderer (default: data/vdm/cache128).")
@click.option("--pairs", multiple=True, type=click.Path(dir_okay=False),
              help="pairs.pt of csg distill vdm: the teacher's sampled latents (repeatable).")
@click.option("--media", multiple=True, type=click.Path(),
              help="Videos / photos or folders of them to take random crops from (repeatable).")
@click.option("--out", default=None, help="Run folder; the decoder is exported into it.")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="YAML config (default: pose2video.vdm.decoder_distill.DecoderDistillConfig).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set max_steps=2000 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in the run.")
def distill_decoder(caches, pairs, media, out, config_path, overrides, resume):
    """Distil TAEF2's decoder into a small one (the vdm student's decoding cost)."""
    from csg.config import flag_overrides, load_config, parse_overrides

    from .decoder_distill import DecoderDistillConfig, distill_decoder as run

    over = parse_overrides(flag_overrides(overrides, {"out": out}))
    if caches:
        over["cache"] = list(caches)
    if pairs:
        over["pairs"] = list(pairs)
    if media:
        over["media"] = list(media)
    cfg = load_config(DecoderDistillConfig, config_path, over)
    final = run(cfg, resume=resume, echo=click.echo)
    click.echo(f"decoder: {final} (use --set render.codec=taef2_lite --set "
               f"render.codec_path={final})")
