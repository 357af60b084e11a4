"""The run configuration read by both ``csg run`` and :class:`pipeline.CoSpeechPipeline`.

``configs/default.yaml`` holds the same values as these defaults; ``--config`` and ``--set`` override
them. Unknown keys raise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from csg.audio import MIN_SPEECH_SECONDS
from csg.config import load_config
from csg.diffusion.guidance import DG_FORMS, MODES, GuidanceConfig

_G = GuidanceConfig()

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


@dataclass(frozen=True)
class Stage1Config:
    checkpoint: str | None = None  # audio2pose pipeline folder or hub id; None = embedded default
    steps: int | None = None  # DDIM steps (None: the checkpoint's own, 25 for the default)
    cfg_scale: float | None = None  # CFG scale on audio (None: the checkpoint's, 2.0; 1 = off)
    # PCE sync guidance: the fields of csg.diffusion.guidance.GuidanceConfig (its defaults)
    guidance: str = _G.mode  # none | sg | dg
    lambda_nonface: float = _G.lambda_nonface  # PAHA lambda_nf
    lambda_face: float = _G.lambda_face  # PAHA lambda_f
    lambda_diff: float = _G.lambda_diff  # PAHA lambda_diff (DG only)
    guided_fraction: float = _G.guided_fraction  # guidance in the first r of the steps
    dg_form: str = _G.dg_form  # DG: "residual" (scale-preserving) | "literal" (Eq. 12 as printed)

    def guidance_config(self, mode: str | None = None) -> GuidanceConfig:
        """These settings as the one :class:`GuidanceConfig` (``mode`` overrides ``guidance``)."""
        return GuidanceConfig(mode=mode or self.guidance, lambda_nonface=self.lambda_nonface,
                              lambda_face=self.lambda_face, lambda_diff=self.lambda_diff,
                              guided_fraction=self.guided_fraction, dg_form=self.dg_form)


@dataclass(frozen=True)
class RenderConfig:
    renderer: str = "warp"  # any name from `csg renderers`
    max_side: int = 512  # the photo is resized so its longer side is at most this (0 = keep)
    config: str | None = None  # renderer YAML (e.g. configs/pose2video/diffusers.yaml)
    dtype: str | None = None  # model renderers' weights: float32 | float16 | bfloat16 (None: theirs)
    weights: str | None = None  # model renderers' weights folder (e.g. a personalised vdm run);
    # overrides the YAML's `weights`; a renderer without weights refuses it before any stage runs
    guidance: str | None = None  # vdm: none | sg | dg (stage-2 sync-classifier guidance,
    # docs/guidance.md); overrides the YAML's `guidance`; other renderers refuse it


@dataclass(frozen=True)
class LimitsConfig:
    max_audio_seconds: float = 600.0  # longer audio is refused; raise it for long talks
    min_audio_seconds: float = MIN_SPEECH_SECONDS  # shorter audio is refused (0.5 s)


@dataclass(frozen=True)
class RunConfig:
    fps: float = 25.0  # pose and video frame rate
    seed: int = 0  # fixes stage 1 and any stochastic renderer
    device: str = "cpu"  # cpu | cuda | cuda:N | mps; reaches stage 1 and the renderer
    stage1: Stage1Config = field(default_factory=Stage1Config)
    render: RenderConfig = field(default_factory=RenderConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)


def validate_run_config(cfg: RunConfig, *, check_device: bool = True) -> RunConfig:
    """Range-check every number and name of ``cfg`` (:mod:`csg.validate`); raise
    :class:`csg.errors.ConfigError` naming the key. Run before any work. Returns ``cfg``."""
    from csg import validate as V
    from csg.errors import ConfigError

    V.fps(cfg.fps, "fps")
    V.seed(cfg.seed, "seed")
    if check_device:
        V.device(cfg.device, "device")
    s1 = cfg.stage1
    if s1.steps is not None:
        V.steps(s1.steps, "stage1.steps")
    if s1.cfg_scale is not None:
        V.cfg_scale(s1.cfg_scale, "stage1.cfg_scale")
    for name in ("lambda_nonface", "lambda_face", "lambda_diff"):
        V.guidance_weight(getattr(s1, name), f"stage1.{name}")
    V.fraction(s1.guided_fraction, "stage1.guided_fraction")
    if s1.guidance not in MODES:
        raise ConfigError(f"stage1.guidance must be one of {', '.join(MODES)}, got "
                          f"{s1.guidance!r}")
    if s1.dg_form not in DG_FORMS:
        raise ConfigError(f"stage1.dg_form must be one of {', '.join(DG_FORMS)}, got "
                          f"{s1.dg_form!r}")
    V.work_side(cfg.render.max_side, "render.max_side")
    if cfg.render.dtype is not None and cfg.render.dtype not in ("float32", "float16", "bfloat16"):
        raise ConfigError(f"render.dtype must be float32, float16 or bfloat16, got "
                          f"{cfg.render.dtype!r}")
    if cfg.render.guidance is not None and cfg.render.guidance not in MODES:
        raise ConfigError(f"render.guidance must be one of {', '.join(MODES)}, got "
                          f"{cfg.render.guidance!r}")
    if not cfg.render.renderer:
        raise ConfigError("render.renderer must name a renderer (see `csg renderers`)")
    V.audio_seconds(cfg.limits.max_audio_seconds, "limits.max_audio_seconds")
    V.finite(cfg.limits.min_audio_seconds, "limits.min_audio_seconds", low=0.0,
             high=cfg.limits.max_audio_seconds)
    return cfg


def load_run_config(path: str | Path | None = None, overrides=(), *,
                    check_device: bool = True) -> RunConfig:
    """``configs/default.yaml`` (or ``path``), then ``key=value`` overrides; validated."""
    cfg = load_config(RunConfig, path or (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file()
                                          else None), overrides)
    return validate_run_config(cfg, check_device=check_device)
