"""Speech audio in, speech audio out, and exact frame <-> sample alignment.

Audio is held as a ``(N,)`` float32 mono array in [-1, 1] at ``SAMPLE_RATE`` (16 kHz) unless a rate
is given. Pose frame ``i`` covers the samples ``[bounds[i], bounds[i + 1])`` with
``bounds[i] = round(i * sr / fps)`` computed in exact rational arithmetic, so an hour of 25 fps or
29.97 fps video never drifts by a sample (cf. the ``int((1/30)*16000)`` drift in EMAGE).
"""
from __future__ import annotations

import logging
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import AudioError, ConfigError, InputError, require_file

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""The rate csg works at: 16 kHz, what wav2vec2-style encoders expect."""


# --- exact alignment ------------------------------------------------------------------------------
def as_fraction(fps: float | int | Fraction) -> Fraction:
    """``fps`` as an exact fraction: ``29.97 -> 2997/100``, ``30000/1001`` (as float) -> itself.

    Floats go through their shortest decimal (``repr``) and the nearest fraction with a denominator
    of at most 10**6, so the value the user typed is the value used.
    """
    if isinstance(fps, Fraction):
        f = fps
    elif isinstance(fps, (int, np.integer)):
        f = Fraction(int(fps))
    else:
        x = float(fps)
        if not math.isfinite(x):
            raise ValueError(f"fps must be finite, got {fps!r}")
        f = Fraction(repr(x)).limit_denominator(1_000_000)
    if f <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return f


def _round_half_up(num: np.ndarray | int, den: int) -> np.ndarray | int:
    """``floor(num / den + 1/2)`` in integers (``num``, ``den`` > 0)."""
    return (2 * num + den) // (2 * den)


def frame_bounds(num_frames: int, sr: int, fps: float | Fraction) -> np.ndarray:
    """Sample index where each pose frame starts, plus the end of the last one.

    Returns ``(T + 1,)`` int64 with ``bounds[i] = round(i * sr / fps)`` (halves round up), computed
    with integers from ``fps`` as a fraction ``p / q``: ``bounds[i] = (2*i*sr*q + p) // (2*p)``.
    Frame ``i`` covers samples ``[bounds[i], bounds[i+1])``; ``bounds[T]`` is the exact length of
    ``T`` frames in samples.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    f = as_fraction(fps)
    p, q = f.numerator, f.denominator
    i = np.arange(num_frames + 1, dtype=object)  # Python ints: no int64 overflow for long audio
    out = _round_half_up(i * (int(sr) * q), p)
    return np.asarray(out, dtype=np.int64)


def num_frames_for(num_samples: int, sr: int, fps: float | Fraction) -> int:
    """Pose frames covering ``num_samples`` at ``sr``: ``round(num_samples / sr * fps)`` exactly."""
    f = as_fraction(fps)
    return int(_round_half_up(int(num_samples) * f.numerator, int(sr) * f.denominator))


def fit_to_frames(wav: np.ndarray, num_frames: int, sr: int, fps: float | Fraction) -> np.ndarray:
    """Trim or zero-pad ``wav`` (N,) to ``frame_bounds(num_frames, sr, fps)[-1]`` samples."""
    n = int(frame_bounds(num_frames, sr, fps)[-1])
    wav = np.asarray(wav, dtype=np.float32)
    if wav.shape[0] >= n:
        return wav[:n]
    return np.pad(wav, (0, n - wav.shape[0]))


# --- resampling -----------------------------------------------------------------------------------
def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling by the exact ratio ``sr_out / sr_in`` (reduced by their gcd).

    wav: (N,) or (N, C). Returns float32 with ``ceil(N * sr_out / sr_in)`` samples.
    """
    wav = np.asarray(wav, dtype=np.float32)
    if int(sr_in) == int(sr_out):
        return wav
    from scipy.signal import resample_poly

    g = math.gcd(int(sr_in), int(sr_out))
    return resample_poly(wav, int(sr_out) // g, int(sr_in) // g, axis=0).astype(np.float32)


# --- reading and writing --------------------------------------------------------------------------
def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE, *, max_seconds: float | None = None,
               limit_name: str = "max_seconds", first_seconds: float | None = None) -> np.ndarray:
    """Read a wav / flac / ogg (anything libsndfile reads) as ``(N,)`` float32 mono at ``sr``.

    Channels are averaged; the rate is converted with :func:`resample`. ``max_seconds`` rejects
    longer files before decoding them; ``limit_name`` is the setting named in that message (e.g.
    ``--max-audio-seconds``). ``first_seconds``: decode only that much from the start (a file
    longer than what it is muxed under, e.g. a skeleton's length, is not decoded whole; libsndfile
    formats only, others are cut after decoding). Raises :class:`AudioError` naming the file.
    """
    import soundfile as sf

    p = require_file(path, "audio file", AudioError)
    try:
        info = sf.info(str(p))
    except Exception as e:  # noqa: BLE001 - libsndfile raises several types for non-audio
        wav = _load_media_audio(p, sr, max_seconds, limit_name)  # mp4, m4a, mov, mkv, webm ...
        if wav is None:
            raise AudioError(f"{p}: not a readable audio file ({_short(e)}); use wav, flac, ogg "
                             "or a video / m4a file with an audio track") from None
        return wav if first_seconds is None else wav[:max(1, int(round(first_seconds * sr)))]
    if info.frames == 0 or info.samplerate <= 0:
        raise AudioError(f"{p}: audio is empty (0 samples)")
    seconds = info.frames / info.samplerate
    _check_length(p, seconds, max_seconds, limit_name)
    try:
        frames = -1 if first_seconds is None else max(1, int(math.ceil(first_seconds
                                                                       * info.samplerate)))
        data, file_sr = sf.read(str(p), frames=frames, dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001
        raise AudioError(f"{p}: audio data is unreadable or truncated ({_short(e)})")
    if data.shape[0] == 0:
        raise AudioError(f"{p}: audio is empty (0 samples)")
    check_finite(data, file_sr, str(p))
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    wav = resample(wav, file_sr, sr)
    logger.debug("loaded %s: %.2f s, %d Hz -> %d Hz", p, seconds, file_sr, sr)
    return np.ascontiguousarray(wav, dtype=np.float32)


def _check_length(p, seconds: float | None, max_seconds: float | None, limit_name: str) -> None:
    """``max_seconds`` must be a positive finite number (a :class:`ConfigError` naming
    ``limit_name`` otherwise), and audio of ``seconds`` (None: unknown) must not exceed it."""
    if max_seconds is None:
        return
    if not (math.isfinite(max_seconds) and max_seconds > 0):
        raise ConfigError(f"{limit_name} must be a positive finite number of seconds, got "
                          f"{max_seconds!r}")
    if seconds is not None and seconds > max_seconds:
        raise AudioError(f"{p}: audio is {seconds:.1f} s long, over the limit of "
                         f"{max_seconds:g} s; trim it or raise {limit_name}")


def _load_media_audio(p, sr: int, max_seconds: float | None, limit_name: str) -> np.ndarray | None:
    """The first audio track of a file libsndfile does not read (a video, m4a, ...) through PyAV
    (FFmpeg), as :func:`load_audio` returns it; None when PyAV cannot open it or it has no
    audio track. The length limit is checked on the container's duration before decoding."""
    try:
        import av

        with av.open(str(p)) as c:
            if not c.streams.audio:
                return None
            seconds = c.duration / 1e6 if c.duration else None
    except Exception:  # noqa: BLE001 - not a media file either
        return None
    _check_length(p, seconds, max_seconds, limit_name)
    try:
        wav, _ = read_audio_track(p, sr)
    except Exception as e:  # noqa: BLE001 - a truncated or odd stream
        raise AudioError(f"{p}: its audio track is unreadable ({_short(e)})") from None
    if wav.shape[0] == 0:
        raise AudioError(f"{p}: audio is empty (0 samples)")
    _check_length(p, wav.shape[0] / sr, max_seconds, limit_name)  # the container may not say
    check_finite(wav, sr, str(p))
    logger.debug("loaded the audio track of %s: %.2f s at %d Hz", p, wav.shape[0] / sr, sr)
    return np.ascontiguousarray(wav, dtype=np.float32)


def check_finite(wav: np.ndarray, sr: int, source: str = "audio") -> np.ndarray:
    """Raise :class:`AudioError` if ``wav`` holds NaN or infinite samples (a broken float file)."""
    bad = ~np.isfinite(np.asarray(wav))
    if bad.any():
        first = int(np.argwhere(bad)[0][0])
        raise AudioError(f"{source}: audio has {int(bad.sum())} NaN or infinite sample(s), the "
                         f"first at {first / sr:.3f} s; re-export it as 16-bit PCM wav or repair "
                         "the file")
    return wav


MIN_SPEECH_SECONDS = 0.5
"""Shortest speech ``csg pose generate`` and ``csg run`` accept (``limits.min_audio_seconds``)."""


def check_audible(wav: np.ndarray, sr: int, source: str = "audio", *,
                  min_seconds: float = MIN_SPEECH_SECONDS,
                  silence_dbfs: float = -60.0) -> np.ndarray:
    """Raise :class:`AudioError` if ``wav`` (N,) is shorter than ``min_seconds`` or silent.

    Silent means a peak below ``silence_dbfs`` (dB relative to full scale 1.0). Returns ``wav``.
    """
    wav = np.asarray(wav)
    seconds = wav.shape[0] / sr
    if seconds < min_seconds:
        raise AudioError(f"{source}: audio is {seconds:.2f} s long; csg needs at least "
                         f"{min_seconds:g} s of speech")
    finite = wav[np.isfinite(wav)]
    peak = float(np.max(np.abs(finite))) if finite.size else 0.0
    peak_db = 20 * math.log10(peak) if peak > 0 else -math.inf
    if peak_db < silence_dbfs:
        raise AudioError(f"{source}: audio is silent (peak {peak_db:.1f} dBFS); csg needs speech")
    return wav


def save_audio(path: str | os.PathLike, wav: np.ndarray, sr: int = SAMPLE_RATE, *,
               overwrite: bool = True) -> Path:
    """Write ``wav`` (N,) or (N, C) float as 16-bit PCM (wav/flac/ogg by suffix), atomically."""
    import soundfile as sf

    from .outputs import atomic_output

    p = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(p.suffix.lower())
    if fmt is None:
        raise AudioError(f"{p}: unsupported audio extension {p.suffix!r}; use .wav, .flac or .ogg")
    subtype = "VORBIS" if fmt == "OGG" else "PCM_16"
    data = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    with atomic_output(p, overwrite=overwrite) as tmp:
        sf.write(str(tmp), data, int(sr), format=fmt, subtype=subtype)
    return p


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def open_media(path: str | os.PathLike):
    """``(path, av container)`` of a media file; :class:`InputError` naming it when PyAV cannot
    open it."""
    import av

    p = require_file(path, "video file", InputError)
    try:
        return p, av.open(str(p))
    except Exception as e:  # noqa: BLE001 - av raises many types on non-video input
        raise InputError(f"{p}: not a readable video ({' '.join(str(e).split())[:160]})") from None


def read_audio_track(path: str | os.PathLike,
                     sr: int | None = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """The first audio stream of a media file as ``((N,) float32 mono, sr)``.

    Resampled to ``sr`` (``None`` keeps the stream's rate). Raises :class:`InputError` when the
    file has no audio.
    """
    p, c = open_media(path)
    with c:
        if not c.streams.audio:
            raise InputError(f"{p}: has no audio stream")
        stream = c.streams.audio[0]
        native = stream.codec_context.sample_rate
        chunks = []
        for frame in c.decode(stream):
            a = frame.to_ndarray().astype(np.float32)
            if frame.format.is_planar:
                a = a.mean(axis=0)
            else:
                a = a.reshape(-1, len(frame.layout.channels)).mean(axis=1)
            if np.issubdtype(frame.to_ndarray().dtype, np.integer):
                a = a / float(np.iinfo(frame.to_ndarray().dtype).max)
            chunks.append(a)
        # AAC decodes in whole 1024-sample frames; the container's duration marks the real end.
        n_true = (int(round(float(stream.duration * stream.time_base) * native))
                  if stream.duration is not None and stream.time_base is not None else None)
    wav = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if n_true is not None and 0 < n_true < wav.shape[0]:
        wav = wav[:n_true]
    if sr is None:
        return wav.astype(np.float32), native
    return resample(wav, native, sr), int(sr)
