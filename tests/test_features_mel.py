"""The numpy mel filter bank of csg.features equals transformers' Slaney bank, and computing
audio features does not import transformers (it cost ~1-2 s of every csg run)."""
import ast
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [(16000, 512, 32, 20.0, 8000.0),
                                                      (16000, 1024, 80, 0.0, 8000.0),
                                                      (22050, 2048, 64, 30.0, 11025.0)])
def test_mel_filters_equal_transformers_slaney_bank(sr, n_fft, n_mels, fmin, fmax):
    from transformers.audio_utils import mel_filter_bank

    from csg.features import _mel_filters

    ours = _mel_filters(sr, n_fft, n_mels, fmin, fmax)
    ref = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels,
                          min_frequency=fmin, max_frequency=fmax, sampling_rate=sr,
                          norm="slaney", mel_scale="slaney").astype(np.float32)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-7)


def _imported_after(code: str, packages: tuple[str, ...]) -> list[str]:
    """Top-level ``packages`` present in ``sys.modules`` after running ``code`` in a fresh
    interpreter (with ``x``: 2 s of noise at 16 kHz)."""
    prog = ("import sys, numpy as np\n"
            "x = np.random.default_rng(0).standard_normal(32000).astype('float32') * 0.1\n"
            f"{code}\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({packages!r})))\n")
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, check=True)
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def test_audio_features_do_not_import_transformers():
    code = ("from csg.features import audio_features\n"
            "assert audio_features(x, 16000, 25.0, 50).shape[0] == 50")
    assert _imported_after(code, ("transformers", "diffusers")) == []


def test_find_peaks_equals_scipy_on_random_and_plateau_signals():
    from scipy.signal import find_peaks as scipy_find_peaks

    from csg.features import find_peaks

    rng = np.random.default_rng(0)
    for t in range(600):
        n = int(rng.integers(1, 150))
        x = rng.standard_normal(n) if t % 2 else rng.integers(0, 4, n).astype(float)  # ties, flat tops
        height, distance = float(rng.normal()), int(rng.integers(1, 12))
        np.testing.assert_array_equal(find_peaks(x, height=height, distance=distance),
                                      scipy_find_peaks(x, height=height, distance=distance)[0])


def test_mean3_equals_scipy_uniform_filter():
    from scipy.ndimage import uniform_filter1d

    from csg.data.synth_audio import _mean3

    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 10, 500):
        x = rng.random(n)
        np.testing.assert_allclose(_mean3(x), uniform_filter1d(x, 3), rtol=0, atol=1e-12)


def test_stage1_generate_imports_no_scipy():
    """Onsets, idle motion and smoothing on csg run's stage-1 path are numpy: scipy's import
    (~1.3 s for scipy.signal) is not paid there."""
    code = ("from csg.data.synth_audio import events_from_audio\n"
            "from csg.features import onset_frames\n"
            "events_from_audio(x, 16000); onset_frames(x, 16000, 25.0, 50)")
    assert _imported_after(code, ("scipy",)) == []
