"""Known-answer tests of PAHA Algorithm 1 (csg.diffusion.guidance) on a hand-computed 4-element toy.

Toy: z = [1, 2, 3, 4]; M_nf = [1, 1, 0, 0], M_f = [0, 0, 1, 1]; σ = 0.5; λ_nf = 1, λ_f = 0.1,
λ_diff = 0.25; ∇D_nf(z) = 2z; ∇D_f(z) = [0, 0, z0 + z1 + 1, z1 − z0 + 1] (depends on the
non-face entries, so the point it is evaluated at shows); f(z) = 2z + 1.

By hand:
  Eq. 8  ẑ^nf = z − 0.5·[2, 4, 0, 0]              = [0, 0, 3, 4]
  Eq. 9  ∇D_f(ẑ^nf) = [0, 0, 1, 1]; ẑ^f = z − 0.05·[0, 0, 1, 1] = [1, 2, 2.95, 3.95]
         (at z instead: ∇D_f(z) = [0, 0, 4, 2] -> [1, 2, 2.8, 3.9], the wrong ordering)
  Eq. 10 ẑ* = ẑ^f + ẑ^nf − z                      = [0, 0, 2.95, 3.95]
  Eq. 11 f(ẑ*)                                    = [1, 1, 6.9, 8.9]
  Eq. 12 f(ẑ^nf) = [1, 1, 7, 9], f(ẑ^f) = [3, 5, 6.9, 8.9]
         literal:  f(ẑ*) + 0.25·[3, 5, 7, 9]          = [1.75, 2.25, 8.65, 11.15]
         residual: f(ẑ*) + 0.25·[2, 4, 0.1, 0.1]      = [1.5, 2, 6.925, 8.925]
"""
from __future__ import annotations

import pytest
import torch

from csg.diffusion import guidance as G
from csg.diffusion.sampling import StepContext

Z = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
M_NF = torch.tensor([1.0, 1.0, 0.0, 0.0])
M_F = torch.tensor([0.0, 0.0, 1.0, 1.0])
SIGMA = 0.5
LAMBDAS = (1.0, 0.1, 0.25)


def grad_nf(z):
    return 2 * z


def grad_f(z):
    out = torch.zeros_like(z)
    out[:, 2] = z[:, 0] + z[:, 1] + 1
    out[:, 3] = z[:, 1] - z[:, 0] + 1
    return out


class CountingSolver:
    """f(z) = 2z + 1, counting calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, z):
        self.calls += 1
        return 2 * z + 1


def close(a, b):
    return torch.allclose(a, torch.tensor([b], dtype=torch.float32), atol=1e-6)


def test_eq8_nonface_update():
    assert close(G.nonface_update(Z, SIGMA, grad_nf, M_NF, 1.0), [0, 0, 3, 4])


def test_eq9_face_gradient_is_taken_at_the_nonface_updated_sample():
    z_nf = G.nonface_update(Z, SIGMA, grad_nf, M_NF, 1.0)
    assert close(G.face_update(Z, z_nf, SIGMA, grad_f, M_F, 0.1), [1, 2, 2.95, 3.95])
    # the same function evaluated at z itself gives the other answer: ordering matters here
    assert close(G.face_update(Z, Z, SIGMA, grad_f, M_F, 0.1), [1, 2, 2.8, 3.9])


def test_eq10_sequential_guidance_returns_star_nf_f():
    z_star, z_nf, z_f = G.sequential_guidance(Z, SIGMA, grad_nf, grad_f, M_NF, M_F, 1.0, 0.1)
    assert close(z_nf, [0, 0, 3, 4])
    assert close(z_f, [1, 2, 2.95, 3.95])
    assert close(z_star, [0, 0, 2.95, 3.95])


def test_eq11_sg_step_is_one_solver_call_on_z_star():
    f = CountingSolver()
    out = G.guided_step(f, Z, SIGMA, mode="sg", grad_fns=(grad_nf, grad_f), masks=(M_NF, M_F),
                        lambdas=LAMBDAS)
    assert close(out, [1, 1, 6.9, 8.9])
    assert f.calls == 1


def test_eq12_dg_literal_adds_the_compensation_terms():
    f = CountingSolver()
    out = G.guided_step(f, Z, SIGMA, mode="dg", grad_fns=(grad_nf, grad_f), masks=(M_NF, M_F),
                        lambdas=LAMBDAS, dg_form="literal")
    assert close(out, [1.75, 2.25, 8.65, 11.15])
    assert f.calls == 3


def test_eq12_dg_residual_form():
    f = CountingSolver()
    out = G.guided_step(f, Z, SIGMA, mode="dg", grad_fns=(grad_nf, grad_f), masks=(M_NF, M_F),
                        lambdas=LAMBDAS, dg_form="residual")
    assert close(out, [1.5, 2, 6.925, 8.925])
    # residual DG with λ_diff = 0 is SG
    sg = G.guided_step(f, Z, SIGMA, mode="sg", grad_fns=(grad_nf, grad_f), masks=(M_NF, M_F),
                       lambdas=LAMBDAS)
    dg0 = G.guided_step(f, Z, SIGMA, mode="dg", grad_fns=(grad_nf, grad_f), masks=(M_NF, M_F),
                        lambdas=(1.0, 0.1, 0.0), dg_form="residual")
    assert torch.equal(sg, dg0)


def test_mode_none_is_plain_f_and_never_calls_the_classifiers():
    def boom(z):
        raise AssertionError("classifier called in mode none")

    f = CountingSolver()
    out = G.guided_step(f, Z, SIGMA, mode="none", grad_fns=(boom, boom), masks=(M_NF, M_F),
                        lambdas=LAMBDAS)
    assert torch.equal(out, 2 * Z + 1) and f.calls == 1


def test_zero_lambdas_make_sg_equal_plain_f():
    f = CountingSolver()
    out = G.guided_step(f, Z, SIGMA, mode="sg", grad_fns=(grad_nf, grad_f), masks=(M_NF, M_F),
                        lambdas=(0.0, 0.0, 0.25))
    assert torch.equal(out, 2 * Z + 1)


def test_per_sample_sigma_broadcasts_over_the_batch():
    z = torch.cat([Z, Z]).reshape(2, 1, 4)  # (B, T, K) like a real state
    out = G.nonface_update(z, torch.tensor([0.5, 0.0]), grad_nf, M_NF, 1.0)
    assert close(out[0], [0, 0, 3, 4]) and torch.equal(out[1], z[1])


def test_is_guided_step_first_fraction_only():
    assert [G.is_guided_step(i, 30, 0.5) for i in (0, 14, 15, 29)] == [True, True, False, False]
    assert sum(G.is_guided_step(i, 30, 0.5) for i in range(30)) == 15
    assert not any(G.is_guided_step(i, 30, 0.0) for i in range(30))
    assert all(G.is_guided_step(i, 30, 1.0) for i in range(30))
    assert sum(G.is_guided_step(i, 4, 0.5) for i in range(4)) == 2


def test_make_guide_guides_only_the_first_fraction():
    cfg = G.GuidanceConfig(mode="sg", guided_fraction=0.5)
    guide = G.make_guide(cfg, lambda ctx: (grad_nf, grad_f), (M_NF, M_F))
    f = CountingSolver()

    def ctx(i):
        return StepContext(i=i, num_steps=4, t=999 - i, t_prev=998 - i, sigma_t=SIGMA)

    assert close(guide(f, Z, ctx(0)), [1, 1, 6.9, 8.9])
    assert close(guide(f, Z, ctx(1)), [1, 1, 6.9, 8.9])
    assert torch.equal(guide(f, Z, ctx(2)), 2 * Z + 1)
    assert G.make_guide(G.GuidanceConfig(mode="none"), None, (M_NF, M_F)) is None


def test_guidance_config_rejects_bad_values():
    with pytest.raises(ValueError, match="mode"):
        G.GuidanceConfig(mode="cfg")
    with pytest.raises(ValueError, match="fraction"):
        G.GuidanceConfig(guided_fraction=1.5)
    with pytest.raises(ValueError, match="dg_form"):
        G.GuidanceConfig(dg_form="printed")
    assert G.GuidanceConfig().lambdas == (1.0, 0.1, 0.25)


def test_one_set_of_modes_and_one_dg_form_default():
    """The CLI flags and the run config's stage1 keys take their choices and defaults from here."""
    import inspect

    from audio2pose import cli

    assert G.MODES == ("none", "sg", "dg") and G.DG_FORM_DEFAULT == "residual"
    assert G.GuidanceConfig().dg_form == G.DG_FORM_DEFAULT
    for fn in (G.differential_correction, G.guided_step):
        p = inspect.signature(fn).parameters
        assert p["form" if "form" in p else "dg_form"].default == G.DG_FORM_DEFAULT
    opts = {o.name: o for o in cli.generate.params}
    assert tuple(opts["guidance"].type.choices) == G.MODES
    d = G.GuidanceConfig()
    for name in ("lambda_nonface", "lambda_face", "lambda_diff", "guided_fraction", "dg_form"):
        assert opts[name].default == getattr(d, name), name


def test_sync_loss_grad_of_a_linear_classifier():
    """logit = w·z + b: ∇_z −log σ(logit) = −σ(−logit) w; the classifier gets no gradient."""
    lin = torch.nn.Linear(4, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -1.0, 0.0, 2.0]]))
        lin.bias.fill_(-1.0)
    z = torch.tensor([[1.0, 0.0, 0.0, 0.25]])  # logit = 0.5 + 0.5 − 1 = 0
    g = G.sync_loss_grad(lambda x: lin(x).squeeze(-1), z)
    assert torch.allclose(g, -0.5 * torch.tensor([[0.5, -1.0, 0.0, 2.0]]))
    assert lin.weight.grad is None and not g.requires_grad
    # a step against the gradient raises the sync score
    s0 = torch.sigmoid(lin(z)).item()
    s1 = torch.sigmoid(lin(z - 0.1 * g)).item()
    assert s1 > s0


def test_eval_compare_variants_take_the_guidance_settings():
    from csg.errors import InputError
    from eval.compare import make_generator, parse_variant

    name, opts = parse_variant("dg=guidance:dg,lambda_diff:0.5,dg_form:literal")
    assert name == "dg" and opts["lambda_diff"] == 0.5 and opts["dg_form"] == "literal"
    assert callable(make_generator(opts))  # nothing loaded until first use
    with pytest.raises(InputError, match="dg_form"):
        make_generator(parse_variant("x=guidance:dg,dg_form:printed")[1])


def test_guidance_config_from_the_run_configs_stage1_fields():
    from types import SimpleNamespace

    s1 = SimpleNamespace(guidance="dg", lambda_nonface=2.0, lambda_face=0.3, lambda_diff=0.5,
                         guided_fraction=0.25, dg_form="literal", steps=25)
    cfg = G.GuidanceConfig.from_fields(s1)
    assert cfg == G.GuidanceConfig("dg", 2.0, 0.3, 0.5, 0.25, "literal")
    assert G.GuidanceConfig.from_fields(s1, mode="sg").mode == "sg"
    assert G.GuidanceConfig.from_fields({"lambda_face": 0.2}) == G.GuidanceConfig(lambda_face=0.2)
