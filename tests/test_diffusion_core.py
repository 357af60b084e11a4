"""csg.diffusion: schedules and timestep sets against diffusers, ddim_sample on a Gaussian with a
closed-form answer, frozen noise, CFG as a wrapper vs the former in-sampler CFG, windows,
embeddings against the former implementations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from csg.diffusion import schedule as S
from csg.diffusion import windows as W
from csg.diffusion.sampling import (Known, StepContext, classifier_free, ddim_sample, randn)


# --- schedules and timestep sets ---------------------------------------------------------------
@pytest.mark.parametrize("kind,kw", [("cosine", dict(beta_schedule="squaredcos_cap_v2")),
                                     ("linear", dict(beta_schedule="linear")),
                                     ("scaled_linear", dict(beta_schedule="scaled_linear",
                                                            beta_start=0.00085, beta_end=0.012))])
def test_schedules_equal_diffusers(kind, kw):
    from diffusers import DDIMScheduler

    d = DDIMScheduler(num_train_timesteps=1000, **kw)
    extra = {k: v for k, v in kw.items() if k in ("beta_start", "beta_end")}
    ours = S.make_alphas_cumprod(kind, 1000, **extra)
    assert ours.dtype == torch.float64
    assert torch.equal(ours.float(), d.alphas_cumprod)


@pytest.mark.parametrize("spacing", S.SPACINGS)
@pytest.mark.parametrize("steps", [1, 4, 25, 50, 333])
def test_timestep_sets_equal_diffusers(spacing, steps):
    from diffusers import DDIMScheduler

    d = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing, steps_offset=0)
    d.set_timesteps(steps)
    assert S.timesteps(1000, steps, spacing) == d.timesteps.tolist()


def test_trailing_starts_at_pure_noise_and_explicit_lists_are_checked():
    assert S.timesteps(1000, 4)[0] == 999 and S.ddim_timesteps(1000, 4) == S.timesteps(1000, 4)
    assert S.timesteps(1000, [999, 500, 10]) == [999, 500, 10]
    for bad in ([], [10, 500], [1000, 3], [5, 5]):
        with pytest.raises(ValueError, match="descending"):
            S.timesteps(1000, bad)
    with pytest.raises(ValueError, match="spacing"):
        S.timesteps(1000, 4, "sideways")


def test_epsilon_parameterisation_round_trips():
    ac = S.cosine_alphas_cumprod(100)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g,
                                                                                dtype=torch.float64)
    t = torch.tensor([3, 50, 90])
    xt = S.q_sample(x0, t, eps, ac)
    for kind in S.PREDICTIONS:
        x0r, epsr = S.to_x0_eps(S.training_target(x0, eps, t, ac, kind), xt, t, ac, kind)
        assert torch.allclose(x0r, x0) and torch.allclose(epsr, eps)


# --- ddim_sample on a Gaussian with a known answer -----------------------------------------------
MU, SD = 1.5, 0.4  # data x0 ~ N(MU, SD²), per element


def _gauss_denoiser(ac, kind="sample"):
    """The exact posterior mean E[x0 | x_t] of the Gaussian data (the ideal denoiser)."""
    def fn(x, t):
        a = float(ac[t])
        x0 = MU + math.sqrt(a) * SD ** 2 / (a * SD ** 2 + 1 - a) * (x - math.sqrt(a) * MU)
        if kind == "sample":
            return x0
        return (x - math.sqrt(a) * x0) / math.sqrt(1 - a)  # epsilon
    return fn


def _closed_form_gain(ac, ts):
    """DDIM (eta 0) with the exact denoiser is affine in x_T for Gaussian data:
    x_0 - MU = g (x_T - sqrt(a_T) MU), g = Π [sqrt(a_p a) SD² + sqrt((1-a_p)(1-a))] / v_t,
    v_t = a SD² + 1 - a (derived from DDIM Eq. 12 with x0 = E[x0 | x_t])."""
    g = 1.0
    for i, t in enumerate(ts):
        a = float(ac[t])
        ap = float(ac[ts[i + 1]]) if i + 1 < len(ts) else 1.0
        g *= (math.sqrt(ap * a) * SD ** 2 + math.sqrt((1 - ap) * (1 - a))) / (a * SD ** 2 + 1 - a)
    return g


@pytest.mark.parametrize("kind", ["sample", "epsilon"])
def test_ddim_sample_matches_the_closed_form_on_a_gaussian(kind):
    sched = S.NoiseSchedule.cosine(1000, kind)
    ts = S.timesteps(1000, 10)
    g = torch.Generator().manual_seed(0)
    xT = randn((4, 3, 2), g, dtype=torch.float64)
    out = ddim_sample(_gauss_denoiser(sched.alphas_cumprod, kind), xT, ts, sched, generator=g)
    a_T = float(sched.alphas_cumprod[ts[0]])
    want = MU + _closed_form_gain(sched.alphas_cumprod, ts) * (xT - math.sqrt(a_T) * MU)
    assert torch.allclose(out, want, atol=1e-9)


def test_ddim_sample_with_many_steps_recovers_the_data_distribution():
    sched = S.NoiseSchedule.cosine(1000)
    g = torch.Generator().manual_seed(1)
    xT = randn((20000,), g, dtype=torch.float64)
    out = ddim_sample(_gauss_denoiser(sched.alphas_cumprod), xT, S.timesteps(1000, 200), sched,
                      generator=g)
    assert abs(out.mean().item() - MU) < 0.01 and abs(out.std().item() - SD) / SD < 0.02
    # stochastic DDPM-like sampling (eta = 1) also lands on the data distribution
    out1 = ddim_sample(_gauss_denoiser(sched.alphas_cumprod), xT, S.timesteps(1000, 200), sched,
                       generator=g, eta=1.0)
    assert abs(out1.mean().item() - MU) < 0.01 and abs(out1.std().item() - SD) / SD < 0.03


def test_known_values_are_kept_exactly_and_noise_is_frozen_per_step():
    sched = S.NoiseSchedule.cosine(1000)
    ts = S.timesteps(1000, 5)
    g = torch.Generator().manual_seed(2)
    xT = randn((2, 6, 3), g)
    mask = torch.zeros(2, 6, 1, dtype=torch.bool)
    mask[:, :2] = True
    known = Known(torch.full((2, 6, 3), 7.0), mask)
    seen = []

    def guide(f, x, ctx):
        assert isinstance(ctx, StepContext) and ctx.num_steps == 5 and ctx.cond == {"k": 1}
        assert torch.equal(f(x), f(x))  # same noise for every call within a step
        seen.append((ctx.i, ctx.t, ctx.t_prev, ctx.sigma_t))
        return f(x)

    state = g.get_state()
    out = ddim_sample(_gauss_denoiser(sched.alphas_cumprod), xT, ts, sched, generator=g,
                      guide=guide, known=known, eta=0.5, cond={"k": 1})
    assert torch.equal(out[:, :2], known.values[:, :2])
    assert [s[0] for s in seen] == list(range(5)) and seen[-1][2] == -1
    assert seen[0][3] == pytest.approx(sched.sigma(ts[0]))
    # exactly two tensors shaped like x per step, nothing else
    g2 = torch.Generator()
    g2.set_state(state)
    for _ in range(2 * len(ts)):
        randn(xT.shape, g2)
    assert torch.equal(g.get_state(), g2.get_state())


# --- CFG as a wrapper gives the former in-sampler result ------------------------------------------
@torch.no_grad()
def _former_sample(model, audio, ref, *, steps, cfg_scale, generator, known, known_mask, eta,
                   guide):
    """audio2pose.sampling.sample as it was before csg.diffusion (CFG inside the loop), kept
    verbatim here as the reference; guide(f, z, i) uses the old hook signature."""
    cfg = model.config
    ac = S.cosine_alphas_cumprod(cfg.num_train_timesteps)
    ts = S.ddim_timesteps(cfg.num_train_timesteps, steps)
    B, T = audio.shape[:2]
    shape = (B, T, cfg.num_keypoints, 2)
    dev, dtype = audio.device, audio.dtype
    randn_ = lambda: torch.randn(shape, generator=generator, device=generator.device,  # noqa
                                 dtype=torch.float32).to(dev, dtype)

    def denoise_cfg(z, t):
        tt = torch.full((B,), t, dtype=torch.long, device=z.device)
        if cfg_scale == 1.0:
            out = model(z, tt, audio, ref, known=known, known_mask=known_mask)
            return out.sample, out.score_logits
        cat = lambda x: None if x is None else torch.cat([x, x])  # noqa: E731
        drop = torch.cat([torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)])
        out = model(cat(z), torch.cat([tt, tt]), cat(audio), cat(ref), known=cat(known),
                    known_mask=cat(known_mask), drop_audio=drop)
        cond, uncond = out.sample[:B], out.sample[B:]
        return S.cfg_combine(cond, uncond, cfg_scale), out.score_logits[:B]

    z = randn_()
    m = known_mask[..., None, None]
    z = torch.where(m, S.q_sample(known, ts[0], z, ac), z)
    last = [None]
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        step_noise, paste_noise = randn_(), randn_()

        def f(z_in, t=t, t_prev=t_prev, step_noise=step_noise, paste_noise=paste_noise):
            out, logits = denoise_cfg(z_in, t)
            last[0] = logits
            z_prev, _ = S.ddim_step(out, z_in, t, t_prev, ac, cfg.prediction_type, eta=eta,
                                    noise=step_noise)
            k = known if t_prev < 0 else S.q_sample(known, t_prev, paste_noise, ac)
            return torch.where(m, k, z_prev)

        z = guide(f, z, i) if guide is not None else f(z)
    return z, torch.sigmoid(last[0])


@pytest.mark.parametrize("cfg_scale,eta,guided", [(2.0, 0.0, False), (1.0, 0.0, False),
                                                   (3.0, 0.7, True)])
def test_cfg_wrapper_gives_the_former_result(cfg_scale, eta, guided):
    from audio2pose.sampling import sample
    from tests.test_audio2pose_model import FEATS, tiny_denoiser
    from csg.features import feature_dim

    torch.manual_seed(0)
    m = tiny_denoiser().eval()
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 9, feature_dim(FEATS), generator=g)
    r = torch.randn(2, 133, 2, generator=g)
    known = torch.randn(2, 9, 133, 2, generator=g)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[:, :3] = True
    push = (lambda f, z, i: 0.5 * f(z) + 0.5 * f(0.9 * z)) if guided else None
    new_push = (lambda f, z, ctx: 0.5 * f(z) + 0.5 * f(0.9 * z)) if guided else None
    old_z, old_s = _former_sample(m, a, r, steps=4, cfg_scale=cfg_scale,
                                  generator=torch.Generator().manual_seed(5), known=known,
                                  known_mask=mask, eta=eta, guide=push)
    new = sample(m, a, r, steps=4, cfg_scale=cfg_scale, generator=torch.Generator().manual_seed(5),
                 known=known, known_mask=mask, eta=eta, guide=new_push)
    assert torch.equal(new.z0, old_z) and torch.equal(new.scores, old_s)


def test_classifier_free_batched_equals_two_calls_and_scale_one_is_plain():
    calls = []

    def fn(x, t, uncond):
        calls.append(None if uncond is None else uncond.tolist())
        u = torch.zeros(x.shape[0]) if uncond is None else uncond.double()
        return x * 2 + u.reshape(-1, 1) * 3  # "condition" adds nothing, dropping adds 3

    x = torch.arange(6.0, dtype=torch.float64).reshape(2, 3)
    a = classifier_free(fn, 1.5)(x, 10)
    b = classifier_free(fn, 1.5, batched=False)(x, 10)
    assert torch.equal(a, b) and torch.allclose(a, 2 * x + 3 - 1.5 * 3)
    calls.clear()
    assert torch.equal(classifier_free(fn, 1.0)(x, 10), 2 * x) and calls == [None]


# --- windows -----------------------------------------------------------------------------------
def test_plan_windows_carry_overlap_and_cover_every_frame_once():
    plan = W.plan_windows(30, 12, 4)
    assert [(w.start, w.stop, w.carried) for w in plan] == [(0, 12, 0), (8, 20, 4), (16, 28, 4),
                                                            (24, 30, 4)]
    covered = np.concatenate([np.arange(30)[w.new] for w in plan])
    assert covered.tolist() == list(range(30))
    assert W.plan_windows(5, 12, 4) == [W.Window(0, 0, 5, 0)]
    with pytest.raises(ValueError):
        W.window_spans(10, 4, 4)
    assert W.chunk_bounds(7, 3) == [(0, 3), (3, 6), (6, 7)]


def test_blend_weights_sum_to_one_and_blending_is_exact_on_agreeing_windows():
    spans = W.window_spans(50, 16, 5)
    total = np.zeros(50)
    for (a, b), w in zip(spans, W.blend_weights(spans)):
        total[a:b] += w
        assert (w > 0).all() and (w <= 1).all()
    assert np.allclose(total, 1.0)
    signal = np.sin(np.arange(50))[:, None] * np.ones((1, 3))
    out = W.blend_windows([signal[a:b] for a, b in spans], spans)
    assert np.allclose(out, signal)
    w = W.blend_weights([(0, 6), (3, 9)])
    assert np.allclose(w[0], [1, 1, 1, 0.75, 0.5, 0.25]) and np.allclose(w[1][:3], [0.25, .5, .75])


# --- embeddings keep both checkpoints' behaviour --------------------------------------------------
def _former_model_sinusoidal(x, dim, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = x.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.nn.functional.pad(emb, (0, dim % 2))


def _former_classifier_sinusoidal(x, dim, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half) / half)
    ang = x.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


@pytest.mark.parametrize("dim", [64, 128, 192, 33])
def test_sinusoidal_equals_both_former_versions(dim):
    from csg.diffusion.embeddings import sinusoidal

    x = torch.cat([torch.arange(300), torch.tensor([999, 0, 17])])
    assert torch.equal(sinusoidal(x, dim), _former_model_sinusoidal(x, dim))
    assert torch.equal(sinusoidal(x * 1.0, dim), _former_model_sinusoidal(x * 1.0, dim))
    if dim % 2 == 0:
        assert torch.equal(sinusoidal(x, dim, cos_first=False),
                           _former_classifier_sinusoidal(x, dim))
