"""DDIM sampling of skeleton sequences, with the guidance hook and RePaint-style known frames.

The diffusion state ``z`` (B, T, 133, 2) is the standardised motion relative to the reference:
``standardize(normalize(xy, ref) - normalize(ref, ref))`` (:mod:`.normalize`,
:meth:`PoseDenoiser.standardize`), so the reference frame itself is ``standardize(0)``.

Guidance hook contract (used by :mod:`csg.guidance`, PAHA Algorithm 1). At step ``i`` the loop builds
the one-step solver ``f(z) -> z_prev``: one (CFG-batched) denoiser call at the current ``t``, the
classifier-free guidance combine, the DDIM update to the next ``t_prev``, then the known frames are
pasted back noised to ``t_prev``. Every call of ``f`` within a step uses the SAME noise, so
``f`` is a deterministic function of ``z``. The loop then does::

    z_prev = guide(f, z, i, ctx) if guide is not None else f(z)

``ctx`` is a :class:`GuideContext` (t, t_prev, sigma_t = sqrt(1 - alphas_cumprod[t]), i, num_steps,
audio features, ref, known frames, the window, and ``predict_x0(z)``). Known frames are handled in
two ways at once: the model sees them as input (mask + values, trained with random prefixes) and the
sampler replaces them with their noised known values after each step (RePaint, Lugmayr et al. 2022),
exactly at the end.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from . import diffusion as D

logger = logging.getLogger(__name__)


@dataclass
class GuideContext:
    """What a guide sees at one sampling step. Tensors: audio (B, T, D), ref (B, 133, 2) model input,
    known (B, T, 133, 2) / known_mask (B, T) bool or None. window: (start, stop) frames in the whole
    sequence. predict_x0(z) -> (B, T, 133, 2): the CFG x0 estimate at this step's t."""

    t: int
    t_prev: int
    sigma_t: float
    i: int
    num_steps: int
    audio: torch.Tensor
    ref: torch.Tensor
    known: torch.Tensor | None
    known_mask: torch.Tensor | None
    predict_x0: Callable[[torch.Tensor], torch.Tensor]
    window: tuple[int, int] = (0, 0)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SampleOutput:
    """z0: (B, T, 133, 2) standardised coordinates; scores: (B, T, 133) in [0, 1]."""

    z0: torch.Tensor
    scores: torch.Tensor


def _denoise_cfg(model, z, t, audio, ref, known, known_mask, cfg_scale):
    """One model call; CFG runs conditional and null-audio halves as one batch of 2B."""
    B = z.shape[0]
    tt = torch.full((B,), t, dtype=torch.long, device=z.device)
    if cfg_scale == 1.0:
        out = model(z, tt, audio, ref, known=known, known_mask=known_mask)
        return out.sample, out.score_logits
    cat = lambda x: None if x is None else torch.cat([x, x])  # noqa: E731
    drop = torch.cat([torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)]).to(z.device)
    out = model(cat(z), torch.cat([tt, tt]), cat(audio), cat(ref), known=cat(known),
                known_mask=cat(known_mask), drop_audio=drop)
    cond, uncond = out.sample[:B], out.sample[B:]
    return D.cfg_combine(cond, uncond, cfg_scale), out.score_logits[:B]


@torch.no_grad()
def sample(model, audio: torch.Tensor, ref: torch.Tensor, *, steps: int, cfg_scale: float,
           generator: torch.Generator, known: torch.Tensor | None = None,
           known_mask: torch.Tensor | None = None, eta: float = 0.0,
           guide: Callable | None = None, window: tuple[int, int] = (0, 0),
           callback: Callable[[int, int, torch.Tensor], None] | None = None) -> SampleOutput:
    """DDIM sampling of one window (Song et al. 2021) with CFG and the guidance hook (module doc).

    audio: (B, T, D) features; ref: (B, 133, 2) reference input; known / known_mask: frames
    fixed in advance (B, T, 133, 2) / (B, T) bool. All noise comes from ``generator`` (drawn on its
    device, then moved). callback(i, t, z_prev) after each step. Returns :class:`SampleOutput`.
    """
    cfg = model.config
    ac = D.cosine_alphas_cumprod(cfg.num_train_timesteps)
    ts = D.ddim_timesteps(cfg.num_train_timesteps, steps)
    B, T = audio.shape[:2]
    shape = (B, T, cfg.num_keypoints, 2)
    dev, dtype = audio.device, audio.dtype
    randn = lambda: torch.randn(shape, generator=generator, device=generator.device,  # noqa: E731
                                dtype=torch.float32).to(dev, dtype)
    z = randn()
    m = known_mask[..., None, None] if known_mask is not None else None
    if m is not None:
        z = torch.where(m, D.q_sample(known, ts[0], z, ac), z)
    last_logits = [None]
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        step_noise, paste_noise = randn(), randn()

        def f(z_in: torch.Tensor, t=t, t_prev=t_prev, step_noise=step_noise,
              paste_noise=paste_noise) -> torch.Tensor:
            out, logits = _denoise_cfg(model, z_in, t, audio, ref, known, known_mask, cfg_scale)
            last_logits[0] = logits
            z_prev, _ = D.ddim_step(out, z_in, t, t_prev, ac, cfg.prediction_type, eta=eta,
                                    noise=step_noise)
            if m is not None:
                k = known if t_prev < 0 else D.q_sample(known, t_prev, paste_noise, ac)
                z_prev = torch.where(m, k, z_prev)
            return z_prev

        def predict_x0(z_in: torch.Tensor, t=t) -> torch.Tensor:
            out, _ = _denoise_cfg(model, z_in, t, audio, ref, known, known_mask, cfg_scale)
            return D.to_x0_eps(out, z_in, t, ac, cfg.prediction_type)[0]

        if guide is not None:
            ctx = GuideContext(t=t, t_prev=t_prev, sigma_t=float((1 - ac[t]).sqrt()), i=i,
                               num_steps=len(ts), audio=audio, ref=ref, known=known,
                               known_mask=known_mask, predict_x0=predict_x0, window=window)
            z = guide(f, z, i, ctx)
        else:
            z = f(z)
        if callback is not None:
            callback(i, t, z)
    return SampleOutput(z0=z, scores=torch.sigmoid(last_logits[0]))


def window_spans(num_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Cover ``num_frames`` with windows of ``window`` frames, each after the first starting
    ``overlap`` frames before the previous one ends. Returns [(start, stop), ...]; the last window is
    shortened to end at ``num_frames`` (so it has at least ``overlap + 1`` frames).
    0 <= overlap < window."""
    if not 0 <= overlap < window:
        raise ValueError(f"need 0 <= overlap < window, got overlap={overlap}, window={window}")
    if num_frames <= window:
        return [(0, num_frames)]
    spans, start = [], 0
    while True:
        stop = min(start + window, num_frames)
        spans.append((start, stop))
        if stop == num_frames:
            return spans
        start = stop - overlap  # leaves num_frames - start > overlap frames, so >= 1 new frame


@torch.no_grad()
def sample_long(model, audio: torch.Tensor, ref: torch.Tensor, first: torch.Tensor, *,
                window: int, overlap: int,
                steps: int, cfg_scale: float, generator: torch.Generator, eta: float = 0.0,
                guide: Callable | None = None,
                callback: Callable[[int, int, torch.Tensor], None] | None = None) -> SampleOutput:
    """Any length, memory bounded by ``window``: windows from :func:`window_spans`.

    audio: (B, T, D); ref: (B, 133, 2) reference input; first: (B, 133, 2) state of frame 0 (the
    reference: ``standardize(0)``). Frame 0 of the whole sequence is fixed to ``first``; each later window continues from the last ``overlap`` frames of the one before (known
    prefix, see :func:`sample`), so there are no seams. Returns :class:`SampleOutput` over all T.
    """
    B, T = audio.shape[:2]
    z_all = torch.zeros(B, T, model.config.num_keypoints, 2, dtype=audio.dtype, device=audio.device)
    s_all = torch.zeros(B, T, model.config.num_keypoints, dtype=audio.dtype, device=audio.device)
    for w, (a, b) in enumerate(window_spans(T, window, overlap)):
        n = b - a
        known = torch.zeros(B, n, *z_all.shape[2:], dtype=audio.dtype, device=audio.device)
        mask = torch.zeros(B, n, dtype=torch.bool, device=audio.device)
        if w == 0:
            known[:, 0], mask[:, 0] = first, True
        else:
            k = min(overlap, n - 1)
            known[:, :k], mask[:, :k] = z_all[:, a:a + k], True
        logger.debug("window %d: frames %d-%d", w, a, b)
        out = sample(model, audio[:, a:b], ref, steps=steps, cfg_scale=cfg_scale,
                     generator=generator, known=known, known_mask=mask, eta=eta, guide=guide,
                     window=(a, b), callback=callback)
        keep = mask[0].sum().item() if w > 0 else 0
        z_all[:, a + keep:b] = out.z0[:, keep:]
        s_all[:, a + keep:b] = out.scores[:, keep:]
    return SampleOutput(z0=z_all, scores=s_all)
