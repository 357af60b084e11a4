"""csg.features: per-frame mel features, envelopes, onsets and the wav2vec2 adapter."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from csg.errors import ConfigError, WeightsNotFoundError
from csg.features import (AudioFeatureConfig, AudioFeaturizer, Wav2Vec2Features, audio_features,
                          feature_dim, log_rms_envelope, mel_frame_features, onset_envelope,
                          onset_frames, stack_context)

SR, FPS = 16000, 25


def _clicks(frames, num_frames, sr=SR, fps=FPS, seed=0, offset=0):
    """Noise bursts starting exactly at the given pose frames, silence elsewhere."""
    rng = np.random.default_rng(seed)
    wav = np.zeros(num_frames * sr // fps, np.float32)
    for f in frames:
        s = f * sr // fps + offset
        wav[s:s + 800] = rng.normal(0, 0.3, 800) * np.exp(-np.arange(800) / 200)
    return wav


def test_shapes_dim_and_normalisation(rng):
    wav = rng.normal(0, 0.1, 16000).astype(np.float32)
    cfg = AudioFeatureConfig(n_mels=20, context=2)
    x = audio_features(wav, SR, FPS, 25, cfg)
    assert x.shape == (25, feature_dim(cfg)) == (25, 5 * 22)
    assert x.dtype == np.float32 and np.isfinite(x).all()
    centre = x[:, 2 * 22:3 * 22]  # the A(f) block
    assert np.allclose(centre.mean(0), 0, atol=1e-4)
    assert np.allclose(centre.std(0)[centre.std(0) > 0], 1, atol=1e-3)
    raw = audio_features(wav, SR, FPS, 25, dataclasses.replace(cfg, normalize="none", context=0))
    assert raw.shape == (25, 22) and not np.allclose(raw.mean(0), 0, atol=1e-2)


def test_context_stacking_edges():
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    s = stack_context(x, 1)
    assert s.shape == (4, 6)
    np.testing.assert_array_equal(s[0], [0, 1, 0, 1, 2, 3])  # left edge repeats frame 0
    np.testing.assert_array_equal(s[3], [4, 5, 6, 7, 6, 7])


def test_output_length_follows_num_frames_not_audio(rng):
    wav = rng.normal(0, 0.1, 8000).astype(np.float32)  # 0.5 s
    x = audio_features(wav, SR, FPS, 40, AudioFeatureConfig(normalize="none", context=0))
    assert x.shape[0] == 40
    energy = x[:, -2]
    assert energy[:12].min() > -40 and np.all(energy[14:] == -100)  # zero padding past the end


def test_features_localise_in_time():
    wav = _clicks([10], 30)
    x = mel_frame_features(wav, SR, FPS, 30)
    energy, onset = x[:, -2], x[:, -1]
    assert int(np.argmax(energy)) == 10 and int(np.argmax(onset)) == 10
    assert energy[5] == -100  # silent frames


# Burst at the start, middle or end of a frame: never reported early, at most one 10 ms hop late,
# so a burst 2.5 ms before a frame's end is dated to the next frame.
@pytest.mark.parametrize("offset,shift", [(0, 0), (320, 0), (600, 1)])
def test_envelopes_and_onsets_recover_clicks(offset, shift):
    beats = [5, 17, 30, 44, 60]
    wav = _clicks(beats, 75, offset=offset)
    rms = log_rms_envelope(wav, SR, FPS, 75)
    env = onset_envelope(wav, SR, FPS, 75)
    assert rms.shape == env.shape == (75,) and (env >= 0).all()
    on = onset_frames(wav, SR, FPS, 75)
    assert on.dtype == np.int64
    np.testing.assert_array_equal(on, np.array(beats) + shift)
    assert onset_frames(np.zeros(16000, np.float32), SR, FPS, 25).size == 0


def test_fractional_fps_and_other_rates(rng):
    wav = rng.normal(0, 0.1, 44100).astype(np.float32)
    x = audio_features(wav, 44100, 29.97, 30, AudioFeatureConfig(n_mels=16, context=1))
    assert x.shape == (30, 3 * 18) and np.isfinite(x).all()


def test_zero_frames(rng):
    wav = rng.normal(0, 0.1, 1600).astype(np.float32)
    assert audio_features(wav, SR, FPS, 0).shape == (0, feature_dim(AudioFeatureConfig()))
    assert onset_envelope(wav, SR, FPS, 0).shape == (0,)


def test_bad_config():
    with pytest.raises(ConfigError, match="unknown kind"):
        audio_features(np.zeros(1600), SR, FPS, 4, AudioFeatureConfig(kind="mfcc"))
    with pytest.raises(ConfigError, match="features.wav2vec2"):
        audio_features(np.zeros(1600), SR, FPS, 4, AudioFeatureConfig(kind="wav2vec2"))


# --- wav2vec2 ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_w2v_dir(tmp_path_factory):
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)  # test-only: deterministic tiny weights
    cfg = Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, conv_dim=(8, 8), conv_kernel=(10, 3),
                         conv_stride=(5, 2), num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=2, vocab_size=8)
    d = tmp_path_factory.mktemp("w2v") / "tiny_w2v"
    Wav2Vec2Model(cfg).save_pretrained(d)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(d)
    return d


def test_wav2vec2_from_pretrained_and_dispatch(tiny_w2v_dir, rng):
    enc = Wav2Vec2Features.from_pretrained(tiny_w2v_dir, layers=(-1, 1))
    assert enc.dim == 32 and enc.stride == 10
    wav = rng.normal(0, 0.1, 4000).astype(np.float32)
    x = enc(wav, FPS, 6, context=1)
    assert x.shape == (6, 3 * 32) and np.isfinite(x).all()
    cfg = AudioFeatureConfig(kind="wav2vec2", wav2vec2=str(tiny_w2v_dir), wav2vec2_layers=(-1, 1),
                             context=1)
    assert feature_dim(cfg) == 96
    y = AudioFeaturizer(cfg)(wav, SR, FPS, 6)
    np.testing.assert_allclose(x, y, atol=1e-5)
    # same audio at 8 kHz is resampled to 16 kHz first
    z = audio_features(wav[::2], 8000, FPS, 6, cfg, encoder=enc)
    assert z.shape == (6, 96)


def test_wav2vec2_interpolates_to_frame_centres(tiny_w2v_dir, rng):
    enc = Wav2Vec2Features.from_pretrained(tiny_w2v_dir)
    wav = rng.normal(0, 0.1, 3200).astype(np.float32)
    hs = enc.hidden_states(wav)
    e = enc.embed(wav, FPS, 5)  # frame centres at 320, 960, ... samples; stride 10
    k = (320 - (enc.receptive_field - 1) / 2) / enc.stride
    k0 = int(np.floor(k))
    np.testing.assert_allclose(e[0], hs[k0] + (k - k0) * (hs[k0 + 1] - hs[k0]), atol=1e-5)


def test_wav2vec2_missing_weights_is_clear(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="huggingface-cli download"):
        Wav2Vec2Features.from_pretrained(tmp_path / "nope")
    with pytest.raises(WeightsNotFoundError, match="facebook/wav2vec2-base-960h"):
        Wav2Vec2Features.from_pretrained("facebook/wav2vec2-base-960h")
    with pytest.raises(ConfigError, match="out of range"):
        pass_layers = (7,)
        d = tmp_path / "bad"
        _save_tiny(d)
        Wav2Vec2Features.from_pretrained(d, layers=pass_layers)


def _save_tiny(d):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, conv_dim=(8,), conv_kernel=(10,), conv_stride=(5,),
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=8)
    Wav2Vec2Model(cfg).save_pretrained(d)
