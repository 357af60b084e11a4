"""csg.audio: loading, checks, saving and exact frame/sample alignment."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf

from csg.audio import (SAMPLE_RATE, as_fraction, check_audible, fit_to_frames, frame_bounds,
                       load_audio, num_frames_for, save_audio)
from csg.errors import AudioError


def _tone(sr, seconds, freq=220.0, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


# --- alignment --------------------------------------------------------------------------------
@pytest.mark.parametrize("fps,seconds", [(25, 3600), (30, 300), (29.97, 300), (30000 / 1001, 300)])
def test_frame_bounds_no_drift(fps, seconds):
    sr = SAMPLE_RATE
    f = as_fraction(fps)
    t = int(round(seconds * f))
    b = frame_bounds(t, sr, fps)
    assert b.dtype == np.int64 and b.shape == (t + 1,)
    # every bound is the exactly rounded rational value, not an accumulated float
    for i in (0, 1, 7, t // 3, t - 1, t):
        exact = Fraction(i * sr) / f
        assert b[i] == int(exact + Fraction(1, 2)), (i, b[i], float(exact))
    assert np.all(np.diff(b) > 0)
    if f.denominator == 1:
        assert b[t] == seconds * sr  # an integer fps ends on the last sample exactly
    else:
        assert abs(b[t] - t * sr / float(f)) <= 0.5


def test_frame_bounds_ntsc_fraction():
    assert as_fraction(29.97) == Fraction(2997, 100)
    assert as_fraction(30000 / 1001) == Fraction(30000, 1001)
    b = frame_bounds(30000, 48000, Fraction(30000, 1001))
    assert b[-1] == 48000 * 1001  # 30000 frames of NTSC = 1001 s exactly


def test_num_frames_for_round_trip():
    for fps in (25, 30, 29.97, 24):
        for t in (1, 10, 251, 4500):
            n = int(frame_bounds(t, SAMPLE_RATE, fps)[-1])
            assert num_frames_for(n, SAMPLE_RATE, fps) == t
    assert num_frames_for(16000, 16000, 25) == 25
    assert num_frames_for(16000 + 319, 16000, 25) == 25
    assert num_frames_for(16000 + 321, 16000, 25) == 26


def test_fit_to_frames_pads_and_trims():
    x = np.ones(1000, np.float32)
    assert fit_to_frames(x, 10, 16000, 25).shape == (6400,)
    assert fit_to_frames(x, 10, 16000, 25)[1000:].sum() == 0
    assert fit_to_frames(np.ones(9000), 10, 16000, 25).shape == (6400,)


# --- loading ----------------------------------------------------------------------------------
def test_load_stereo_44k_resamples_to_mono_16k(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, _tone(44100, 0.5, channels=2), 44100)
    wav = load_audio(p)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(wav.shape[0] - 8000) <= 1
    # still a 220 Hz tone after resampling: spectrum peak within one bin
    spec = np.abs(np.fft.rfft(wav[:8000]))
    assert abs(np.argmax(spec) * 16000 / 8000 - 220) <= 2
    assert 0.45 < np.abs(wav[100:-100]).max() < 0.55


def test_first_seconds_decodes_only_the_start_of_a_huge_file(tmp_path):
    """A 3-hour 48 kHz stereo WAV (sparse on disk, 2 GB of samples once decoded) under a 2 s
    skeleton: only the first seconds are read (csg render / pose draw --audio)."""
    import resource

    p = tmp_path / "long.wav"
    with sf.SoundFile(p, "w", 48000, 2, "PCM_16") as f:
        f.write(np.stack([_tone(48000, 2.0)] * 2, 1))
    hours = 3 * 3600 * 48000 * 2 * 2  # data bytes of 3 hours
    with open(p, "r+b") as f:  # grow the data chunk sparsely and fix both sizes in the header
        f.seek(0, 2)
        f.truncate(44 + hours)
        f.seek(4)
        f.write((36 + hours).to_bytes(4, "little"))
        f.seek(40)
        f.write(hours.to_bytes(4, "little"))
    assert sf.info(str(p)).duration > 10000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wav = load_audio(p, first_seconds=2.5)
    assert wav.shape == (40000,)
    assert 0.45 < np.abs(wav[:32000]).max() < 0.55 and np.abs(wav[32100:]).max() == 0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: no 2 GB


def test_load_flac_and_custom_rate(tmp_path):
    p = tmp_path / "a.flac"
    sf.write(p, _tone(16000, 0.25), 16000)
    assert load_audio(p, sr=8000).shape == (2000,)


@pytest.mark.parametrize("case", ["missing", "dir", "jpg", "truncated", "empty"])
def test_load_errors_are_one_line_and_name_file(tmp_path, case):
    p = tmp_path / "x.wav"
    if case == "dir":
        p.mkdir()
    elif case == "jpg":
        p = tmp_path / "photo.jpg"
        p.write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))
    elif case == "truncated":
        sf.write(p, _tone(16000, 0.5), 16000)
        p.write_bytes(p.read_bytes()[:30])
    elif case == "empty":
        sf.write(p, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError) as ei:
        load_audio(p)
    msg = str(ei.value)
    assert p.name in msg and "\n" not in msg


def test_load_too_long_names_limit(tmp_path):
    p = tmp_path / "long.wav"
    sf.write(p, _tone(16000, 2.0), 16000)
    with pytest.raises(AudioError, match=r"over the limit of 1.5 s.*--max-seconds"):
        load_audio(p, max_seconds=1.5, limit_name="--max-seconds")
    assert load_audio(p, max_seconds=3).shape == (32000,)


def test_check_audible():
    check_audible(_tone(16000, 0.5), 16000)
    with pytest.raises(AudioError, match="silent.*-inf dBFS"):
        check_audible(np.zeros(16000, np.float32), 16000, "speech.wav")
    with pytest.raises(AudioError, match="silent"):
        check_audible(np.full(16000, 1e-4, np.float32), 16000)  # -80 dBFS
    with pytest.raises(AudioError, match="0.10 s"):
        check_audible(_tone(16000, 0.1), 16000)
    # one minimum for csg pose generate (this default) and csg run (limits.min_audio_seconds)
    from pipeline.config import LimitsConfig

    with pytest.raises(AudioError, match="0.30 s long; csg needs at least 0.5 s"):
        check_audible(_tone(16000, 0.3), 16000)
    assert LimitsConfig().min_audio_seconds == 0.5


def test_save_audio_round_trip_atomic(tmp_path):
    p = tmp_path / "out.wav"
    x = _tone(16000, 0.3)
    save_audio(p, x, 16000)
    y, sr = sf.read(p, dtype="float32")
    assert sr == 16000 and np.abs(y - x).max() < 1e-3
    assert sorted(f.name for f in tmp_path.iterdir()) == ["out.wav"]
    with pytest.raises(AudioError, match=".mp4"):
        save_audio(tmp_path / "a.mp4", x, 16000)


def test_load_the_audio_track_of_a_video(tmp_path):
    """A video (what users often have: the speech of a recording) is read through PyAV; a video
    without audio is still the one-line 'not a readable audio file' error; the limit holds."""
    from csg.video import write_video

    t = np.arange(int(1.5 * 16000)) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    frames = np.zeros((30, 32, 32, 3), np.uint8)
    write_video(tmp_path / "talk.mp4", frames, 20.0, audio=tone, audio_sr=16000)
    wav = load_audio(tmp_path / "talk.mp4")
    assert wav.dtype == np.float32 and abs(len(wav) - len(tone)) < 0.05 * 16000
    n = min(len(wav), len(tone)) - 2000
    assert np.corrcoef(wav[1000:n], tone[1000:n])[0, 1] > 0.95  # AAC round trip of the tone
    with pytest.raises(AudioError, match="over the limit"):
        load_audio(tmp_path / "talk.mp4", max_seconds=1.0)
    write_video(tmp_path / "silent.mp4", frames, 20.0)
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(tmp_path / "silent.mp4")
