"""SR3 diffusion math: schedules, posteriors and preconditionings against closed forms, the loss, the samplers."""

from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path

import pytest
import torch

from baselines.sr3.loss import sr3_loss
from baselines.sr3.model import SR3Config
from baselines.sr3.precond import PARAMETERIZATIONS, SIGMA_DATA, edm_coefficients, get_precond
from baselines.sr3.samplers import ancestral, ddim, per_image_noise, per_image_normal
from baselines.sr3.schedule import (
    PAPER_TRAIN,
    TRAIN_DEFAULT,
    Schedule,
    cosine,
    from_spec,
    linear,
    posterior,
    sample_gamma,
)
from evalsuite.methods import image_generators


def _target(param: str, y0: torch.Tensor, eps: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    # What each parameterization's network should output, written from the definitions (not the library's maps).
    g = gamma.double()[:, None, None, None]
    a, s = g.sqrt(), (1 - g).sqrt()
    y0, eps = y0.double(), eps.double()
    if param == "eps":
        return eps.float()
    if param == "x0":
        return y0.float()
    if param == "v":
        return (a * eps - s * y0).float()
    c_skip, c_out = (c.double() for c in edm_coefficients(gamma))
    return ((y0 - c_skip * (a * y0 + s * eps)) / c_out).float()


def test_linear_schedule_closed_form():
    s = linear(2000, 1e-6, 0.01)
    assert s.T == 2000
    assert s.betas[0] == pytest.approx(1e-6) and s.betas[-1] == pytest.approx(0.01)
    assert s.betas[1] - s.betas[0] == pytest.approx((0.01 - 1e-6) / 1999)
    # γ_t = Π (1 − β_i), compared with a direct log-sum.
    gamma = s.gamma()
    t = 1234
    direct = math.exp(sum(math.log(1 - b) for b in s.betas[:t]))
    assert float(gamma[t - 1]) == pytest.approx(direct, rel=1e-12)
    assert torch.all(gamma[1:] < gamma[:-1])
    assert float(s.gamma_prev()[0]) == 1.0 and float(s.gamma_prev()[5]) == float(gamma[4])


def test_schedule_is_immutable_and_round_trips_through_its_spec():
    s = linear(50, 1e-4, 0.1)
    with pytest.raises(AttributeError):
        s.betas = (0.5,)  # type: ignore[misc]
    assert from_spec(s.to_spec()) == s
    r = s.respace(7)
    assert r.to_spec()["kind"] == "respace" and from_spec(r.to_spec()) == r
    assert from_spec(cosine(20).to_spec()) == cosine(20)
    assert from_spec(TRAIN_DEFAULT) == cosine(2000) and from_spec(PAPER_TRAIN) == linear(2000, 1e-6, 0.01)
    with pytest.raises(ValueError, match="unknown schedule kind"):
        from_spec({"kind": "quadratic"})


def test_respace_keeps_the_gamma_range():
    s = linear(2000, 1e-6, 0.01)
    r = s.respace(100)
    assert r.T == 100
    assert float(r.gamma()[-1]) == pytest.approx(float(s.gamma()[-1]), rel=1e-9)
    # Position 20 of 100 sits at t = 400 of the 2000-step schedule.
    assert float(r.gamma()[19]) == pytest.approx(float(s.gamma()[399]), rel=1e-9)


def test_posterior_closed_form():
    s = linear(10, 0.01, 0.3)
    c0, ct, var = posterior(s)
    beta, gamma = s.beta(), s.gamma()
    for t in range(1, 10):  # 0-based index t is step t+1
        g, gp, b = gamma[t], gamma[t - 1], beta[t]
        assert float(var[t]) == pytest.approx(float(b * (1 - gp) / (1 - g)))
        assert float(c0[t]) == pytest.approx(float(gp.sqrt() * b / (1 - g)))
        assert float(ct[t]) == pytest.approx(float((1 - b).sqrt() * (1 - gp) / (1 - g)))
    # Mean of q(y_{t-1}|y_t,y0) written with ε equals SR3 Algorithm 2's update (with the true ε).
    y0, eps = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    t = 6
    y_t = gamma[t].sqrt() * y0 + (1 - gamma[t]).sqrt() * eps
    alg2 = (y_t - (1 - (1 - beta[t])) / (1 - gamma[t]).sqrt() * eps) / (1 - beta[t]).sqrt()
    torch.testing.assert_close(c0[t] * y0 + ct[t] * y_t, alg2)
    # The posterior at t=1 is exactly y0.
    assert float(c0[0]) == pytest.approx(1.0) and float(ct[0]) == pytest.approx(0.0, abs=1e-12)


def test_gamma_is_drawn_per_example_within_its_interval():
    s = linear(2000, 1e-6, 0.01)
    torch.manual_seed(0)
    g = s.sample_gamma(4096)
    assert g.shape == (4096,)
    assert len(torch.unique(g)) > 4000  # one noise level per example, not per batch
    assert float(g.max()) <= 1.0 and float(g.min()) >= float(s.gamma()[-1]) - 1e-7
    # t is uniform: the fraction with γ below γ_1000 is ~1/2.
    frac = float((g < s.gamma()[999].float()).float().mean())
    assert 0.45 < frac < 0.55
    # Drawing leaves the schedule as it was: it holds its β and its spec, no cache.
    assert s == linear(2000, 1e-6, 0.01) and hash(s) == hash(linear(2000, 1e-6, 0.01))
    assert [f.name for f in dataclasses.fields(Schedule)] == ["betas", "spec"] and set(vars(s)) == {"betas", "spec"}
    # The table a training run keeps on its device draws the same γ as the method, for the same RNG state.
    torch.manual_seed(5)
    a = s.sample_gamma(64)
    torch.manual_seed(5)
    torch.testing.assert_close(sample_gamma(s.gamma_table(), 64), a, rtol=0, atol=0)


@pytest.mark.parametrize("param", ["eps", "x0", "v", "edm"])
def test_parameterizations_invert(param):
    torch.manual_seed(1)
    y0, eps = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4)
    gamma = torch.tensor([0.9, 0.3, 0.01])
    a, s = gamma.sqrt()[:, None, None, None], (1 - gamma).sqrt()[:, None, None, None]
    y_t = a * y0 + s * eps
    p = get_precond(param)
    out = _target(param, y0, eps, gamma)
    e_hat, y0_hat = p.eps(out, y_t, gamma), p.y0(out, y_t, gamma)
    torch.testing.assert_close(e_hat, eps, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(y0_hat, y0, atol=1e-4, rtol=1e-4)


def test_edm_target_has_unit_variance_and_the_skip_is_the_optimal_linear_denoiser():
    # For data of std σ_data the `edm` target F has unit variance at every noise level, and with F = 0
    # the prediction c_skip·ỹ is the exact posterior mean of Gaussian data (the best linear denoiser).
    torch.manual_seed(2)
    y0 = torch.randn(6, 3, 64, 64) * SIGMA_DATA
    eps = torch.randn_like(y0)
    gamma = torch.tensor([1e-4, 0.01, 0.2, 0.5, 0.9, 0.9999])
    f = _target("edm", y0, eps, gamma)
    torch.testing.assert_close(f.var(dim=(1, 2, 3)), torch.ones(6), atol=0.03, rtol=0)
    a, s = gamma.sqrt()[:, None, None, None], (1 - gamma).sqrt()[:, None, None, None]
    y0_hat = get_precond("edm").y0(torch.zeros_like(y0), a * y0 + s * eps, gamma)
    exact = _gaussian_denoiser(SIGMA_DATA**2)(a * y0 + s * eps, gamma)
    torch.testing.assert_close(y0_hat, exact, atol=1e-5, rtol=1e-4)


def _gaussian_denoiser(var: float):
    # Data y0 ~ N(0, var·I): E[y0 | y_t] = sqrt(γ)·var / (γ·var + 1 − γ) · y_t exactly.
    def denoise(y_t: torch.Tensor, gamma: torch.Tensor):
        g = gamma.double()[:, None, None, None]
        return ((g.sqrt() * var / (g * var + 1 - g)) * y_t.double()).float()

    return denoise


def _sample(sampler, denoise, shape, sched, gens):
    # k-diffusion's contract: starting noise, noise levels and a noise source, all per image.
    cpu = torch.device("cpu")
    return sampler(
        denoise, per_image_normal(shape, gens, cpu), sched.sampling_gammas(), per_image_noise(shape, gens, cpu)
    )


@pytest.mark.parametrize("sampler", [ancestral, ddim])
def test_sampler_recovers_gaussian_data_variance(sampler):
    var = 0.25
    sched = linear(2000, 1e-6, 0.01).respace(200)
    gens = image_generators(0, [f"img{i}" for i in range(8)], torch.device("cpu"))
    out = _sample(sampler, _gaussian_denoiser(var), (1, 32, 32), sched, gens)
    assert out.shape == (8, 1, 32, 32)
    assert float(out.var()) == pytest.approx(var, rel=0.08)
    assert abs(float(out.mean())) < 0.02


def test_sampler_with_wrong_denoiser_misses_the_variance():
    # Guard: the variance test can fail (a denoiser for var 1.0 yields var ≈ 1.0, not 0.25).
    sched = linear(2000, 1e-6, 0.01).respace(100)
    gens = image_generators(0, ["a", "b", "c", "d"], torch.device("cpu"))
    out = _sample(ancestral, _gaussian_denoiser(1.0), (1, 32, 32), sched, gens)
    assert float(out.var()) > 0.8


@pytest.mark.parametrize("sampler", [ancestral, ddim])
def test_samples_do_not_depend_on_batch_size(sampler):
    sched = linear(100, 1e-4, 0.1).respace(20)
    ids = ["a", "b", "c", "d", "e"]
    den = _gaussian_denoiser(0.5)
    full = _sample(sampler, den, (3, 8, 8), sched, image_generators(7, ids, torch.device("cpu")))
    parts = [
        _sample(sampler, den, (3, 8, 8), sched, image_generators(7, ids[i : i + 2], torch.device("cpu")))
        for i in range(0, 5, 2)
    ]
    torch.testing.assert_close(torch.cat(parts), full, rtol=0, atol=0)
    assert not torch.allclose(full[0], full[1])


def test_per_image_noise_comes_from_its_generator():
    gens = image_generators(3, ["x", "y"], torch.device("cpu"))
    n = per_image_normal((2, 2), gens, torch.device("cpu"))
    g = image_generators(3, ["y"], torch.device("cpu"))[0]
    torch.testing.assert_close(n[1], torch.randn((2, 2), generator=g))


def test_unknown_parameterization_is_an_error_listing_the_valid_ones():
    with pytest.raises(ValueError, match="unknown parameterization 'epsilon'; valid: eps, x0, v, edm"):
        get_precond("epsilon")
    with pytest.raises(ValueError, match="valid: eps, x0, v, edm"):
        SR3Config(parameterization="V")


@pytest.mark.parametrize("loss", ["l1", "l2"])
@pytest.mark.parametrize("param", PARAMETERIZATIONS)
def test_an_oracle_network_has_zero_loss_and_a_perturbed_one_pays_for_its_error(param, loss):
    # The network returns ŷ0 through the parameterization's map from its raw output; an oracle outputs the
    # exact target (ε, y0, v or edm's F), so ŷ0 = y0 and the loss is 0. Adding δ to the raw output costs
    # exactly |δ| (L1) or δ² (L2) at every γ: the loss weight maps the error on ŷ0 back to the raw output's.
    torch.manual_seed(3)
    y0 = torch.rand(64, 3, 8, 8) * 2 - 1
    x_up = torch.zeros_like(y0)
    precond = get_precond(param)

    def oracle(delta: float):
        def net(x: torch.Tensor, y_t: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
            g = gamma.double()[:, None, None, None]
            eps = (y_t.double() - g.sqrt() * y0.double()) / (1 - g).sqrt()
            return precond.y0(_target(param, y0, eps, gamma) + delta, y_t, gamma)

        return net

    for sched in (linear(2000, 1e-6, 0.01), cosine(2000)):
        table = sched.gamma_table()
        assert float(sr3_loss(oracle(0.0), precond, x_up, y0, table, loss)) < 1e-5
        perturbed = float(sr3_loss(oracle(0.1), precond, x_up, y0, table, loss))
        assert perturbed == pytest.approx(0.1 if loss == "l1" else 0.01, rel=1e-3)


def test_sr3_loss_builds_y_t_from_one_gamma_per_example():
    seen: dict[str, torch.Tensor] = {}

    def net(x: torch.Tensor, y_t: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        seen.update(x=x, y_t=y_t, gamma=gamma)
        return torch.zeros_like(y_t)  # ŷ0 = 0

    torch.manual_seed(4)
    y0, x_up = torch.rand(32, 3, 4, 4) * 2 - 1, torch.randn(32, 3, 4, 4)
    table = cosine(1000).gamma_table()
    torch.manual_seed(7)
    value = sr3_loss(net, get_precond("x0"), x_up, y0, table, "l2")
    # The same RNG stream: γ per example first, then ε.
    torch.manual_seed(7)
    gamma = sample_gamma(table, 32)
    eps = torch.randn_like(y0)
    torch.testing.assert_close(seen["gamma"], gamma, rtol=0, atol=0)
    assert seen["x"] is x_up and len(set(gamma.tolist())) == 32
    assert float(gamma.min()) >= float(table[-1]) - 1e-7 and float(gamma.max()) <= 1.0
    # y_t = sqrt(γ)·y0 + sqrt(1−γ)·ε, each example with its own γ.
    g = gamma.double()[:, None, None, None]
    y_t = g.sqrt() * y0.double() + (1 - g).sqrt() * eps.double()
    torch.testing.assert_close(seen["y_t"].double(), y_t, atol=1e-6, rtol=0)
    # x0: weight 1, so with ŷ0 = 0 the L2 loss is mean(y0²).
    assert float(value) == pytest.approx(float((y0**2).mean()), rel=1e-6)
    with pytest.raises(ValueError, match="loss must be l1 or l2"):
        sr3_loss(net, get_precond("x0"), x_up, y0, table, "huber")


def _imports(module: str, root: Path) -> set[str]:
    # Every baselines/evalsuite module a module's source imports, at any level (lazy imports included).
    path = root.joinpath(*module.split("."))
    src = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    found: set[str] = set()
    for node in ast.walk(ast.parse(src.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n.split(".")[0] in ("baselines", "evalsuite") and _exists(n, root)}
    return found


def _exists(module: str, root: Path) -> bool:
    path = root.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def test_inference_does_not_import_the_training_loop():
    root = Path(__file__).resolve().parents[1]
    seen, todo = set(), ["baselines.sr3.method", "baselines.sr3.janspiry", "baselines.sr3.tune", "baselines.sr3"]
    todo += ["baselines.regression.method", "baselines.ddpm.model", "baselines.cascade"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(_imports(m, root))
    assert "baselines.sr3.model" in seen and "baselines.sr3.samplers" in seen  # the walk follows imports
    training = {"baselines.train", "baselines.sr3.recipe", "baselines.regression.recipe", "baselines.ddpm.recipe"}
    assert not seen & training, sorted(seen)


def test_preconditionings_pickle_by_name():
    """A model holding its Precond (lambdas inside) can still be pickled whole (torch.save, spawn)."""
    import pickle

    from baselines.sr3.precond import PARAMETERIZATIONS, get_precond

    for name in PARAMETERIZATIONS:
        assert pickle.loads(pickle.dumps(get_precond(name))) is get_precond(name)
