"""Output steps of stage 1 after sampling (pure numpy on (T, 133, 2) pixel coordinates).

Each is a sampling option in ``audio2pose.json`` (:class:`audio2pose.config.SamplingConfig`), off
when it is at its neutral value; :meth:`audio2pose.pipeline.Audio2PosePipeline.__call__` applies
them in the order Savitzky-Golay -> One-Euro (all regions, or the arms only) -> mouth scale -> idle
motion -> ease out of the reference. Why each exists and what it does to the measures:
docs/audio2pose.md ("Real speakers").

* :func:`scale_mouth` (``sampling.mouth_scale``): the jaw opening (inner-lip gap) times
  ``scale``, moving lower lip and chin as the corpus's jaw does. The synthetic corpus opens the mouth about twice as far as real talkers
  (inner-lip gap / face height: 0.085 in the corpus, 0.022-0.053 on the permissive real faces of
  ``../shared/data/video/face``; ``bench/measure_motion.py --mouth-calibration``), and the model
  learnt the corpus; the scale is that ratio. Correlation measures (lip sync r) do not change.
* :func:`mouth_level_target` + :func:`level_mouth` (proposed, not wired into ``SamplingConfig``
  yet): instead of one scale for everyone, the jaw opening of each clip is scaled so that its mean
  equals a level read off the reference photo's own inner-lip gap,
  ``exp(a) * max(o_ref, floor) ** b`` (:data:`MOUTH_LEVEL`, fitted on the 21 permissive real
  talking faces by ``bench/mouth_calibration.py``). It removes the network's level, which depends
  on the reference's body and face (the same face under a real and under a synthetic body opens
  1.6-2.7x differently), and keeps its time course (lip sync). docs/audio2pose.md, "Mouth level".
* :func:`one_euro_arms` (``sampling.one_euro_arms``): the One-Euro filter (Casiez et al. 2012,
  :func:`csg.smoothing.one_euro`) on elbows, wrists and hands only, with the body and hands
  cut-offs of :data:`csg.smoothing.REGION_CUTOFFS`; the head, face and torso pass unfiltered (the
  all-region filter slowed the head by ~40 %).
* idle motion (``sampling.idle``): :func:`csg.data.synth_motion.idle_motion`, the corpus's head
  and torso process added on top of the model's motion (the model under-produces this
  audio-independent part: 0.22x the corpus's head speed on its own synthetic test split).
"""
from __future__ import annotations

import numpy as np

from csg import keypoints as K

UPPER_INNER = K.INNER_LIPS.start + np.array([1, 2, 3])   # iBUG 61, 62, 63
LOWER_INNER = K.INNER_LIPS.start + np.array([7, 6, 5])   # iBUG 67, 66, 65
ARM_POINTS = np.array([K.LEFT_ELBOW, K.RIGHT_ELBOW, K.LEFT_WRIST, K.RIGHT_WRIST])

MOUTH_LEVEL = (-1.919, 0.400, 0.005)
"""(a, b, floor) of :func:`mouth_level_target`: least squares of log(real mean opening) on
log(max(frame-0 opening, floor)) over the 21 permissive real talking-face clips of
``../shared/data/video/face`` (``python bench/mouth_calibration.py``: leave-one-out rms error
0.36 in log units, 10 of 21 clips within 1.3x; a constant level: 0.52, 6 of 21). The floor (a
closed mouth's inner-lip gap under MediaPipe) was set beforehand, not fitted."""


def scale_mouth(xy: np.ndarray, scale: float) -> np.ndarray:
    """Scale the jaw opening of every frame but frame 0 (the reference) by ``scale``.

    The opening of frame t is the mean inner-lip gap vector ``g_t`` (lower minus upper inner lip
    over the pairs iBUG 61/67, 62/66, 63/65, the pairs of :func:`csg.keypoints.mouth_opening`);
    each face point moves by ``-(1 - scale) * w * g_t`` (the three lower inner-lip points by their
    own pair's gap) with ``w`` its jaw weight in the synthetic
    body (:data:`csg.data.synth_body.JAW_WEIGHTS`: lower lip and chin 1, mouth corners 0.5, the
    jaw line fading to 0 at the ears, upper lip and the rest of the face 0). So the inner-lip gap
    becomes exactly ``scale * g_t``, about a closed mouth (not about the photo's, which may be
    open mid-word), and lip and chin move together as the corpus's jaw does. ``scale`` 1:
    unchanged. xy: (T, 133, 2). Returns float64 (T, 133, 2).
    """
    return _scale_jaw(xy, scale)


def _scale_jaw(xy: np.ndarray, scale: float) -> np.ndarray:
    """The body of :func:`scale_mouth` (also used by :func:`level_mouth`)."""
    from csg.data.synth_body import JAW_WEIGHTS

    out = np.array(xy, np.float64, copy=True)
    if scale == 1.0 or out.shape[0] < 2:
        return out
    pair = out[1:, LOWER_INNER] - out[1:, UPPER_INNER]                    # (T-1, 3, 2)
    move = JAW_WEIGHTS[None, :, None] * pair.mean(1)[:, None]              # (T-1, 68, 2)
    move[:, LOWER_INNER - K.FACE.start] = pair      # each lower inner lip by its own pair's gap
    out[1:, K.FACE] -= (1.0 - float(scale)) * move
    return out


def mouth_level_target(ref_xy: np.ndarray, level: tuple = MOUTH_LEVEL) -> float:
    """The mean mouth opening (inner-lip gap / face height, :func:`csg.keypoints.mouth_opening`)
    expected of a speaker whose photo ``ref_xy`` (133, 2) shows the opening ``o_ref``:
    ``exp(a) * max(o_ref, floor) ** b`` with ``level = (a, b, floor)``; a regression to the
    population mean (b < 1) of a one-frame sample of the speaker's mouth."""
    a, b, floor = level
    o_ref = float(K.mouth_opening(np.asarray(ref_xy, np.float64)[..., :2]))
    return float(np.exp(a) * max(o_ref, floor) ** b)


def level_mouth(xy: np.ndarray, target: float, iters: int = 6) -> np.ndarray:
    """:func:`scale_mouth` with the one scale ``s`` that makes the mean opening of frames 1.. equal
    ``target``. The inner-lip gaps scale by exactly ``s``; the face height (brows to chin) moves a
    little with the chin, so ``s`` is refined by ``iters`` fixed-point steps
    ``s <- s * target / mean`` from ``s = target / mean(xy)`` (linear convergence; after 6 the
    relative residual is < 1e-6 for targets up to 1.5x the input's mean on the test face, whose
    chin moves with the jaw). A sequence whose lips never part is returned unchanged.
    xy: (T, 133, 2). Returns float64 (T, 133, 2)."""
    out = np.array(xy, np.float64, copy=True)
    if out.shape[0] < 2:
        return out
    cur = float(K.mouth_opening(out[1:]).mean())
    if not cur > 1e-9:
        return out
    s = float(target) / cur
    res = _scale_jaw(out, s)
    for _ in range(iters):
        now = float(K.mouth_opening(res[1:]).mean())
        if not now > 1e-9:
            break
        s *= float(target) / now
        res = _scale_jaw(out, s)
    return res


def one_euro_arms(xy: np.ndarray, fps: float, scale: float | None = None) -> np.ndarray:
    """One-Euro filter on the elbows and wrists (``REGION_CUTOFFS['body']``) and the hands
    (``['hands']``) of (T, 133, 2) at ``fps``; every other point unchanged, frame 0 unchanged.
    ``scale``: the torso size in pixels (default: of frame 0). Returns float64."""
    from csg.smoothing import REGION_CUTOFFS, one_euro_groups

    xy = np.asarray(xy, np.float64)
    if scale is None:
        scale = float(K.torso_size(xy[0]))
    return one_euro_groups(xy, fps, [(np.asarray(ARM_POINTS), REGION_CUTOFFS["body"]),
                                     (K.indices(K.HANDS), REGION_CUTOFFS["hands"])], scale=scale)
