"""Re-generate part of a skeleton sequence with stage 1, keeping chosen frames fixed.

Frames [start, stop) that are not locked are sampled again by the stage-1 diffusion model; every
other frame is *known*: the locked frames of the span, and up to ``sampling.overlap`` frames of
context on each side of it, so the new motion joins the old without a seam. Known frames enter the
sampler the way :func:`audio2pose.sampling.sample_long` carries its overlaps (model input +
RePaint pasting, Lugmayr et al. 2022), over windows of ``sampling.window`` frames. The sampler's
output is smoothed as stage 1 smooths it, runs of new frames are bent to meet their known
neighbours (:func:`warp_to_known`), and the known frames are copied back from the input bit for
bit, so locked frames stay byte-exact in the saved JSON.

Uses the public pieces of :class:`audio2pose.Audio2PosePipeline` (model, features, fps, sampling
defaults) and the stage-1 sampler's ``sample(..., known=, known_mask=)``.
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from csg.errors import InputError

logger = logging.getLogger(__name__)


def _sampler():
    """``(sample, window_spans)``: stage 1's window sampler with known frames, and the window
    plan (in :mod:`csg.diffusion.windows` once the shared diffusion core has landed)."""
    from audio2pose.sampling import sample

    try:
        from csg.diffusion.windows import window_spans
    except ImportError:
        from audio2pose.sampling import window_spans
    return sample, window_spans


def warp_to_known(xy: np.ndarray, known: np.ndarray, radius: int = 8) -> np.ndarray:
    """Bend each run of generated frames so it leaves and meets its known neighbours smoothly.

    Motion warping (Witkin & Popovic 1995): a displacement is added that is largest next to a known
    frame and fades out with :func:`~pipeline.editor.state.smoothstep` over ``radius`` frames: for
    a run starting at ``s`` after a known frame ``s - 1`` it is ``fade(i) * (xy[s-1] - xy[s])`` on
    frame ``s + i``, with fade falling from ~1 to ~0, so the run eases out of the known pose instead
    of jumping; likewise into the known frame after the run. Known frames are not changed.

    xy: (n, J, 2) float; known: (n,) bool. Returns float32 (n, J, 2).
    """
    from .state import smoothstep

    out = np.asarray(xy, np.float64).copy()
    known = np.asarray(known, bool)
    n = len(known)
    edges = np.flatnonzero(np.diff(np.concatenate([[1], known.astype(np.int8), [1]])))
    for s, e in zip(edges[::2], edges[1::2]):  # runs [s, e) of generated frames
        length = e - s
        r = min(radius, length)
        fade = 1.0 - smoothstep(np.arange(1, r + 1) / (r + 1.0))  # (r,) from ~1 down to ~0
        gap_in = out[s - 1] - out[s] if s > 0 else 0.0  # known frame before the run
        gap_out = out[e] - out[e - 1] if e < n else 0.0  # known frame after it
        out[s:s + r] += fade[:, None, None] * gap_in
        out[e - r:e] += fade[::-1, None, None] * gap_out
    return out.astype(np.float32)


def clip_features(pipe, wav: np.ndarray, num_frames: int) -> np.ndarray:
    """(T, D) float32 audio features of ``wav`` (16 kHz mono) for ``num_frames`` pose frames."""
    from csg.audio import SAMPLE_RATE, fit_to_frames
    from csg.features import audio_features

    wav = fit_to_frames(np.asarray(wav, np.float32), num_frames, SAMPLE_RATE, pipe.fps)
    return audio_features(wav, SAMPLE_RATE, pipe.fps, num_frames, pipe.features)


def regenerate(pipe, features: np.ndarray, ref_kp: np.ndarray, keypoints: np.ndarray,
               start: int, stop: int, locked: np.ndarray, *, seed: int = 0,
               steps: int | None = None, cfg_scale: float | None = None,
               callback: Callable[[int, int], None] | None = None) -> np.ndarray:
    """New keypoints for frames [start, stop): (stop - start, 133, 3) float32.

    pipe: an :class:`audio2pose.Audio2PosePipeline`; features: (T, D) from :func:`clip_features`;
    ref_kp: (133, 3) the photo's skeleton (the stage-1 reference); keypoints: (T, 133, 3) the
    current sequence; locked: (T,) bool. Locked frames of the span come back unchanged (same bytes).
    ``seed`` fixes the result (a CPU ``torch.Generator``), ``steps`` / ``cfg_scale`` default to the
    checkpoint's, as in ``csg pose generate``. callback(done, total) after each sampling step.
    """
    import torch

    from audio2pose.normalize import (RELIABLE, denormalize, normalize, reference_anchors,
                                      turn_hands, unturn_hands)
    from audio2pose.pipeline import savgol_smooth

    sample, window_spans = _sampler()
    s = pipe.sampling
    steps = s.steps if steps is None else int(steps)
    cfg_scale = s.cfg_scale if cfg_scale is None else float(cfg_scale)
    T = keypoints.shape[0]
    if features.shape[0] != T:
        raise InputError(f"audio features cover {features.shape[0]} frames, the skeleton {T}")
    try:
        reference_anchors(ref_kp)
    except ValueError as e:
        raise InputError(f"reference skeleton: {e}; give --ref-pose with both shoulders") from None
    a0, b0 = max(0, start - s.overlap), min(T, stop + s.overlap)
    free = np.zeros(b0 - a0, bool)
    free[start - a0:stop - a0] = ~np.asarray(locked[start:stop], bool)
    out = keypoints[start:stop].copy()
    if not free.any():
        return out

    m = pipe.model
    dev = next(m.parameters()).device
    # the reference as `csg pose generate` gives it to the network (hips completed, hands turned
    # into the training range), the known frames in the same frame, and back on the output
    net_kp, ref_rel, turns, shifts = pipe.network_reference(np.asarray(ref_kp, np.float32))
    ref_in = torch.from_numpy(np.where(net_kp[:, 2:] > RELIABLE, ref_rel, 0.0)).float().to(dev)
    rel = turn_hands(normalize(keypoints[a0:b0, :, :2], net_kp), turns, shifts) - ref_rel
    z = m.standardize(torch.from_numpy(rel).float().to(dev))[None]  # (1, n, 133, 2)
    scores = torch.zeros(z.shape[:3], device=dev)
    audio = torch.from_numpy(np.asarray(features[a0:b0], np.float32)).to(dev)[None]
    done = ~free  # frames holding a value: known, or generated by an earlier window
    spans = [(a, b) for a, b in window_spans(b0 - a0, s.window, s.overlap)]
    todo = [(a, b) for a, b in spans if not done[a:b].all()]
    total, count = len(todo) * steps, [0]

    def on_step(i, t, zz):
        count[0] += 1
        if callback is not None:
            callback(count[0], total)

    g = torch.Generator().manual_seed(int(seed))
    for a, b in todo:
        if done[a:b].all():
            continue
        mask = torch.from_numpy(done[a:b].copy()).to(dev)[None]
        res = sample(m, audio[:, a:b], ref_in[None], steps=steps, cfg_scale=cfg_scale, generator=g,
                     known=z[:, a:b].clone(), known_mask=mask, eta=s.eta,
                     window=(a0 + a, a0 + b), callback=on_step)
        new = torch.from_numpy(~done[a:b]).to(dev)
        z[0, a:b][new] = res.z0[0][new].to(z.dtype)
        scores[0, a:b][new] = res.scores[0][new].to(scores.dtype)
        done[a:b] = True

    if callback is not None:
        callback(total, total)  # windows whose frames an earlier window filled are skipped
    rel_out = unturn_hands(m.destandardize(z[0]).float().cpu().numpy() + ref_rel, turns, shifts)
    xy = savgol_smooth(denormalize(rel_out, net_kp), s.savgol)
    xy[~free] = keypoints[a0:b0][~free, :, :2]  # the smoothing moved them; the warp needs them
    xy = warp_to_known(xy, ~free)
    sc = np.where(ref_kp[None, :, 2] > RELIABLE, scores[0].float().cpu().numpy(), 0.0)
    gen = np.concatenate([xy, sc[..., None]], axis=-1).astype(np.float32)
    span_free = free[start - a0:stop - a0]
    out[span_free] = gen[start - a0:stop - a0][span_free]
    return out
