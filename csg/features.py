"""Per-frame audio features aligned to pose frames: PAHA's A(f) with its +-m context.

Two kinds, chosen by :class:`AudioFeatureConfig.kind`:

- ``mel`` (weight-free, the default): per pose frame, the log-mel spectrum averaged over the frame's
  exact sample span (:func:`csg.audio.frame_bounds`), the log-RMS energy of that span and the onset
  strength (spectral flux, max over the span): ``n_mels + 2`` values.
- ``wav2vec2``: hidden states of a local wav2vec2 model, linearly interpolated at the pose-frame
  centres (:class:`Wav2Vec2Features`).

Both are normalised per utterance (zero mean, unit std per dim) and stacked with their neighbours,
``A(f) = [A(f-m), ..., A(f), ..., A(f+m)]`` (PAHA §3, audio features), edges padded by repetition.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE, frame_bounds, resample
from .errors import ConfigError, WeightsNotFoundError

logger = logging.getLogger(__name__)

_EPS_POWER = 1e-10  # floor under mel power before the log (-100 dB)
_EPS_RMS = 1e-5  # floor under RMS before the log (-100 dB)


@dataclass(frozen=True)
class AudioFeatureConfig:
    kind: str = "mel"  # mel (weight-free log-mel + energy + onset) | wav2vec2 (local model)
    n_mels: int = 32  # mel bands of the mel kind
    context: int = 2  # m: frames stacked on each side, A(f-m) .. A(f+m)
    normalize: str = "utterance"  # utterance: zero mean / unit std per dim over the clip | none
    wav2vec2: str | None = None  # local folder (or hub id, if downloaded) of the wav2vec2 kind
    wav2vec2_layers: tuple[int, ...] = (-1,)  # hidden-state layers concatenated (-1: last)
    hop_ms: float = 10.0  # STFT hop of the mel kind
    win_ms: float = 25.0  # STFT window of the mel kind
    fmin: float = 20.0  # lowest mel band edge, Hz
    fmax: float | None = None  # highest mel band edge, Hz (None: sr / 2)


def feature_dim(cfg: AudioFeatureConfig) -> int:
    """D of :func:`audio_features`: ``(2m + 1) * per_frame`` with per_frame = n_mels + 2 for mel,
    hidden_size * len(layers) for wav2vec2 (read from the model's config.json)."""
    width = 2 * cfg.context + 1
    if cfg.kind == "mel":
        return width * (cfg.n_mels + 2)
    if cfg.kind == "wav2vec2":
        return width * _wav2vec2_hidden_size(cfg.wav2vec2) * len(cfg.wav2vec2_layers)
    raise ConfigError(f"audio features: unknown kind {cfg.kind!r}; use 'mel' or 'wav2vec2'")


def audio_features(wav: np.ndarray, sr: int, fps: float, num_frames: int,
                   cfg: AudioFeatureConfig = AudioFeatureConfig(), *,
                   encoder: "Wav2Vec2Features | None" = None) -> np.ndarray:
    """Per-pose-frame features of ``wav`` (N,) float at ``sr``: ``(T, D)`` float32, D = feature_dim.

    ``num_frames`` (T) fixes the output length: audio past ``T / fps`` is ignored, missing audio is
    zero-padded. For ``kind='wav2vec2'`` pass a loaded ``encoder`` (see :class:`AudioFeaturizer` to
    cache one); without it the model is loaded from ``cfg.wav2vec2`` on every call.
    """
    if cfg.normalize not in ("utterance", "none"):
        raise ConfigError(f"audio features: unknown normalize {cfg.normalize!r}; "
                          "use 'utterance' or 'none'")
    if num_frames == 0:
        return np.zeros((0, feature_dim(cfg)), np.float32)
    if cfg.kind == "mel":
        per_frame = mel_frame_features(wav, sr, fps, num_frames, cfg)
    elif cfg.kind == "wav2vec2":
        if encoder is None:
            encoder = Wav2Vec2Features.from_pretrained(_require_w2v_path(cfg.wav2vec2),
                                                       layers=cfg.wav2vec2_layers)
        per_frame = encoder.embed(resample(wav, sr, SAMPLE_RATE), fps, num_frames)
    else:
        raise ConfigError(f"audio features: unknown kind {cfg.kind!r}; use 'mel' or 'wav2vec2'")
    if cfg.normalize == "utterance":
        per_frame = normalize_utterance(per_frame)
    return stack_context(per_frame, cfg.context)


class AudioFeaturizer:
    """``audio_features`` with the wav2vec2 model (if any) loaded once and kept in this object."""

    def __init__(self, cfg: AudioFeatureConfig = AudioFeatureConfig(), *, device: str = "cpu"):
        self.cfg = cfg
        self.device = device
        self._encoder: Wav2Vec2Features | None = None

    def __call__(self, wav: np.ndarray, sr: int, fps: float, num_frames: int) -> np.ndarray:
        if self.cfg.kind == "wav2vec2" and self._encoder is None:
            self._encoder = Wav2Vec2Features.from_pretrained(
                _require_w2v_path(self.cfg.wav2vec2), layers=self.cfg.wav2vec2_layers,
                device=self.device)
        return audio_features(wav, sr, fps, num_frames, self.cfg, encoder=self._encoder)

    @property
    def dim(self) -> int:
        return feature_dim(self.cfg)


# --- generic per-frame post-processing ------------------------------------------------------------
def normalize_utterance(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """(T, D) -> (T, D): zero mean, unit std per dim over T (constant dims become 0)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] == 0:
        return x.astype(np.float32)
    return ((x - x.mean(0)) / np.maximum(x.std(0), eps)).astype(np.float32)


def stack_context(x: np.ndarray, m: int) -> np.ndarray:
    """(T, D) -> (T, (2m+1) * D): row t is ``[x[t-m], ..., x[t+m]]``, indices clamped to
    [0, T-1]."""
    x = np.asarray(x, dtype=np.float32)
    if m == 0:
        return x
    t = np.arange(x.shape[0])
    idx = np.clip(t[:, None] + np.arange(-m, m + 1)[None], 0, max(x.shape[0] - 1, 0))
    return x[idx].reshape(x.shape[0], -1)


# --- the mel kind ---------------------------------------------------------------------------------
def _hz_to_mel_slaney(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (Auditory Toolbox; librosa's default): linear 3 mel / 200 Hz below
    1 kHz, logarithmic above (27 mel per factor 6.4)."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) * (27.0 / np.log(6.4)),
                    3.0 * f / 200.0)


def _mel_to_hz_slaney(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), 200.0 * m / 3.0)


@functools.lru_cache(maxsize=8)
def _mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """``(n_fft//2 + 1, n_mels)`` triangular mel filters on Slaney's scale with Slaney's area
    normalisation (2 / band width), the bank librosa and ``transformers.audio_utils.mel_filter_bank
    (norm="slaney", mel_scale="slaney")`` build (tested equal); computed here in numpy because
    importing transformers for it cost ~1-2 s of every ``csg run``."""
    centres = _mel_to_hz_slaney(np.linspace(_hz_to_mel_slaney(fmin), _hz_to_mel_slaney(fmax),
                                            n_mels + 2))
    bins = np.linspace(0, sr // 2, n_fft // 2 + 1)
    width = np.diff(centres)
    slopes = centres[None, :] - bins[:, None]
    down = -slopes[:, :-2] / width[:-1]
    up = slopes[:, 2:] / width[1:]
    fb = np.maximum(0.0, np.minimum(down, up)) * (2.0 / (centres[2:] - centres[:-2]))[None, :]
    return np.ascontiguousarray(fb, dtype=np.float32)


def log_mel(wav: np.ndarray, sr: int, *, n_mels: int = 32, hop: int, win: int, fmin: float = 20.0,
            fmax: float | None = None) -> np.ndarray:
    """Centred STFT (Hann window ``win``, hop ``hop``) -> ``(S, n_mels)`` natural-log mel power.

    STFT frame ``j`` is centred on sample ``j * hop``; S = N // hop + 1.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    n_fft = 1 << max(int(win) - 1, 1).bit_length()
    x = np.asarray(wav, dtype=np.float32)
    mode = "reflect" if x.shape[0] > n_fft // 2 else "constant"
    x = np.pad(x, (n_fft // 2, n_fft // 2), mode=mode)
    frames = sliding_window_view(x, n_fft)[::hop]
    window = np.zeros(n_fft, np.float32)
    off = (n_fft - win) // 2
    window[off:off + win] = np.hanning(win + 2)[1:-1]  # periodic-ish Hann without zero ends
    spec = np.fft.rfft(frames * window, axis=-1)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
    mel = power @ _mel_filters(int(sr), n_fft, int(n_mels), float(fmin), float(fmax or sr / 2))
    return np.log(np.maximum(mel, _EPS_POWER))


def _span_frames(bounds: np.ndarray, hop: int, num_stft: int) -> tuple[np.ndarray, np.ndarray]:
    """STFT frames whose centres fall in each pose frame's sample span: ``[lo, hi)`` per frame,
    never empty (a span shorter than a hop takes the STFT frame at or after its start)."""
    lo = np.clip(-(-bounds[:-1] // hop), 0, num_stft - 1)
    hi = np.clip(-(-bounds[1:] // hop), 0, num_stft)
    hi = np.maximum(hi, lo + 1)
    return lo, hi


def _segment_mean(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    c = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(x, axis=0, dtype=np.float64)])
    return ((c[hi] - c[lo]) / (hi - lo).reshape((-1,) + (1,) * (x.ndim - 1))).astype(np.float32)


def _segment_max(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    # reduceat over [lo[i], lo[i+1]) would miss overlaps; spans are short, so use a padded gather.
    if lo.size == 0:
        return np.zeros(0, x.dtype)
    width = int((hi - lo).max())
    idx = np.minimum(lo[:, None] + np.arange(width)[None], (hi - 1)[:, None])
    return x[idx].max(axis=1)


def _spans(wav: np.ndarray, sr: int, fps: float, num_frames: int, hop_ms: float = 10.0):
    from .audio import fit_to_frames

    bounds = frame_bounds(num_frames, sr, fps)
    wav = fit_to_frames(wav, num_frames, sr, fps)
    hop = max(1, int(round(sr * hop_ms / 1000)))
    return wav, bounds, hop


def _onset_strength(logmel: np.ndarray, top_db: float = 80.0) -> np.ndarray:
    """(S, n_mels) natural-log mel -> (S,): spectral flux, the mean over bands of the positive dB
    increase, with dB floored ``top_db`` below the clip's maximum (librosa's ``onset_strength``
    convention, so leakage into digital silence does not count as the onset)."""
    db = logmel * (10.0 / np.log(10.0))
    db = np.maximum(db, db.max() - top_db)
    flux = np.maximum(np.diff(db, axis=0, prepend=db[:1]), 0.0)
    return flux.mean(axis=1)


def mel_frame_features(wav: np.ndarray, sr: int, fps: float, num_frames: int,
                       cfg: AudioFeatureConfig = AudioFeatureConfig()) -> np.ndarray:
    """(T, n_mels + 2) float32 before normalisation: span-mean log-mel, log-RMS, span-max onset."""
    wav, bounds, hop = _spans(wav, sr, fps, num_frames, cfg.hop_ms)
    win = max(2, int(round(sr * cfg.win_ms / 1000)))
    lm = log_mel(wav, sr, n_mels=cfg.n_mels, hop=hop, win=win, fmin=cfg.fmin, fmax=cfg.fmax)
    lo, hi = _span_frames(bounds, hop, lm.shape[0])
    mel = _segment_mean(lm, lo, hi)
    onset = _segment_max(_onset_strength(lm), *_span_frames(bounds - win // 2, hop, lm.shape[0]))
    return np.concatenate([mel, _log_rms(wav, bounds)[:, None], onset[:, None]], axis=1)


def _log_rms(wav: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    c = np.concatenate([[0.0], np.cumsum(np.asarray(wav, np.float64) ** 2)])
    n = np.maximum(np.diff(bounds), 1)
    rms = np.sqrt(np.maximum(c[bounds[1:]] - c[bounds[:-1]], 0.0) / n)
    return (20 * np.log10(np.maximum(rms, _EPS_RMS))).astype(np.float32)


def log_rms_envelope(wav: np.ndarray, sr: int, fps: float, num_frames: int) -> np.ndarray:
    """(T,) float32 loudness per pose frame: 20 log10 RMS over the frame's exact sample span, dBFS
    (floored at -100; padding past the audio's end reads -100)."""
    wav, bounds, _ = _spans(wav, sr, fps, num_frames)
    return _log_rms(wav, bounds)


def onset_envelope(wav: np.ndarray, sr: int, fps: float, num_frames: int, *,
                   n_mels: int = 32) -> np.ndarray:
    """(T,) float32 onset strength per pose frame: spectral flux of the 10 ms log-mel (mean over
    bands of the positive dB increase), max over the frame's span. >= 0.

    A flux value is dated by its window's trailing edge (centre + win/2), so an onset is never
    reported before it happens and at most one hop (10 ms) after.
    """
    wav, bounds, hop = _spans(wav, sr, fps, num_frames)
    win = max(2, int(round(sr * 0.025)))
    lm = log_mel(wav, sr, n_mels=n_mels, hop=hop, win=win)
    lo, hi = _span_frames(bounds - win // 2, hop, lm.shape[0])  # by the window's trailing edge
    return _segment_max(_onset_strength(lm), lo, hi).astype(np.float32)


def onset_frames(wav: np.ndarray, sr: int, fps: float, num_frames: int, *,
                 min_gap_s: float = 0.1, delta: float = 0.5) -> np.ndarray:
    """Pose-frame indices of audio onsets (int64, sorted): peaks of :func:`onset_envelope` that are
    at least ``delta`` std above its mean and ``min_gap_s`` apart (the a_t of the BAS metric)."""
    env = onset_envelope(wav, sr, fps, num_frames).astype(np.float64)
    if env.size == 0 or not np.any(env > 0):
        return np.zeros(0, np.int64)
    padded = np.concatenate([[0.0], env, [0.0]])  # let frame 0 and T-1 be peaks
    dist = max(1, int(round(min_gap_s * float(fps))))
    peaks = find_peaks(padded, height=env.mean() + delta * env.std(), distance=dist)
    return (peaks - 1).astype(np.int64)


def find_peaks(x: np.ndarray, *, height: float, distance: int = 1) -> np.ndarray:
    """Indices of the local maxima of ``x`` (a flat top counts once, at its middle) that are at
    least ``height`` and, keeping the highest first, at least ``distance`` samples apart:
    ``scipy.signal.find_peaks(x, height=height, distance=distance)[0]`` (tested equal), without
    importing ``scipy.signal`` (~1.3 s of every ``csg run``)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    found = []
    i = 1
    while i < n - 1:
        if x[i - 1] < x[i]:
            ahead = i + 1
            while ahead < n - 1 and x[ahead] == x[i]:
                ahead += 1
            if x[ahead] < x[i]:
                found.append((i + ahead - 1) // 2)
            i = ahead
        else:
            i += 1
    peaks = np.asarray(found, dtype=np.intp)
    peaks = peaks[x[peaks] >= height] if peaks.size else peaks
    if distance <= 1 or peaks.size < 2:
        return peaks
    keep = np.ones(peaks.size, dtype=bool)
    for j in np.argsort(x[peaks])[::-1]:  # highest first; lower neighbours within distance go
        if not keep[j]:
            continue
        k = j - 1
        while k >= 0 and peaks[j] - peaks[k] < distance:
            keep[k] = False
            k -= 1
        k = j + 1
        while k < peaks.size and peaks[k] - peaks[j] < distance:
            keep[k] = False
            k += 1
    return peaks[keep]


# --- the wav2vec2 kind ----------------------------------------------------------------------------
def _require_w2v_path(path_or_id: str | None) -> str:
    if not path_or_id:
        raise ConfigError("audio features: kind is 'wav2vec2' but features.wav2vec2 is not set; "
                          "set it to a local wav2vec2 folder or use kind=mel")
    return path_or_id


def _missing_weights(path_or_id: str) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"wav2vec2 weights not found at/for '{path_or_id}': download them with "
        f"`huggingface-cli download {path_or_id}` on a machine with internet and pass the local "
        "folder with features.wav2vec2=<folder>")


def _wav2vec2_hidden_size(path_or_id: str | None) -> int:
    import json

    path_or_id = _require_w2v_path(path_or_id)
    cfg_file = Path(path_or_id) / "config.json"
    if cfg_file.is_file():
        return int(json.loads(cfg_file.read_text(encoding="utf-8"))["hidden_size"])
    try:
        from transformers import AutoConfig

        return int(AutoConfig.from_pretrained(path_or_id, local_files_only=True).hidden_size)
    except OSError:
        raise _missing_weights(path_or_id) from None


class Wav2Vec2Features:
    """A wav2vec2 encoder giving hidden states resampled to pose frames.

    Build with :meth:`from_pretrained`; call with 16 kHz audio. Hidden states (about 50 Hz for the
    standard 320-sample stride) are linearly interpolated at each pose frame's centre sample.
    """

    def __init__(self, model, *, layers: tuple[int, ...] = (-1,), do_normalize: bool = True,
                 device: str = "cpu"):
        self.model = model.eval().to(device)
        self.layers = tuple(int(i) for i in layers)
        self.do_normalize = do_normalize
        self.device = device
        c = model.config
        stride, rf = 1, 1
        for k, s in zip(c.conv_kernel, c.conv_stride):
            rf += (k - 1) * stride
            stride *= s
        self.stride, self.receptive_field = stride, rf  # in samples
        self.dim = c.hidden_size * len(self.layers)

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike, *, layers: tuple[int, ...] = (-1,),
                        device: str = "cpu", allow_download: bool = False) -> "Wav2Vec2Features":
        """Load ``Wav2Vec2Model`` (and its feature-extractor settings if saved) from a local folder
        or the local hub cache. Downloads only with ``allow_download=True`` and HF_HUB_OFFLINE
        unset. Raises :class:`WeightsNotFoundError` with the command that fetches the weights."""
        from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

        name = str(path_or_id)
        local_only = not (allow_download and not os.environ.get("HF_HUB_OFFLINE"))
        looks_like_path = "/" not in name or name.startswith((".", "/"))
        if local_only and not Path(name).is_dir() and looks_like_path:
            raise _missing_weights(name)
        try:
            model = Wav2Vec2Model.from_pretrained(name, local_files_only=local_only)
        except (OSError, ValueError):
            raise _missing_weights(name) from None
        try:
            fe = Wav2Vec2FeatureExtractor.from_pretrained(name, local_files_only=local_only)
            do_normalize = bool(fe.do_normalize)
        except (OSError, ValueError):
            logger.info("%s: no preprocessor_config.json; normalising input audio (the default)",
                        name)
            do_normalize = True
        n_layers = model.config.num_hidden_layers + 1
        bad = [i for i in layers if not -n_layers <= int(i) < n_layers]
        if bad:
            raise ConfigError(f"features.wav2vec2_layers: {bad} out of range for '{name}', which "
                              f"has {n_layers} hidden states (embeddings + {n_layers - 1} layers)")
        return cls(model, layers=layers, do_normalize=do_normalize, device=device)

    def hidden_states(self, wav16k: np.ndarray) -> np.ndarray:
        """(N,) 16 kHz audio -> (S, dim) float32: the chosen layers concatenated, S ~ N / stride."""
        import torch

        x = np.asarray(wav16k, dtype=np.float32)
        if x.shape[0] < self.receptive_field:
            x = np.pad(x, (0, self.receptive_field - x.shape[0]))
        if self.do_normalize:
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        with torch.inference_mode():
            out = self.model(torch.from_numpy(x)[None].to(self.device), output_hidden_states=True)
        hs = [out.hidden_states[i][0] for i in self.layers]
        return torch.cat(hs, dim=-1).float().cpu().numpy()

    def embed(self, wav16k: np.ndarray, fps: float | Fraction, num_frames: int) -> np.ndarray:
        """(T, dim) float32 hidden states at the pose-frame centres, before normalisation."""
        bounds = frame_bounds(num_frames, SAMPLE_RATE, fps)
        x = np.asarray(wav16k, dtype=np.float32)
        n = int(bounds[-1])
        x = x[:n] if x.shape[0] >= n else np.pad(x, (0, n - x.shape[0]))
        hs = self.hidden_states(x)
        centres = (bounds[:-1] + bounds[1:]) / 2.0  # samples
        hs_t = np.arange(hs.shape[0]) * self.stride + (self.receptive_field - 1) / 2.0
        pos = np.interp(centres, hs_t, np.arange(hs.shape[0], dtype=np.float64))
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, hs.shape[0] - 1)
        w = (pos - i0)[:, None]
        return ((1 - w) * hs[i0] + w * hs[i1]).astype(np.float32)

    def __call__(self, wav16k: np.ndarray, fps: float | Fraction, num_frames: int, *,
                 context: int = 2, normalize: str = "utterance") -> np.ndarray:
        """(T, (2*context+1) * dim) float32: :meth:`embed`, normalised and context-stacked."""
        x = self.embed(wav16k, fps, num_frames)
        if normalize == "utterance":
            x = normalize_utterance(x)
        return stack_context(x, context)
