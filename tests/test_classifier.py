"""Stage-1 sync classifiers (audio2pose.classifier) and their training (tiny, in-test data)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audio2pose import classifier as C
from csg import keypoints as K
from csg.errors import WeightsNotFoundError

D = 6


def tiny(region="face", seed=0):
    torch.manual_seed(seed)  # tests only: fixes the init of the tiny model
    return C.SyncClassifier(region=region, audio_dim=D, dim=16, layers=1, heads=2, ff_mult=2,
                            dropout=0.0, num_train_timesteps=100).eval()


def batch(B=2, T=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, K.NUM_KEYPOINTS, 2, generator=g), torch.tensor([3, 70][:B]),
            torch.randn(B, T, D, generator=g))


def test_region_masks_cover_mouth_jaw_and_the_rest_of_the_body():
    face, nonface = C.region_mask("face"), C.region_mask("nonface")
    assert face.shape == nonface.shape == (K.NUM_KEYPOINTS, 1)
    assert face[K.MOUTH].eq(1).all() and face[K.JAW].eq(1).all() and face.sum() == 20 + 17
    assert nonface[K.BODY].eq(1).all() and nonface[K.FEET].eq(1).all()
    assert nonface[K.HANDS].eq(1).all() and nonface[K.FACE].eq(0).all()
    assert (face * nonface).sum() == 0
    assert face[K.RIGHT_EYE].eq(0).all()  # eyes, brows, nose are in neither region
    with pytest.raises(ValueError, match="region"):
        C.region_mask("hands")


def test_forward_shape_and_batch_independence():
    m = tiny()
    x, t, a = batch()
    out = m(x, t, a)
    assert out.shape == (2,)
    single = m(x[1:], t[1:], a[1:])
    assert torch.allclose(out[1:], single, atol=1e-5)


def test_logits_depend_on_audio_timestep_and_only_on_the_own_region():
    m = tiny("face")
    x, t, a = batch()
    base = m.masked_logits(x, t, a)
    assert not torch.allclose(base, m.masked_logits(x, t, a.flip(1)))
    assert not torch.allclose(base, m.masked_logits(x, t + 20, a))
    x2 = x.clone()
    x2[:, :, K.HANDS] += 5.0  # other region: invisible to the face classifier
    assert torch.equal(base, m.masked_logits(x2, t, a))
    x2[:, :, K.MOUTH] += 0.5
    assert not torch.allclose(base, m.masked_logits(x2, t, a))


def test_loss_grad_is_zero_outside_the_region_and_leaves_params_alone():
    m = tiny("nonface")
    x, t, a = batch()
    g = m.loss_grad(x, t, a)
    assert g.shape == x.shape
    assert g[:, :, K.FACE].abs().sum() == 0 and g[:, :, K.BODY].abs().sum() > 0
    assert all(p.grad is None for p in m.parameters())
    # a small step against the gradient raises the sync score of each sample
    with torch.no_grad():
        s0 = torch.sigmoid(m.masked_logits(x, t, a))
        s1 = torch.sigmoid(m.masked_logits(x - 1e-2 * g, t, a))
    assert (s1 > s0).all()


def test_save_and_load_reproduce_the_logits(tmp_path):
    m = tiny("nonface")
    x, t, a = batch()
    m.save_pretrained(tmp_path / "clf")
    m2 = C.load_classifier(tmp_path / "clf")
    assert m2.config.region == "nonface"
    assert torch.allclose(m(x, t, a), m2(x, t, a), atol=1e-6)
    assert not any(p.requires_grad for p in m2.parameters())


def test_load_guide(tmp_path):
    assert C.load_guide("none", tmp_path / "missing") is None
    with pytest.raises(WeightsNotFoundError, match="classifier_face"):
        C.load_guide("sg", tmp_path / "missing")
    with pytest.raises(ValueError, match="mode"):
        C.load_guide("xg", tmp_path)
    tiny("face").save_pretrained(tmp_path / "classifier_face")
    tiny("nonface", seed=1).save_pretrained(tmp_path / "classifier_nonface")
    x, t, a = batch(B=1)
    from csg.diffusion.sampling import StepContext

    def ctx(i):
        return StepContext(i=i, num_steps=4, t=int(t[0]), t_prev=-1, sigma_t=0.9,
                           cond={"audio": a})
    calls = []

    def f(z):
        calls.append(z.clone())
        return 0.5 * z

    sg = C.load_guide("sg", tmp_path, guided_fraction=0.5)
    out = sg(f, x, ctx(0))
    assert len(calls) == 1 and torch.allclose(out, 0.5 * calls[0])
    moved = calls[0] - x
    assert moved[:, :, K.BODY].abs().sum() > 0 and moved[:, :, K.MOUTH].abs().sum() > 0
    assert moved[:, :, K.RIGHT_EYE].abs().sum() == 0  # in neither region
    calls.clear()
    assert torch.equal(sg(f, x, ctx(2)), 0.5 * x)  # outside the first r = 50 % of 4 steps
    dg = C.load_guide("dg", tmp_path, lambda_diff=0.25)
    calls.clear()
    dg(f, x, ctx(0))
    assert len(calls) == 3


# --- training ---------------------------------------------------------------------------------------
from audio2pose import classifier_train as CT


def test_shift_starts_keep_the_minimum_shift_inside_the_window():
    g = torch.Generator().manual_seed(0)
    a, b = CT.shift_starts(30, 20, 5, g, 500)
    assert ((a - b).abs() >= 5).all()
    assert (a >= 0).all() and (b >= 0).all() and (a <= 10).all() and (b <= 10).all()
    with pytest.raises(ValueError, match="too short"):
        CT.shift_starts(30, 26, 5, g, 4)


def test_crop_takes_per_item_windows():
    x = torch.arange(2 * 10 * 3).reshape(2, 10, 3).float()
    out = CT.crop(x, torch.tensor([0, 4]), 3)
    assert torch.equal(out[0], x[0, 0:3]) and torch.equal(out[1], x[1, 4:7])


def _bank(N=6, W=30):
    """Windows whose pose and audio carry their (clip, frame) so pairs can be traced."""
    frame = torch.arange(W).float()
    clip = torch.arange(N) // 2  # two windows per clip
    z = torch.zeros(N, W, K.NUM_KEYPOINTS, 2)
    z[..., 0] = frame[None, :, None]
    z[..., 1] = torch.arange(N).float()[:, None, None]
    audio = torch.stack([frame[None].expand(N, W), clip[:, None].float().expand(N, W)], -1)
    return CT.Bank(z, audio, clip)


def test_make_pairs_builds_each_kind_as_specified():
    cfg = CT.ClassifierTrainConfig(batch_size=64, neg_fraction=0.5)
    real = _bank()
    pool = CT.Bank(real.z + 100.0, real.audio.clone(), torch.full((6,), -1))
    g = torch.Generator().manual_seed(0)
    x0, audio, y, kind = CT.make_pairs(real, pool, cfg, 12, 5, g)
    assert x0.shape == (64, 12, K.NUM_KEYPOINTS, 2) and audio.shape == (64, 12, 2)
    assert y.sum() == 32 and torch.equal(y, (kind < 0).float())
    assert set(kind[kind >= 0].tolist()) == {0, 1, 2}
    item = x0[:, 0, 0, 1].long() % 100
    lag = audio[:, 0, 0] - x0[:, 0, 0, 0] % 100  # audio start frame - pose start frame
    same_clip = audio[:, 0, 1].long() == real.clip[item]
    pos, self_, shift, swap = kind == -1, kind == 0, kind == 1, kind == 2
    assert (lag[pos] == 0).all() and same_clip[pos].all() and (x0[pos] < 100).all()
    assert (lag[shift].abs() >= 5).all() and same_clip[shift].all()
    assert (~same_clip[swap]).all() and (lag[swap] == 0).all()
    assert (x0[self_][..., 0] >= 100).all()  # taken from the generator pool


def test_random_region_mask_zeroes_the_other_region_with_probability_p():
    x = torch.ones(400, 2, K.NUM_KEYPOINTS, 2)
    out = CT.random_region_mask(x, "face", 0.8, torch.Generator().manual_seed(0))
    masked = out[:, 0, K.HANDS.start, 0] == 0
    assert 0.7 < masked.float().mean() < 0.9
    assert (out[:, :, K.MOUTH] == 1).all()


def _tiny_dataset(root, rng):
    from csg.audio import frame_bounds
    from csg.data.manifest import ClipRecord, save_npz, write_manifest
    from tests.helpers import make_moving_pose

    recs = []
    for i, split in enumerate(["train"] * 3 + ["val"] * 2):
        T, fps = 40, 25.0
        pose = make_moving_pose(T, height=48 * 4, width=64 * 4, seed=i)
        n = int(frame_bounds(T, 16000, fps)[-1])
        audio = (rng.normal(0, 0.1, n) * np.sin(np.linspace(0, 20 + i, n)) ** 2).astype(np.float32)
        save_npz(root / "clips" / f"c{i}.npz", poses=pose.keypoints, audio=audio,
                 ref=pose.keypoints[0], fps=fps, width=256, height=192)
        recs.append(ClipRecord(id=f"c{i}", npz=f"clips/c{i}.npz", video=None, fps=fps,
                               num_frames=T, width=256, height=192, speaker="s", split=split,
                               source="synth", seconds=T / fps))
    write_manifest(root, recs)


def _tiny_pipe():
    from audio2pose.config import SamplingConfig
    from audio2pose.model import PoseDenoiser
    from audio2pose.pipeline import Audio2PosePipeline
    from csg.features import AudioFeatureConfig, feature_dim

    feats = AudioFeatureConfig(n_mels=4, context=0)
    torch.manual_seed(0)  # tests only
    model = PoseDenoiser(audio_dim=feature_dim(feats), dim=16, depth=1, heads=2, ff_mult=2,
                         num_train_timesteps=100)
    return Audio2PosePipeline(model, feats, 25.0, SamplingConfig(window=30, overlap=5, steps=2,
                                                                  cfg_scale=1.0))


def test_train_tiny_classifier_end_to_end(tmp_path, rng):
    _tiny_dataset(tmp_path / "data", rng)
    cfg = CT.ClassifierTrainConfig(
        region="nonface", data=str(tmp_path / "data"), out=str(tmp_path / "run"),
        model=CT.ClassifierModelConfig(dim=16, layers=1, heads=2), data_window=30,
        window_lengths=(10, 20, 28), min_shift_s=0.2, pool_size=4, pool_steps=2, batch_size=8,
        max_steps=3, eval_every=2, eval_items=6, eval_t_fracs=(0.0, 1.0), warmup=1)
    pipe = _tiny_pipe()
    result = CT.train(cfg, pipe=pipe, cpu=True)
    assert set(result["val"]) == {"t/T=0.00", "t/T=1.00"}
    assert 0.0 <= result["val"]["t/T=0.00"]["acc"] <= 1.0
    clf = C.load_classifier(tmp_path / "run" / "final")
    assert clf.config.region == "nonface" and clf.config.audio_dim == 6
    assert clf.config.num_train_timesteps == 100
    assert (tmp_path / "run" / "pool.pt").is_file() and (tmp_path / "run" / "metrics.json").is_file()
    # a second run reuses the cached pool (same key) and gives the same held-out numbers
    again = CT.train(cfg, pipe=pipe, cpu=True)
    assert again["val"] == result["val"]


def test_guide_plugs_into_the_stage1_sampler(tmp_path):
    from audio2pose.sampling import sample

    tiny("face").save_pretrained(tmp_path / "classifier_face")
    tiny("nonface", seed=1).save_pretrained(tmp_path / "classifier_nonface")
    model = _tiny_pipe().model.eval()
    g = torch.Generator().manual_seed(0)
    audio, ref = torch.randn(1, 12, D, generator=g), torch.zeros(1, K.NUM_KEYPOINTS, 2)

    def run(guide):
        return sample(model, audio, ref, steps=4, cfg_scale=2.0, guide=guide,
                      generator=torch.Generator().manual_seed(3)).z0

    plain = run(None)
    assert torch.allclose(run(C.load_guide("sg", tmp_path, lambda_nonface=0.0, lambda_face=0.0)),
                          plain, atol=1e-6)
    for mode in ("sg", "dg"):
        guided = run(C.load_guide(mode, tmp_path, lambda_nonface=5.0, lambda_face=5.0))
        assert torch.isfinite(guided).all() and not torch.allclose(guided, plain, atol=1e-4)


# --- csg pose generate --guidance (through csg.cli.main) ------------------------------------------
def _cli_setup(tmp_path, rng):
    """A tiny generator folder, tiny classifiers, 1 s of audio and a reference skeleton."""
    from csg.audio import save_audio
    from tests.helpers import make_reference_pose

    _tiny_pipe().save_pretrained(tmp_path / "gen")
    tiny("face").save_pretrained(tmp_path / "cls" / "classifier_face")
    tiny("nonface", seed=1).save_pretrained(tmp_path / "cls" / "classifier_nonface")
    n = 16000
    wav = (0.3 * np.sin(np.linspace(0, 900, n)) * (rng.random(n) > 0.5)).astype(np.float32)
    save_audio(tmp_path / "a.wav", wav)
    make_reference_pose(height=192, width=256).save(tmp_path / "ref.json")


def _generate(tmp_path, name, *extra):
    from csg.cli import main
    from csg.pose import PoseSequence

    out = tmp_path / f"{name}.json"
    rc = main(["pose", "generate", "--audio", str(tmp_path / "a.wav"), "--ref",
               str(tmp_path / "ref.json"), "-o", str(out), "--checkpoint", str(tmp_path / "gen"),
               "--steps", "2", "--quiet", "--guidance-checkpoint", str(tmp_path / "cls"), *extra])
    assert rc == 0
    return PoseSequence.load(out)


def test_cli_generate_passes_guidance_settings_through(tmp_path, rng, capsys):
    _cli_setup(tmp_path, rng)
    plain = _generate(tmp_path, "none").keypoints
    strong = ("--lambda-nonface", "50", "--lambda-face", "50", "--guided-fraction", "1")
    sg = _generate(tmp_path, "sg", "--guidance", "sg", *strong)
    assert sg.meta["guidance"] == "sg" and sg.meta["guidance_settings"]["lambda_face"] == 50.0
    assert not np.allclose(sg.keypoints, plain, atol=1e-4)
    dg = _generate(tmp_path, "dg", "--guidance", "dg", "--dg-form", "literal", *strong).keypoints
    dg_res = _generate(tmp_path, "dgr", "--guidance", "dg", "--dg-form", "residual",
                       *strong).keypoints
    assert not np.allclose(dg, plain, atol=1e-4) and not np.allclose(dg, dg_res, atol=1e-4)
    # the flags reach load_guide: zero weights or a zero fraction give back the unguided result
    zero = _generate(tmp_path, "sg0", "--guidance", "sg", "--lambda-nonface", "0",
                     "--lambda-face", "0").keypoints
    assert np.allclose(zero, plain, atol=1e-5)
    r0 = _generate(tmp_path, "r0", "--guidance", "sg", *strong[:4], "--guided-fraction",
                   "0").keypoints
    assert np.allclose(r0, plain, atol=1e-5)


def test_cli_generate_missing_classifiers_is_one_line_error(tmp_path, rng, capsys):
    from csg.cli import main

    _cli_setup(tmp_path, rng)
    capsys.readouterr()
    rc = main(["pose", "generate", "--audio", str(tmp_path / "a.wav"), "--ref",
               str(tmp_path / "ref.json"), "-o", str(tmp_path / "o.json"), "--checkpoint",
               str(tmp_path / "gen"), "--steps", "2", "--quiet", "--guidance", "dg",
               "--guidance-checkpoint", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1
    assert err.startswith("error:") and "classifier_face" in err and "Traceback" not in err
    assert not (tmp_path / "o.json").exists()
