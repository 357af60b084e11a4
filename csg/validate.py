"""Range checks for numbers and names that come from users (CLI options, ``--set``, config files).

Each check raises :class:`csg.errors.ConfigError` (exit code 1, printed as one line) naming the
option, the value and the allowed range, so a bad value fails before any work starts. The limits
here also bound every allocation a user number controls (frame counts, canvas sizes).
"""
from __future__ import annotations

import math
from typing import Any

from .errors import ConfigError

MIN_FPS = 1.0
MAX_FPS = 240.0
"""Frame rates csg accepts (pose files, ``--set fps``, ``--fps``)."""

MAX_CANVAS_SIDE = 16384
"""Largest canvas side (pixels) of a pose file, a drawing or a synthetic clip."""

MAX_STEPS = 1000
"""Most sampling steps a diffusion model takes (the training schedule has 1000 timesteps)."""

MAX_SEED = 2 ** 64 - 1
"""Seeds are 64-bit (torch.Generator.manual_seed takes values in [-2**63, 2**64))."""

MAX_AUDIO_SECONDS = 24 * 3600.0
"""A day of speech: the ceiling for ``max_audio_seconds`` limits."""


def finite(value: Any, name: str, *, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (x <= low if low_open else x < low)
    too_high = high is not None and x > high
    if too_low or too_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name} must be in {bracket}{lo}, {hi}], got {value!r}")
    return x


def integer(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            value = int(value)
        else:
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else str(low)
        hi = "inf" if high is None else str(high)
        raise ConfigError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


MIN_WORK_SIDE = 64
"""Smallest working size (longer side, pixels) a render may be scaled down to."""


def work_side(value: Any, name: str) -> int:
    """A ``max_side`` option: 0 (keep the photo's size) or in [MIN_WORK_SIDE, MAX_CANVAS_SIDE]."""
    v = integer(value, name, low=0, high=MAX_CANVAS_SIDE)
    if 0 < v < MIN_WORK_SIDE:
        raise ConfigError(f"{name} must be 0 (the photo's size) or at least {MIN_WORK_SIDE} px, "
                          f"got {v}: a person is not found in a smaller picture")
    return v


def steps(value: Any, name: str = "--steps") -> int:
    """Sampling steps: 1 .. :data:`MAX_STEPS`."""
    return integer(value, name, low=1, high=MAX_STEPS)


def seed(value: Any, name: str = "--seed") -> int:
    """A seed that fits 64 bits unsigned: 0 .. 2**64 - 1."""
    return integer(value, name, low=0, high=MAX_SEED)


def fps(value: Any, name: str = "fps") -> float:
    """Frames per second: :data:`MIN_FPS` .. :data:`MAX_FPS`."""
    return finite(value, name, low=MIN_FPS, high=MAX_FPS)


def canvas_side(value: Any, name: str) -> int:
    """A canvas side in pixels: 1 .. :data:`MAX_CANVAS_SIDE`."""
    return integer(value, name, low=1, high=MAX_CANVAS_SIDE)


def cfg_scale(value: Any, name: str = "--cfg") -> float:
    """Classifier-free guidance scale: finite, 0 .. 100 (1 = off; typical 1-7)."""
    return finite(value, name, low=0.0, high=100.0)


def guidance_weight(value: Any, name: str) -> float:
    """A PCE λ weight: finite, 0 .. 1000."""
    return finite(value, name, low=0.0, high=1000.0)


def fraction(value: Any, name: str) -> float:
    """A share in [0, 1]."""
    return finite(value, name, low=0.0, high=1.0)


def audio_seconds(value: Any, name: str) -> float:
    """An audio length limit in seconds: finite, > 0, at most :data:`MAX_AUDIO_SECONDS`."""
    return finite(value, name, low=0.0, high=MAX_AUDIO_SECONDS, low_open=True)


def device(value: Any, name: str = "--device") -> str:
    """A torch device name that exists on this machine (``cpu``, ``cuda``, ``cuda:N``, ``mps``).

    Refuses unknown names and accelerators that are not available, with the fix in the message.
    """
    text = str(value).strip().lower()
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()) or \
            (kind == "cpu" and index not in ("", "0")):
        raise ConfigError(f"{name}: unknown device {value!r}; use cpu, cuda, cuda:N or mps")
    if kind == "cpu":
        return "cpu"
    import torch

    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{name} {value}: no CUDA GPU is available on this machine; "
                              "use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError(f"{name} {value}: this machine has {torch.cuda.device_count()} "
                              f"CUDA device(s) (cuda:0..cuda:{torch.cuda.device_count() - 1})")
        return text
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        raise ConfigError(f"{name} {value}: Apple MPS is not available on this machine; "
                          "use --device cpu")
    return text


def pose_generate_options(output, *, overwrite: bool, inputs: dict, steps_value, cfg_value,
                          seed_value, lambda_nonface, lambda_face, lambda_diff, guided_fraction,
                          max_audio_seconds, device_name) -> str:
    """Every check ``csg pose generate`` makes before any work: the output (a new or replaceable
    regular file, not one of ``inputs``, in a folder that exists or can be made), the numeric
    options and the device. Returns ``(outputs, device)``: the :class:`csg.outputs.OutputSet` to
    write ``-o`` through and the normalised device name."""
    from .outputs import OutputSet, check_distinct, require_suffix

    check_distinct({"-o": output}, inputs)  # first: naming an input is the worse mistake
    require_suffix(output, (".json",), "the skeleton (-o)")
    outputs = OutputSet({"-o": output}, overwrite=overwrite, inputs=inputs)
    if steps_value is not None:
        steps(steps_value, "--steps")
    if cfg_value is not None:
        cfg_scale(cfg_value, "--cfg")
    seed(seed_value, "--seed")
    guidance_weight(lambda_nonface, "--lambda-nonface")
    guidance_weight(lambda_face, "--lambda-face")
    guidance_weight(lambda_diff, "--lambda-diff")
    fraction(guided_fraction, "--guided-fraction")
    audio_seconds(max_audio_seconds, "--max-audio-seconds")
    return outputs, device(device_name, "--device")
