"""``csg eval compare``: run several stage-1 variants over a dataset split, one table.

A variant is ``name=SPEC``. SPEC is ``gt`` (the ground truth itself: the reference row), ``rule``
(the rule-based baseline, :func:`csg.data.synth_motion.rule_based_poses`), or comma-separated
``key:value`` options for the learned model (``audio2pose.Audio2PosePipeline``, loaded once per
variant), e.g. ``guidance:sg``, ``checkpoint:runs/a2p,guidance:dg,steps:20,cfg:2.0``. Keys:
checkpoint, steps, cfg, guidance (none|sg|dg), guidance_checkpoint, device, seed, and the PCE
settings of :class:`csg.diffusion.guidance.GuidanceConfig` (lambda_nonface, lambda_face,
lambda_diff, guided_fraction, dg_form), e.g. ``dg=guidance:dg,lambda_diff:0.5``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from csg.errors import InputError

logger = logging.getLogger(__name__)

PoseGenerator = Callable[..., np.ndarray]
"""``fn(wav (N,), sr, fps, ref (133, 3), *, width, height, seed) -> (T, 133, 3)`` keypoints."""

_NUMERIC = {"steps": int, "cfg": float, "seed": int, "lambda_nonface": float, "lambda_face": float,
            "lambda_diff": float, "guided_fraction": float}


@dataclass(frozen=True)
class Clip:
    """One evaluation clip: ground-truth poses (T, 133, 3), audio (N,) at sr, reference (133, 3)."""

    id: str
    poses: np.ndarray
    audio: np.ndarray
    ref: np.ndarray
    fps: float
    width: int
    height: int
    sr: int = 16000


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``"sg=guidance:sg,steps:10"`` -> ``("sg", {"kind": "model", "guidance": "sg", "steps": 10})``."""
    if "=" not in text:
        raise InputError(f"--variant {text!r}: expected NAME=SPEC, e.g. rule=rule or sg=guidance:sg")
    name, spec = (s.strip() for s in text.split("=", 1))
    if not name or not spec:
        raise InputError(f"--variant {text!r}: NAME and SPEC must both be non-empty")
    if spec in ("gt", "rule"):
        return name, {"kind": spec}
    opts: dict[str, Any] = {"kind": "model"}
    for item in spec.split(","):
        if ":" not in item:
            raise InputError(f"--variant {text!r}: option {item!r} must be key:value (or the whole "
                             "SPEC gt / rule)")
        k, v = (s.strip() for s in item.split(":", 1))
        try:
            opts[k] = _NUMERIC[k](v) if k in _NUMERIC else v
        except ValueError:
            raise InputError(f"--variant {text!r}: {k} must be a number, got {v!r}") from None
    return name, opts


def make_generator(opts: dict[str, Any]) -> PoseGenerator | None:
    """The pose generator for parsed variant options (None for ``gt``)."""
    kind = opts["kind"]
    if kind == "gt":
        return None
    if kind == "rule":
        def rule(wav, sr, fps, ref, *, width, height, seed):
            from csg.data.synth_motion import rule_based_poses

            return rule_based_poses(wav, sr, fps, ref, generator=np.random.default_rng(seed))
        return rule
    return _model_generator({k: v for k, v in opts.items() if k != "kind"})


_GUIDANCE_KEYS = ("lambda_nonface", "lambda_face", "lambda_diff", "guided_fraction", "dg_form")
_MODEL_KEYS = ("checkpoint", "steps", "cfg", "guidance", "guidance_checkpoint", "device"
               ) + _GUIDANCE_KEYS


def _model_generator(kw: dict[str, Any]) -> PoseGenerator:
    """Learned stage 1 via ``audio2pose.Audio2PosePipeline`` (loaded once, on first use)."""
    unknown = sorted(set(kw) - set(_MODEL_KEYS) - {"seed"})
    if unknown:
        raise InputError(f"variant option(s) {', '.join(unknown)} unknown; use "
                         f"{', '.join(_MODEL_KEYS)}, seed")
    from csg.diffusion.guidance import MODES, GuidanceConfig

    if kw.get("guidance", "none") not in MODES:
        raise InputError(f"variant guidance must be one of {', '.join(MODES)}, got "
                         f"{kw['guidance']!r}")
    try:
        gcfg = GuidanceConfig(mode=kw.get("guidance", "none"),
                              **{k: kw[k] for k in _GUIDANCE_KEYS if k in kw})
    except ValueError as e:
        raise InputError(f"variant guidance settings: {e}") from None
    state: dict[str, Any] = {}

    def model(wav, sr, fps, ref, *, width, height, seed):
        import torch

        from csg.pose import PoseSequence

        if not state:
            try:
                from audio2pose import Audio2PosePipeline
            except ImportError:
                raise InputError("this variant needs the learned model (audio2pose), which is not "
                                 "installed; use gt or rule variants") from None
            state["pipe"] = Audio2PosePipeline.from_pretrained(kw.get("checkpoint"),
                                                              device=kw.get("device", "cpu"))
            state["guide"] = None
            if gcfg.mode != "none":
                from audio2pose.classifier import load_guide

                state["guide"] = load_guide(gcfg, kw.get("guidance_checkpoint",
                                                         kw.get("checkpoint")),
                                            device=kw.get("device", "cpu"))
        s = int(kw.get("seed", seed))
        rp = PoseSequence(np.asarray(ref)[None], fps=fps, width=width, height=height)
        out = state["pipe"](wav, sr, rp, steps=kw.get("steps"), cfg_scale=kw.get("cfg"),
                            generator=torch.Generator().manual_seed(s), guide=state["guide"],
                            progress=False, seed=s)
        return out.keypoints
    return model


def run_variants(clips: list[Clip], variants: dict[str, PoseGenerator | None], *,
                 autoencoder=None, checkpoint: str | None = None, seed: int = 0,
                 cfg=None) -> tuple[list[dict[str, Any]], dict[str, dict]]:
    """Generate every clip with every variant and evaluate against the ground truth.

    variants: ``{name: generator or None}`` (None = ground truth). Each clip i uses seed + i.
    Returns (table rows, full reports by variant name).
    """
    from eval.pose_eval import PoseEvalSettings, evaluate_pose_sets

    if not clips:
        raise InputError("no clips to evaluate")
    gts = {c.id: c.poses for c in clips}
    audios = {c.id: c.audio for c in clips}
    fps = {c.id: c.fps for c in clips}
    rows, reports = [], {}
    for name, gen in variants.items():
        preds = {}
        for i, c in enumerate(clips):
            preds[c.id] = c.poses if gen is None else np.asarray(
                gen(c.audio, c.sr, c.fps, c.ref, width=c.width, height=c.height, seed=seed + i),
                np.float32)
        logger.info("variant %s: %d clips generated", name, len(preds))
        rep = evaluate_pose_sets(preds, fps, gts=gts, audios=audios, sr=clips[0].sr,
                                 autoencoder=autoencoder, checkpoint=checkpoint,
                                 cfg=cfg or PoseEvalSettings())
        reports[name] = rep
        rows.append({"variant": name, **rep["summary"]})
    return rows, reports


def load_split(root, split: str, max_clips: int | None = None) -> list[Clip]:
    """Clips of a dataset split (see :mod:`csg.data.manifest`)."""
    from csg.audio import SAMPLE_RATE
    from csg.data.manifest import load_clip, read_manifest, select

    recs = select(read_manifest(root), split)[:max_clips]
    if not recs:
        raise InputError(f"{root}: split {split!r} has no clips (manifest.jsonl 'split' field)")
    out = []
    for r in recs:
        c = load_clip(root, r)
        out.append(Clip(r.id, c.poses, c.audio, c.ref, c.fps, c.width, c.height, SAMPLE_RATE))
    return out


COMPARE_COLUMNS = ("variant", "clips", "fgd", "diversity", "bas", "bas_shift", "bas_other",
                   "lipsync_r", "lipsync_offset", "lipsync_r_shift", "lipsync_r_other", "jitter",
                   "l1", "pck@0.05", "pck@0.1", "hkc")


def compare_markdown(rows: list[dict[str, Any]], settings: dict[str, Any], title: str) -> str:
    from eval.report import markdown_table

    cols = [c for c in COMPARE_COLUMNS if any(c in r for r in rows)]
    return (f"# {title}\n\n" + markdown_table(rows, cols)
            + f"\n- FGD/diversity autoencoder: `{settings.get('autoencoder_checkpoint')}`; BAS "
            f"σ = {settings.get('sigma_frames')} frames; lip-sync lag ±{settings.get('max_lag')} "
            "frames (+ = mouth leads); `_shift` / `_other` are chance controls (rolled own audio / "
            "another clip's audio).\n- L1 in torso sizes; PCK threshold α × ground-truth torso "
            "size.\n")
