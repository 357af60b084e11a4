"""CLI of stage 1: ``csg pose generate`` and ``csg train audio2pose``. Only click at import."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from csg.diffusion.guidance import DG_FORMS, MODES, GuidanceConfig

GUIDANCE = MODES
_G = GuidanceConfig()  # the one set of PCE defaults


@click.command("generate")
@click.option("--audio", "audio_path", required=True, type=click.Path(dir_okay=False),
              help="Speech recording (wav, flac, ogg).")
@click.option("--ref", "ref_path", required=True, type=click.Path(dir_okay=False),
              help="Reference photo (jpg/png) or reference skeleton (csg.pose JSON).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Output skeleton JSON.")
@click.option("--steps", type=int, default=None, help="DDIM steps (default: the checkpoint's).")
@click.option("--cfg", "cfg_scale", type=float, default=None,
              help="Classifier-free guidance scale (default: the checkpoint's; 1 = off).")
@click.option("--seed", type=int, default=0, show_default=True, help="Fixes the result.")
@click.option("--checkpoint", default=None,
              help="Pipeline folder or cached hub id (default: the embedded checkpoint).")
@click.option("--guidance", type=click.Choice(GUIDANCE), default="none", show_default=True,
              help="PAHA sync-classifier guidance: sequential (sg) or differential (dg).")
@click.option("--guidance-checkpoint", default=None,
              help="Folder holding classifier_face/ and classifier_nonface/ (default: the "
                   "embedded checkpoint's).")
@click.option("--lambda-nonface", type=float, default=_G.lambda_nonface, show_default=True,
              help="PCE: λ_nf, weight of the non-face (body, hands) classifier step (PAHA Eq. 8).")
@click.option("--lambda-face", type=float, default=_G.lambda_face, show_default=True,
              help="PCE: λ_f, weight of the face (mouth, jaw) classifier step (PAHA Eq. 9).")
@click.option("--lambda-diff", type=float, default=_G.lambda_diff, show_default=True,
              help="PCE: λ_diff, weight of the differential correction (dg only, PAHA Eq. 12).")
@click.option("--guided-fraction", type=click.FloatRange(0.0, 1.0),
              default=_G.guided_fraction,
              show_default=True, help="PCE: guide only the first r of the sampling steps.")
@click.option("--dg-form", type=click.Choice(DG_FORMS), default=_G.dg_form,
              show_default=True,
              help="PCE dg: Eq. 12 as printed (literal) or differences only (residual).")
@click.option("--max-audio-seconds", type=float, default=600.0, show_default=True,
              help="Refuse longer audio.")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda:0.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
def generate(audio_path, ref_path, output, steps, cfg_scale, seed, checkpoint, guidance,
             guidance_checkpoint, lambda_nonface, lambda_face, lambda_diff, guided_fraction,
             dg_form, max_audio_seconds, device, overwrite, quiet):
    """Generate a skeleton sequence from speech and a reference photo or skeleton."""
    import time

    from csg.audio import SAMPLE_RATE, check_audible, load_audio
    from csg.validate import pose_generate_options

    out = Path(output)
    outputs, device = pose_generate_options(
        out, overwrite=overwrite, inputs={"--audio": audio_path, "--ref": ref_path},
        steps_value=steps, cfg_value=cfg_scale, seed_value=seed, lambda_nonface=lambda_nonface,
        lambda_face=lambda_face, lambda_diff=lambda_diff, guided_fraction=guided_fraction,
        max_audio_seconds=max_audio_seconds, device_name=device)
    wav = load_audio(audio_path, SAMPLE_RATE, max_seconds=max_audio_seconds,
                     limit_name="--max-audio-seconds")
    check_audible(wav, SAMPLE_RATE, str(audio_path))
    ref = load_reference(ref_path)
    if "torch" not in sys.modules:
        # as csg run does (pipeline/cli.py): torch's OpenMP threads sleep instead of spinning while
        # they wait, so other jobs on the cores do not slow sampling down; read when torch loads
        import os

        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from .pipeline import Audio2PosePipeline

    t0 = time.time()
    pipe = Audio2PosePipeline.from_pretrained(checkpoint, device=device)
    gcfg = GuidanceConfig(mode=guidance, lambda_nonface=lambda_nonface, lambda_face=lambda_face,
                          lambda_diff=lambda_diff, guided_fraction=guided_fraction,
                          dg_form=dg_form)
    guide = _load_guide(gcfg, guidance_checkpoint, device)
    poses = pipe(wav, SAMPLE_RATE, ref, steps=steps, cfg_scale=cfg_scale,
                 generator=torch.Generator().manual_seed(seed), guide=guide, progress=not quiet,
                 seed=seed)
    if guidance != "none":
        poses.meta["guidance"] = guidance
        poses.meta["guidance_settings"] = gcfg.settings()
    with outputs:
        poses.save(outputs.temp("-o"))
    if not quiet:
        click.echo(f"wrote {out}: {poses.num_frames} frames at {poses.fps:g} fps "
                   f"({poses.num_frames / poses.fps:.1f} s of motion, generated in "
                   f"{time.time() - t0:.1f} s)")
    from csg.cli import exit_without_teardown

    exit_without_teardown()  # outputs are committed: skip the interpreter's teardown


def load_reference(path: str):
    """A reference skeleton from a csg.pose JSON (its first frame) or a photo (csg.extract)."""
    from csg.errors import InputError, require_file
    from csg.pose import PoseSequence

    p = require_file(path, "reference", InputError)
    if p.suffix.lower() == ".json":
        return PoseSequence.load(p).frame(0)
    from csg.extract import extract_pose
    from csg.image import load_image

    return extract_pose(load_image(p), source=str(p))


def _load_guide(cfg: GuidanceConfig, checkpoint, device: str):
    """The PCE sampler hook for ``cfg`` (None for mode "none")."""
    if cfg.mode == "none":
        return None
    from csg.errors import CsgError

    try:
        from .classifier import load_guide
    except ImportError:
        raise CsgError("guidance classifiers not available (audio2pose.classifier is missing); "
                       "use --guidance none") from None
    return load_guide(cfg, checkpoint, device=device)


@click.command("audio2pose")
@click.option("--config", "config_path", default="configs/audio2pose/base.yaml",
              show_default=True, type=click.Path(dir_okay=False), help="YAML config.")
@click.option("--data", default=None, help="Dataset root (overrides the config's data).")
@click.option("--out", default=None, help="Run folder (overrides the config's out).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set model.dim=256 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in the run.")
def train(config_path, data, out, overrides, resume):
    """Train the stage-1 skeleton diffusion model (accelerate: one CPU or many GPUs)."""
    from csg.config import find_config, load_config

    from .config import TrainConfig
    from .train import train as run_training

    extra = list(overrides) + ([f"data={data}"] if data else []) + ([f"out={out}"] if out else [])
    cfg = load_config(TrainConfig, find_config(config_path), extra)
    final = run_training(cfg, resume=resume, echo=click.echo)
    click.echo(f"final pipeline: {final}")
