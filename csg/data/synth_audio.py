"""Speech-like audio for the synthetic corpus, with the events that drive the performance.

Two voices:

* :func:`procedural_speech`: a source-filter voice. A glottal sawtooth (f0 with phrase declination,
  stress bumps and jitter) goes through a cascade of four formant resonators with vowel-dependent
  formants scaled per speaker; consonants are band-passed noise (fricatives), closures + bursts
  (plosives) or low murmurs (nasals). Phrases of 3-12 syllables at 3-6 syllables/s, pauses between.
  The syllable plan is known exactly, so the events are exact.
* :func:`espeak_speech`: real synthetic speech from ``espeak-ng`` (many languages, variants, rates,
  pitches), one call per phrase. espeak-ng prints no phoneme timing for its own voices (``--pho``
  needs mbrola), so syllable nuclei are the envelope peaks inside each phrase, and the number of
  stressed ones is the number of primary-stress marks in espeak's phoneme string (``-x``).

:class:`SpeechEvents` are sampled at ``ENV_RATE`` (100 Hz), independent of the video fps.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ENV_RATE = 100
"""Rate (Hz) of :attr:`SpeechEvents.articulation`."""

# vowel: (F1, F2, F3, F4) Hz for an adult male voice, and mouth openness in [0, 1]
VOWELS = {
    "a": ((730, 1090, 2440, 3400), 1.0), "e": ((530, 1840, 2480, 3500), 0.6),
    "i": ((270, 2290, 3010, 3700), 0.3), "o": ((570, 840, 2410, 3400), 0.75),
    "u": ((300, 870, 2240, 3300), 0.35), "@": ((500, 1500, 2500, 3500), 0.5),
}
# consonant: (kind, band (Hz) or None, mouth openness while it sounds)
CONSONANTS = {
    "s": ("fric", (4000, 7500), 0.15), "sh": ("fric", (2000, 4500), 0.2),
    "f": ("fric", (1200, 7000), 0.05), "h": ("fric", (500, 3000), 0.4),
    "p": ("plos", None, 0.0), "t": ("plos", None, 0.15), "k": ("plos", None, 0.25),
    "m": ("nasal", None, 0.0), "n": ("nasal", None, 0.15), "l": ("liquid", None, 0.3),
}


@dataclass
class SpeechEvents:
    """What the speech does, in seconds and at ``ENV_RATE``.

    articulation: (M,) mouth-opening target in [0, 1] aligned with the sound (no lead);
    stress_times: (K,) seconds of stressed syllable nuclei (beat candidates);
    phrases: (P, 2) start/end seconds of speaking stretches; seconds: total duration.
    """

    articulation: np.ndarray
    stress_times: np.ndarray
    phrases: np.ndarray
    seconds: float


@dataclass(frozen=True)
class Voice:
    """A procedural speaker: pitch, vocal-tract scale, speaking rate and pausing habits."""

    f0: float             # Hz, mean pitch
    formant_scale: float  # 1.0 adult male, ~1.15-1.2 female
    rate: float           # syllables per second
    pause: tuple          # (min, max) pause seconds between phrases
    breath: float         # aspiration noise level relative to voicing
    tilt: float           # one-pole low-pass coefficient of the source (spectral tilt)


def sample_voice(generator: np.random.Generator) -> Voice:
    """A random voice: f0 85-155 Hz (male) or 165-255 Hz (female), 3-6 syllables/s."""
    g = generator
    female = g.random() < 0.5
    return Voice(f0=float(g.uniform(165, 255) if female else g.uniform(85, 155)),
                 formant_scale=float(g.uniform(1.08, 1.22) if female else g.uniform(0.88, 1.04)),
                 rate=float(g.uniform(3.0, 6.0)), pause=(float(g.uniform(0.2, 0.35)),
                                                         float(g.uniform(0.6, 1.1))),
                 breath=float(g.uniform(0.01, 0.08)), tilt=float(g.uniform(0.6, 0.9)))


def _plan(seconds: float, v: Voice, g: np.random.Generator) -> list[dict]:
    """Syllables: dicts with start, onset consonant + its duration, vowel, nucleus duration, stress."""
    syl, t = [], float(g.uniform(0.15, 0.6))
    while t < seconds - 0.6:
        n = int(g.integers(3, 13))
        period = int(g.integers(2, 4))
        phase = int(g.integers(0, period))
        for i in range(n):
            stress = (i % period == phase) or (i == n - 1 and g.random() < 0.3)
            base = 1.0 / v.rate * g.uniform(0.8, 1.2) * (1.35 if stress else 1.0)
            base *= 1.3 if i == n - 1 else 1.0
            cons = str(g.choice(list(CONSONANTS))) if g.random() < 0.75 else None
            cdur = float(g.uniform(0.04, 0.1)) if cons else 0.0
            syl.append(dict(start=t, cons=cons, cdur=cdur, vowel=str(g.choice(list(VOWELS))),
                            vdur=max(0.06, base - cdur), stress=bool(stress), phrase_end=i == n - 1,
                            amp=1.0 if stress else float(g.uniform(0.5, 0.75))))
            t += cdur + syl[-1]["vdur"]
            if t > seconds - 0.4:
                syl[-1]["phrase_end"] = True
                break
        lo, hi = v.pause
        t += float(g.uniform(lo, hi) if g.random() < 0.8 else g.uniform(1.0, 1.6))
    return syl


def _resonate(x: np.ndarray, freqs, bw_scale: float, sr: int) -> np.ndarray:
    """Cascade of 2-pole resonators (unity DC gain) at ``freqs`` Hz."""
    from scipy.signal import lfilter

    for k, f in enumerate(freqs):
        f = min(f, 0.45 * sr)
        r = np.exp(-np.pi * (60 + 40 * k) * bw_scale / sr)
        c = 2 * r * np.cos(2 * np.pi * f / sr)
        x = lfilter([1 - c + r * r], [1, -c, r * r], x)
    return x


def _ramp(n: int, attack: int, release: int) -> np.ndarray:
    env = np.ones(n)
    a, r = min(attack, n // 2), min(release, n // 2)
    if a:
        env[:a] = np.sin(np.linspace(0, np.pi / 2, a)) ** 2
    if r:
        env[n - r:] = np.cos(np.linspace(0, np.pi / 2, r)) ** 2
    return env


def procedural_speech(seconds: float, voice: Voice, generator: np.random.Generator,
                      sr: int = 16000) -> tuple[np.ndarray, SpeechEvents]:
    """Render ``seconds`` of the procedural voice. Returns (wav (N,) float32 in [-1, 1], events)."""
    from scipy.signal import butter

    g = generator
    n = int(round(seconds * sr))
    syl = _plan(seconds, voice, g)
    # pitch track: declination per phrase, stress bumps, slow jitter
    f0 = np.full(n, voice.f0)
    jitter = np.interp(np.arange(n), np.linspace(0, n, max(2, int(seconds * 8))),
                       g.normal(0, 0.03, max(2, int(seconds * 8))))
    f0 *= 1 + jitter
    out = np.zeros(n + sr // 10)
    mouth = np.zeros(n)
    stress_times, phrases, p_start = [], [], None
    fric_sos = {c: butter(2, CONSONANTS[c][1], "bandpass", fs=sr, output="sos")
                for c in CONSONANTS if CONSONANTS[c][1]}
    for s in syl:
        p_start = s["start"] if p_start is None else p_start
        a0 = int(s["start"] * sr)
        c_n, v_n = int(s["cdur"] * sr), int(s["vdur"] * sr)
        if s["cons"]:
            _consonant(out, mouth, s, slice(a0, min(a0 + c_n, n)), fric_sos, g, sr)
        v0 = min(a0 + c_n, n)
        v1 = min(v0 + v_n, n)
        if v1 <= v0:
            continue
        decl = 1.08 - 0.2 * (s["start"] - p_start) / max(seconds, 1e-3)
        env = _vowel(out, f0, s, v0, v1, decl, voice, g, sr)
        if s["cons"] and CONSONANTS[s["cons"]][0] == "nasal":
            _nasal(out, s, max(0, v0 - c_n), v0, voice, sr)
        mouth[v0:v1] = np.maximum(mouth[v0:v1], VOWELS[s["vowel"]][1] * env)
        if s["stress"]:
            stress_times.append((v0 + 0.25 * (v1 - v0)) / sr)
        if s["phrase_end"]:
            phrases.append((p_start, v1 / sr))
            p_start = None
    wav = out[:n]
    wav = wav / max(np.abs(wav).max(), 1e-6) * g.uniform(0.4, 0.9)
    wav += g.normal(0, 10 ** (g.uniform(-65, -45) / 20), n)
    m = ENV_RATE * n // sr
    artic = mouth[: m * (sr // ENV_RATE)].reshape(m, -1).mean(1) if m else np.zeros(0)
    return wav.astype(np.float32), SpeechEvents(artic.clip(0, 1), np.asarray(stress_times),
                                                np.asarray(phrases).reshape(-1, 2), seconds)


def _consonant(out, mouth, s, seg: slice, fric_sos, g, sr) -> None:
    """Add syllable ``s``'s onset consonant over ``seg`` (samples) and its mouth openness."""
    from scipy.signal import sosfilt

    kind, _, m_open = CONSONANTS[s["cons"]]
    ln = seg.stop - seg.start
    if kind == "fric":
        noise = sosfilt(fric_sos[s["cons"]], g.normal(0, 1, ln)) * 0.25 * s["amp"]
        out[seg] += noise * _ramp(ln, ln // 4, ln // 4)
    elif kind == "plos":
        burst = min(ln, int(0.015 * sr))
        out[seg.stop - burst:seg.stop] += g.normal(0, 0.3, burst) * s["amp"]
    mouth[seg] = m_open


def _glottal(f0: np.ndarray, voice: Voice, phase0: float, sr: int) -> np.ndarray:
    """Sawtooth glottal source at the (N,) pitch track ``f0`` with the voice's spectral tilt."""
    from scipy.signal import lfilter

    src = 2 * ((np.cumsum(f0 / sr) + phase0) % 1.0) - 1
    return lfilter([1 - voice.tilt], [1, -voice.tilt], src)


def _vowel(out, f0, s, v0: int, v1: int, decl: float, voice: Voice, g, sr) -> np.ndarray:
    """Add the vowel nucleus of ``s`` on samples [v0, v1) (with a 30 ms resonance tail); returns
    its amplitude envelope. Pitch: ``f0`` x declination x a stress bump."""
    t = np.arange(v1 - v0)
    bump = 1 + (0.2 if s["stress"] else 0.05) * np.sin(np.pi * t / len(t))
    f0[v0:v1] *= bump * decl
    env = _ramp(v1 - v0, int(0.03 * sr), int(0.06 * sr)) * s["amp"]
    src = _glottal(f0[v0:v1], voice, g.random(), sr)
    src += voice.breath * g.normal(0, 1, len(src))
    tail = int(0.03 * sr)
    seg = np.concatenate([src * env, np.zeros(tail)])
    formants = np.asarray(VOWELS[s["vowel"]][0]) * voice.formant_scale
    out[v0:v1 + tail] += _resonate(seg, formants, 1.0, sr)
    return env


def _nasal(out, s, a: int, b: int, voice: Voice, sr) -> None:
    """Add a nasal murmur (formants 250/1000/2200 Hz, wide) on samples [a, b)."""
    if b > a:
        src = _glottal(np.full(b - a, voice.f0), voice, 0.0, sr)
        out[a:b] += 0.3 * _resonate(src, (250, 1000, 2200), 1.5, sr) * s["amp"]


# --- espeak-ng --------------------------------------------------------------------------------------
ESPEAK_LANGS = ("en", "en-us", "en-gb-x-rp", "de", "fr", "es", "it", "pt", "nl", "sv", "pl", "cs",
                "fi", "hu", "id", "sw", "tr", "ro", "hr")
ESPEAK_VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m5", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5",
                   "+klatt", "+klatt2", "+croak", "+Alicia", "+Andrea", "+Adam", "+Alex")
_WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from "
          "or one had by word but not what all were we when your can said there use an each which "
          "she do how their if will up other about out many then them these so some her would make "
          "like him into time has look two more write go see number no way could people my than "
          "first water been call who oil its now find long down day did get come made may part "
          "really never always morning evening story gesture moment little believe important "
          "together picture remember beautiful nothing everyone question answer simple").split()
_SYLS = [c + v for c in ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
         for v in ("a", "e", "i", "o", "u")]


def espeak_available() -> bool:
    """True if the ``espeak-ng`` program is on PATH."""
    return shutil.which("espeak-ng") is not None


def _espeak_phrase(text: str, voice: str, wpm: int, pitch: int, sr: int) -> tuple[np.ndarray, str]:
    """One espeak-ng call: (wav (N,) float32 at ``sr`` with silence trimmed, phoneme string)."""
    import soundfile as sf

    from ..audio import resample

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.wav"
        res = subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-x",
                              "-w", str(path), text], capture_output=True, text=True, timeout=30)
        if res.returncode != 0 or not path.is_file():
            raise RuntimeError(f"espeak-ng -v {voice} failed: {res.stderr.strip()[:200]}")
        wav, native = sf.read(str(path), dtype="float32", always_2d=True)
    wav = resample(wav.mean(1), native, sr)
    loud = np.flatnonzero(np.abs(wav) > 0.02 * max(np.abs(wav).max(), 1e-6))
    if loud.size:
        wav = wav[max(0, loud[0] - sr // 100): loud[-1] + sr // 50]
    return wav, res.stdout


def _text(lang: str, g: np.random.Generator) -> str:
    n = int(g.integers(3, 9))
    if lang.startswith("en"):
        return " ".join(str(g.choice(_WORDS)) for _ in range(n))
    return " ".join("".join(str(g.choice(_SYLS)) for _ in range(int(g.integers(1, 4))))
                    for _ in range(n))


def sample_espeak_voice(generator: np.random.Generator) -> tuple[str, str, int, int]:
    """(language, voice, words per minute 120-200, pitch 25-75) of a random espeak-ng speaker."""
    g = generator
    lang = str(g.choice(ESPEAK_LANGS))
    return lang, lang + str(g.choice(ESPEAK_VARIANTS)), int(g.integers(120, 200)), int(
        g.integers(25, 75))


def espeak_speech(seconds: float, generator: np.random.Generator, sr: int = 16000,
                  voice: tuple[str, str, int, int] | None = None) -> tuple[np.ndarray, SpeechEvents]:
    """``seconds`` of espeak-ng speech by ``voice`` (see :func:`sample_espeak_voice`; random if
    None): phrases of 3-8 words with pauses. Raises RuntimeError if espeak-ng is missing or fails.
    """
    g = generator
    lang, voice, wpm, pitch = voice or sample_espeak_voice(g)
    n = int(round(seconds * sr))
    out = np.zeros(n, np.float32)
    t = float(g.uniform(0.15, 0.6))
    phrases, n_stress = [], []
    while t < seconds - 0.8:
        wav, pho = _espeak_phrase(_text(lang, g), voice, wpm, pitch, sr)
        a = int(t * sr)
        b = min(n - int(0.1 * sr), a + len(wav))
        if b - a < int(0.3 * sr):
            break
        fade = _ramp(b - a, 0, int(0.02 * sr)).astype(np.float32)
        out[a:b] += wav[: b - a] * fade
        phrases.append((t, b / sr))
        n_stress.append(max(1, pho.count("'")))
        t = b / sr + float(g.uniform(0.25, 0.9) if g.random() < 0.8 else g.uniform(1.0, 1.6))
    out = out / max(np.abs(out).max(), 1e-6) * g.uniform(0.4, 0.9)
    out += g.normal(0, 10 ** (g.uniform(-65, -45) / 20), n).astype(np.float32)
    phrases = np.asarray(phrases).reshape(-1, 2)
    ev = events_from_audio(out, sr, phrases=phrases)
    # keep the n_stress strongest nuclei of each phrase as its stressed syllables
    ev.stress_times = _strongest_per_phrase(ev, phrases, n_stress)
    return out.astype(np.float32), ev


def _strongest_per_phrase(ev: SpeechEvents, phrases: np.ndarray, counts: list[int]) -> np.ndarray:
    from scipy.signal import find_peaks

    keep = []
    for (a, b), k in zip(phrases, counts):
        lo, hi = int(a * ENV_RATE), int(b * ENV_RATE) + 1
        seg = ev.articulation[lo:hi]
        peaks, props = find_peaks(seg, distance=int(0.2 * ENV_RATE), prominence=0.05)
        if peaks.size == 0:
            continue
        order = np.argsort(-seg[peaks])[:k]
        keep.extend(((lo + peaks[order]) / ENV_RATE - 0.04).tolist())
    return np.sort(np.asarray(keep))


def _mean3(x: np.ndarray) -> np.ndarray:
    """3-sample moving average with the edge samples repeated:
    ``scipy.ndimage.uniform_filter1d(x, 3)`` (mode "reflect"), without importing scipy.ndimage on
    ``csg run``'s path (tested equal)."""
    p = np.pad(np.asarray(x, dtype=np.float64), 1, mode="symmetric")
    return (p[:-2] + p[1:-1] + p[2:]) / 3.0


def events_from_audio(wav: np.ndarray, sr: int, *, phrases: np.ndarray | None = None,
                      min_pause: float = 0.25) -> SpeechEvents:
    """Speech events read off any audio (the rule-based baseline and the espeak voice).

    articulation: log-RMS at 100 Hz mapped from [peak - 40 dB, peak - 6 dB] to [0, 1], smoothed over
    30 ms; phrases: stretches where it exceeds 0.15, with gaps < ``min_pause`` bridged (unless given);
    stress_times: onsets (csg.features.onset_frames at 100 Hz) in phrases whose following 150 ms
    energy peak is above the phrase median, at least 0.3 s apart.
    """
    from ..audio import num_frames_for
    from ..features import log_rms_envelope, onset_frames

    wav = np.asarray(wav, np.float32)
    m = num_frames_for(len(wav), sr, ENV_RATE)
    db = log_rms_envelope(wav, sr, ENV_RATE, m).astype(np.float64)
    peak = np.percentile(db, 99) if m else 0.0
    artic = _mean3(((db - (peak - 40)) / 34).clip(0, 1)) if m else db
    if phrases is None:
        phrases = _phrases(artic > 0.15, min_pause)
    inside = np.zeros(m, bool)
    for a, b in phrases:
        inside[int(a * ENV_RATE):int(b * ENV_RATE) + 1] = True
    artic = np.where(inside, artic, 0.0)
    onsets = onset_frames(wav, sr, ENV_RATE, m, min_gap_s=0.12) if m else np.zeros(0, int)
    stress, last = [], -1.0
    for o in onsets:
        if not inside[o]:
            continue
        pk = artic[o:o + 15].max()
        a = max(0, o - 100)
        ref = np.median(artic[a:o + 100][inside[a:o + 100]])
        if pk > ref and pk > 0.3 and o / ENV_RATE - last >= 0.3:
            stress.append(o / ENV_RATE)
            last = o / ENV_RATE
    return SpeechEvents(artic.astype(np.float64), np.asarray(stress), np.asarray(phrases,
                        float).reshape(-1, 2), len(wav) / sr)


def _phrases(active: np.ndarray, min_pause: float) -> np.ndarray:
    """(P, 2) seconds of True runs in a 100 Hz mask, bridging gaps shorter than ``min_pause``."""
    idx = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(int), [0]])))
    runs = idx.reshape(-1, 2) / ENV_RATE
    merged: list[list[float]] = []
    for a, b in runs:
        if merged and a - merged[-1][1] < min_pause:
            merged[-1][1] = b
        elif b - a >= 0.08:
            merged.append([a, b])
    return np.asarray(merged).reshape(-1, 2)
