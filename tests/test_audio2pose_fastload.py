"""Stage 1 for inference without diffusers: the plain PoseDenoiserNet and its strict loader, and the
numpy Savitzky-Golay filter (audio2pose/denoiser.py, csg/smoothing.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audio2pose.denoiser import PoseDenoiserNet, load_denoiser
from audio2pose.model import PoseDenoiser
from audio2pose.pipeline import MODEL_DIR, Audio2PosePipeline, resolve_checkpoint
from csg.errors import WeightsNotFoundError
from csg.features import AudioFeatureConfig, feature_dim
from csg.smoothing import savgol

ROOT = Path(__file__).resolve().parents[1]
FEATS = AudioFeatureConfig(n_mels=8, context=1)


def _inputs(audio_dim: int, T: int = 9, B: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, T, 133, 2, generator=g)
    t = torch.tensor([3, 700])[:B]
    audio = torch.randn(B, T, audio_dim, generator=g)
    ref = torch.randn(B, 133, 2, generator=g)
    known = torch.randn(B, T, 133, 2, generator=g)
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, :3] = True
    drop = torch.tensor([False, True])[:B]
    return (z, t, audio, ref), dict(known=known, known_mask=mask, drop_audio=drop)


def _same_outputs(a, b, audio_dim: int) -> None:
    args, kw = _inputs(audio_dim)
    with torch.no_grad():
        oa, ob = a(*args, **kw), b(*args, **kw)
    assert torch.equal(oa.sample, ob.sample)
    assert torch.equal(oa.score_logits, ob.score_logits)
    assert torch.equal(a.standardize(args[0]), b.standardize(args[0]))


def _tiny(tmp_path: Path) -> tuple[PoseDenoiser, Path]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        m = PoseDenoiser(audio_dim=feature_dim(FEATS), dim=32, depth=2, heads=2, ff_mult=2,
                         prediction_type="v_prediction")
        m.set_coord_stats(torch.randn(133, 2) * 0.01, torch.rand(133, 2) + 0.5)
    m.eval().save_pretrained(tmp_path / "m", safe_serialization=True)
    return m, tmp_path / "m"


def test_tiny_model_plain_and_diffusers_bit_identical(tmp_path):
    m, folder = _tiny(tmp_path)
    net = load_denoiser(folder)
    assert isinstance(net, PoseDenoiserNet) and not isinstance(net, PoseDenoiser)
    assert set(net.state_dict()) == set(m.state_dict())
    assert net.config.prediction_type == "v_prediction" and net.config.depth == 2
    _same_outputs(m, net, feature_dim(FEATS))
    # and back: PoseDenoiser.from_net gives the same weights (the pipeline saves through it)
    back = PoseDenoiser.from_net(net)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in m.state_dict().items())


@pytest.mark.parametrize("name", ["default", "student"])
def test_embedded_checkpoints_plain_and_diffusers_bit_identical(name):
    folder = resolve_checkpoint(name) / MODEL_DIR
    ref = PoseDenoiser.from_pretrained(folder, torch_dtype=torch.float32).eval()
    net = load_denoiser(folder)
    _same_outputs(ref, net, ref.config.audio_dim)


def test_pipeline_loads_plain_by_default_and_diffusers_when_trainable(tmp_path):
    p = Audio2PosePipeline.from_pretrained()
    assert isinstance(p.model, PoseDenoiserNet)
    t = Audio2PosePipeline.from_pretrained(trainable=True)
    assert isinstance(t.model, PoseDenoiser)
    # a pipeline loaded for inference still saves a folder diffusers reads
    p.save_pretrained(tmp_path / "copy")
    again = PoseDenoiser.from_pretrained(tmp_path / "copy" / MODEL_DIR)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in t.model.state_dict().items())


def test_loader_is_strict(tmp_path):
    from safetensors.torch import load_file, save_file

    _, folder = _tiny(tmp_path)
    wfile = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(str(wfile))
    extra = dict(state, **{"extra.weight": torch.zeros(2)})
    save_file(extra, str(wfile))
    with pytest.raises(WeightsNotFoundError, match="unexpected key.*extra.weight"):
        load_denoiser(folder)
    state.pop("norm.weight")
    save_file(state, str(wfile))
    with pytest.raises(WeightsNotFoundError, match="missing key.*norm.weight") as e:
        load_denoiser(folder)
    assert "\n" not in str(e.value)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(cfg, dim=48)))
    with pytest.raises(WeightsNotFoundError, match="wrong shape"):
        load_denoiser(folder)
    (folder / "config.json").write_text(json.dumps(dict(cfg, widht=3)))
    with pytest.raises(WeightsNotFoundError, match="unknown denoiser config field.*widht"):
        load_denoiser(folder)
    wfile.unlink()
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsNotFoundError, match="weights not found"):
        load_denoiser(folder)


HEAVY = "[m for m in ('diffusers', 'transformers', 'torch._dynamo') if m in sys.modules]"


def test_inference_load_imports_no_diffusers():
    """Loading stage 1 for inference imports none of diffusers, transformers, torch._dynamo;
    generating adds no diffusers / torch._dynamo (the mel filter bank of csg.features still
    imports transformers.audio_utils)."""
    code = ("import sys\n"
            "from audio2pose.pipeline import Audio2PosePipeline\n"
            "import numpy as np, torch\n"
            "from tests.helpers import make_reference_pose\n"
            "p = Audio2PosePipeline.from_pretrained('student')\n"
            f"print('LOAD', {HEAVY})\n"
            "t = np.arange(16000) / 16000\n"
            "wav = (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)\n"
            "p(wav, 16000, make_reference_pose(), generator=torch.Generator().manual_seed(0),"
            " progress=False)\n"
            f"print('RUN', {HEAVY})\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LOAD []" in out.stdout, out.stdout
    run = out.stdout.split("RUN")[1]
    assert "diffusers" not in run and "torch._dynamo" not in run, out.stdout


def test_sinusoidal_same_bits_as_diffusers():
    """The shared embedding (and the denoiser's use of it) equals diffusers'
    get_timestep_embedding bit for bit, in both half orders, without importing diffusers."""
    from diffusers.models.embeddings import get_timestep_embedding

    from audio2pose.denoiser import sinusoidal
    from csg.diffusion.embeddings import sinusoidal as shared

    for x in (torch.arange(250), torch.tensor([0.0, 1.0, 999.0, 37.5]), torch.tensor([7])):
        for dim in (160, 32, 33):
            for cos_first in (True, False):
                ref = get_timestep_embedding(x, dim, flip_sin_to_cos=cos_first,
                                             downscale_freq_shift=0, max_period=10000.0)
                assert torch.equal(shared(x, dim, cos_first=cos_first), ref)
            assert torch.equal(sinusoidal(x, dim), shared(x, dim, cos_first=True))


def test_savgol_matches_scipy():
    from scipy.signal import savgol_filter

    g = np.random.default_rng(0)
    for T, w, o in [(7, 7, 2), (60, 7, 2), (9, 5, 3), (100, 11, 2), (30, 3, 2), (5, 1, 0),
                    (40, 9, 4)]:
        x = g.normal(size=(T, 133, 2))
        got = savgol(x, w, o)
        assert got.shape == x.shape and got.dtype == np.float64
        np.testing.assert_allclose(got, savgol_filter(x, w, o, axis=0), rtol=0, atol=1e-10)
    with pytest.raises(ValueError):
        savgol(np.zeros((5, 2)), 7, 2)
