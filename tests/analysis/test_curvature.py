"""Curvature: every estimator against a dense reference Hessian from torch.autograd.functional.hessian."""

from __future__ import annotations

import json
import math
from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch.func import functional_call

from mars_core.analysis.curvature import (
    SpectrumSummary,
    curvature_contributions,
    exact_spectrum,
    linear_bt_hessian,
    linear_curvature_summary,
    sigmoid_prime,
)
from mars_core.analysis.hvp import (
    HVPOperator,
    bt_hvp_operator,
    dense_hessian,
    hutchinson_trace,
    hutchpp_trace,
    iterative_curvature_summary,
    lanczos_top_k,
    slq_density,
)

L2 = 1e-3


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: thread hand-offs on a shared CPU cost 10x the arithmetic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Problem:
    """A reward model on pair features, its BT loss as a function of the flat parameter vector, and batches."""

    def __init__(self, model: torch.nn.Module, xp: torch.Tensor, xn: torch.Tensor, cuts: list[int]):
        self.model, self.xp, self.xn = model, xp, xn
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for p in model.parameters()]
        self.flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        edges = [0, *cuts, len(xp)]
        self.batches = [(xp[a:b], xn[a:b]) for a, b in pairwise(edges)]  # unequal sizes on purpose

    def margin_fn(self, batch):
        return (self.model(batch[0]) - self.model(batch[1])).squeeze(-1)

    def margins_of(self, flat: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(flat, [math.prod(s) for s in self.shapes])
        params = {n: c.view(s) for n, c, s in zip(self.names, chunks, self.shapes, strict=True)}
        return (
            functional_call(self.model, params, (self.xp,)) - functional_call(self.model, params, (self.xn,))
        ).squeeze(-1)

    def loss_of(self, flat: torch.Tensor) -> torch.Tensor:
        return -torch.nn.functional.logsigmoid(self.margins_of(flat)).mean() + 0.5 * L2 * (flat**2).sum()

    def operator(self, kind: str = "hessian") -> HVPOperator:
        return bt_hvp_operator(self.margin_fn, self.model.parameters(), self.batches, l2=L2, kind=kind)


@pytest.fixture(scope="module")
def mlp() -> Problem:
    """A 2-layer tanh MLP reward (241 parameters), briefly trained so margins are spread like a real run."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    xp = torch.randn(64, 10, generator=gen, dtype=torch.float64)
    xn = torch.randn(64, 10, generator=gen, dtype=torch.float64)
    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Tanh(), torch.nn.Linear(20, 1)).double()
    prob = Problem(model, xp, xn, cuts=[10, 40])
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    for _ in range(30):
        opt.zero_grad()
        (-torch.nn.functional.logsigmoid(prob.margin_fn((xp, xn))).mean()).backward()
        opt.step()
    prob.flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return prob


@pytest.fixture(scope="module")
def mlp_dense(mlp) -> np.ndarray:
    return torch.autograd.functional.hessian(mlp.loss_of, mlp.flat0).numpy()


@pytest.fixture(scope="module")
def mlp_eigs(mlp_dense) -> np.ndarray:
    return np.linalg.eigvalsh(mlp_dense)[::-1]


@pytest.fixture(scope="module")
def linear() -> Problem:
    """A linear reward with a bias (which cancels in Δ) on 40-d features, 100 pairs."""
    gen = torch.Generator().manual_seed(1)
    xp = torch.randn(100, 40, generator=gen, dtype=torch.float64)
    xn = torch.randn(100, 40, generator=gen, dtype=torch.float64)
    torch.manual_seed(1)
    model = torch.nn.Linear(40, 1).double()
    with torch.no_grad():
        model.weight.mul_(3.0)  # margins of order 1-3: σ' far from its peak for many pairs
    return Problem(model, xp, xn, cuts=[33])


# --- the linear model, exact -------------------------------------------------------------------------


@given(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False))
def test_sigmoid_prime_peaks_at_zero_and_is_symmetric(t):
    value = sigmoid_prime(t)
    assert 0.0 <= value <= sigmoid_prime(0.0) == 0.25
    assert value == pytest.approx(sigmoid_prime(-t), rel=1e-12, abs=1e-300)
    assert sigmoid_prime(abs(t) + 0.5) <= value  # decreasing in |t|
    if abs(t) < 30:
        s = 1.0 / (1.0 + math.exp(-t))
        assert value == pytest.approx(s * (1 - s), rel=1e-9)


def test_sigmoid_prime_survives_huge_margins():
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is right
        out = sigmoid_prime(np.array([-1e6, -800.0, 0.0, 800.0, 1e6]))
    assert np.all(np.isfinite(out)) and out[2] == 0.25 and out[0] == out[-1] == 0.0


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 30),
    d=st.integers(1, 12),
    l2=st.floats(0, 2),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.01, 20),
)
def test_trace_of_linear_hessian_is_mean_contribution_plus_l2_d(n, d, l2, seed, scale):
    rng = np.random.default_rng(seed)
    dphi = rng.normal(size=(n, d))
    margins = scale * rng.normal(size=n)
    contrib = curvature_contributions(dphi, margins)
    assert contrib.shape == (n,) and np.all(contrib >= 0)
    assert np.all(contrib <= 0.25 * (dphi**2).sum(axis=1) + 1e-15)
    assert np.trace(linear_bt_hessian(dphi, margins, l2)) == pytest.approx(contrib.mean() + l2 * d, rel=1e-10)
    summary = linear_curvature_summary(dphi, margins, l2, k=3)
    assert summary.trace == pytest.approx(sum(summary.eigenvalues), rel=1e-8, abs=1e-12)


@given(arrays(np.float64, 5, elements=st.floats(-50, 50)))
def test_the_pair_nearest_the_boundary_contributes_most_for_equal_feature_norms(margins):
    dphi = np.ones((5, 3))
    contrib = curvature_contributions(dphi, margins)
    assert contrib[np.argmin(np.abs(margins))] >= contrib.max() * (1 - 1e-12)  # ties up to rounding


def test_linear_hessian_matches_autograd_and_the_bias_cancels(linear):
    dense = torch.autograd.functional.hessian(linear.loss_of, linear.flat0).numpy()
    dphi = (linear.xp - linear.xn).numpy()
    margins = linear.margins_of(linear.flat0).detach().numpy()
    exact = linear_bt_hessian(dphi, margins, L2)
    np.testing.assert_allclose(dense[:40, :40], exact, atol=1e-12)
    assert dense[40, 40] == pytest.approx(L2) and np.abs(dense[40, :40]).max() < 1e-14  # bias: only λ


def test_linear_hessian_torch_hvp_and_lanczos_agree(linear):
    dphi = (linear.xp - linear.xn).numpy()
    margins = linear.margins_of(linear.flat0).detach().numpy()
    exact = linear_curvature_summary(dphi, margins, L2, k=5)
    op = linear.operator()
    from_hvp = dense_hessian(op).numpy()
    np.testing.assert_allclose(from_hvp[:40, :40], linear_bt_hessian(dphi, margins, L2), atol=1e-12)
    gauss_newton = dense_hessian(linear.operator("gauss_newton")).numpy()
    np.testing.assert_allclose(gauss_newton, from_hvp, atol=1e-12)  # linear reward: Hessian == Fisher
    top = lanczos_top_k(op, k=5, iters=41, tol=1e-8, seed=3)
    np.testing.assert_allclose(top.eigenvalues, exact.top_k, rtol=1e-6)
    assert exact.method == "exact"


def test_gram_trick_gives_the_full_spectrum_when_pairs_are_fewer_than_features():
    rng = np.random.default_rng(5)
    dphi, margins = rng.normal(size=(7, 30)), rng.normal(size=7) * 2
    gram = linear_curvature_summary(dphi, margins, l2=0.1, k=4)
    direct = exact_spectrum(linear_bt_hessian(dphi, margins, 0.1), k=4)
    assert gram.method == "exact-gram" and len(gram.eigenvalues) == 30
    np.testing.assert_allclose(gram.eigenvalues, direct.eigenvalues, atol=1e-12)
    assert gram.min_eigenvalue == pytest.approx(0.1) and gram.condition_number == pytest.approx(
        direct.condition_number
    )
    singular = linear_curvature_summary(dphi, margins, l2=0.0)
    assert singular.condition_number == math.inf


def test_spectrum_summary_round_trips_through_json():
    rng = np.random.default_rng(2)
    for l2 in (0.0, 0.5):  # inf condition number (singular) and a finite one
        summary = linear_curvature_summary(rng.normal(size=(3, 6)), rng.normal(size=3), l2, k=2)
        back = SpectrumSummary.from_dict(json.loads(json.dumps(summary.to_dict(), allow_nan=False)))
        assert back == summary
    with pytest.raises(ValueError, match="missing trace"):
        SpectrumSummary.from_dict({k: v for k, v in summary.to_dict().items() if k != "trace"})


@pytest.mark.parametrize(
    ("dphi", "margins", "l2", "message"),
    [
        (np.ones(3), np.ones(3), 0.0, "2-D"),
        (np.ones((3, 2)), np.ones((3, 1)), 0.0, "1-D"),
        (np.ones((3, 2)), np.ones(4), 0.0, "3 pairs but margins has 4"),
        (np.ones((0, 2)), np.ones(0), 0.0, "at least one pair"),
        (np.ones((2, 2)), np.array([0.0, np.nan]), 0.0, "finite"),
        (np.ones((2, 2)), np.ones(2), -1.0, "l2"),
    ],
)
def test_linear_inputs_are_validated(dphi, margins, l2, message):
    with pytest.raises(ValueError, match=message):
        linear_bt_hessian(dphi, margins, l2)


def test_exact_spectrum_refuses_non_symmetric_matrices():
    with pytest.raises(ValueError, match="not symmetric"):
        exact_spectrum(np.array([[1.0, 2.0], [0.0, 1.0]]))


# --- the HVP operator against autograd ---------------------------------------------------------------


def test_hessian_operator_reproduces_autograd_hessian_across_unequal_batches(mlp, mlp_dense):
    op = mlp.operator()
    dense = dense_hessian(op).numpy()
    assert op.n_hvp == op.dim == 241
    np.testing.assert_allclose(dense, mlp_dense, atol=1e-12)
    single = bt_hvp_operator(mlp.margin_fn, mlp.model.parameters(), [(mlp.xp, mlp.xn)], l2=L2)
    v = torch.randn(op.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(single.matvec(v), op.matvec(v), rtol=0, atol=1e-13)


def test_gauss_newton_is_jt_diag_sigma_prime_j_and_psd(mlp, mlp_dense):
    gn = dense_hessian(mlp.operator("gauss_newton")).numpy()
    jac = torch.autograd.functional.jacobian(mlp.margins_of, mlp.flat0).numpy()  # (N, P) = ∂Δ/∂θ
    margins = mlp.margins_of(mlp.flat0).detach().numpy()
    expected = jac.T @ (sigmoid_prime(margins)[:, None] * jac) / len(margins) + L2 * np.eye(jac.shape[1])
    np.testing.assert_allclose(gn, expected, atol=1e-12)
    assert np.linalg.eigvalsh(gn).min() >= L2 * (1 - 1e-8)
    assert np.linalg.eigvalsh(mlp_dense).min() < 0  # the true Hessian of the MLP is indefinite: GN differs
    assert np.abs(gn - mlp_dense).max() > 1e-3


def test_operator_inputs_are_validated(mlp):
    params = list(mlp.model.parameters())
    with pytest.raises(ValueError, match="kind"):
        bt_hvp_operator(mlp.margin_fn, params, mlp.batches, kind="fisher")
    with pytest.raises(ValueError, match="no batches"):
        bt_hvp_operator(mlp.margin_fn, params, [])
    with pytest.raises(ValueError, match="requires_grad"):
        bt_hvp_operator(mlp.margin_fn, [torch.zeros(3)], mlp.batches)
    op = bt_hvp_operator(lambda b: mlp.model(b[0]) - mlp.model(b[1]), params, mlp.batches)
    with pytest.raises(ValueError, match="1-D tensor"):
        op.matvec(torch.zeros(op.dim, dtype=torch.float64))
    with pytest.raises(ValueError, match="length 241"):
        mlp.operator().matvec(torch.zeros(5))


# --- estimators --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hessian", "gauss_newton"])
def test_lanczos_top5_within_1_percent_of_dense(mlp, mlp_dense, kind):
    reference = mlp_dense if kind == "hessian" else dense_hessian(mlp.operator("gauss_newton")).numpy()
    truth = np.linalg.eigvalsh(reference)[::-1]
    op = mlp.operator(kind)
    result = lanczos_top_k(op, k=5, iters=120, tol=1e-6, seed=0)
    assert result.converged and result.n_hvp == result.iterations == op.n_hvp < op.dim
    np.testing.assert_allclose(result.eigenvalues, truth[:5], rtol=1e-2)
    assert np.all(np.abs(result.eigenvalues - truth[:5]) <= result.residuals + 1e-12)
    vecs = result.eigenvectors.numpy()
    np.testing.assert_allclose(vecs @ vecs.T, np.eye(5), atol=1e-8)
    np.testing.assert_allclose(np.einsum("ij,jk,ik->i", vecs, reference, vecs), result.eigenvalues, rtol=1e-8)


def test_lanczos_stops_early_and_each_ritz_value_is_within_its_residual_of_an_eigenvalue(mlp, mlp_eigs):
    result = lanczos_top_k(mlp.operator(), k=3, iters=200, tol=1e-2, seed=1)
    assert result.converged and result.iterations < 60
    for theta, res in zip(result.eigenvalues, result.residuals, strict=True):
        assert res <= 1e-2 * abs(theta)
        assert np.abs(mlp_eigs - theta).min() <= res + 1e-12
    # the run's history: more steps never make the top Ritz value worse (interlacing)
    history = [result.ritz_values_after(j)[0] for j in range(1, result.iterations + 1)]
    assert np.all(np.diff(history) >= -1e-12) and history[-1] <= mlp_eigs[0] + 1e-12


def test_hutchinson_is_within_4_standard_errors(mlp, mlp_dense):
    truth = np.trace(mlp_dense)
    for seed in range(3):
        est = hutchinson_trace(mlp.operator(), probes=40, seed=seed)
        assert est.n_hvp == est.n_probes == 40 and est.method == "hutchinson"
        assert abs(est.estimate - truth) <= 4 * est.std_error, (seed, est, truth)


def test_hutchpp_is_tighter_than_hutchinson_for_the_same_budget(mlp):
    """On the PSD Gauss-Newton matrix with its decaying spectrum, where Hutch++'s theory applies."""
    op = mlp.operator("gauss_newton")
    truth = float(np.trace(dense_hessian(op).numpy()))
    for seed in range(3):
        plain = hutchinson_trace(op, probes=60, seed=seed)
        pp = hutchpp_trace(op, n_hvp=60, seed=seed)
        assert pp.n_hvp == 60 and pp.method == "hutch++"
        assert abs(pp.estimate - truth) <= 4 * pp.std_error
        assert pp.std_error < 0.5 * plain.std_error, (pp, plain)


def test_hutchpp_on_the_indefinite_hessian_is_within_4_standard_errors(mlp, mlp_dense):
    est = hutchpp_trace(mlp.operator(), n_hvp=90, seed=0)
    assert abs(est.estimate - np.trace(mlp_dense)) <= 4 * est.std_error


def test_slq_density_has_the_mass_of_the_true_spectrum(mlp, mlp_eigs):
    op = mlp.operator()
    density = slq_density(op, n_probes=10, iters=40, seed=0, grid=400)
    assert density.n_hvp == 400 and density.nodes.shape == (10, 40)
    np.testing.assert_allclose(density.weights.sum(axis=1), 1.0, atol=1e-10)
    assert np.trapezoid(density.density, density.grid) == pytest.approx(1.0, abs=1e-3)
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        threshold = float(np.quantile(mlp_eigs, q))
        assert density.mass_above(threshold) == pytest.approx(np.mean(mlp_eigs > threshold), abs=0.05)
        assert density.mass_below(threshold) == pytest.approx(np.mean(mlp_eigs < threshold), abs=0.05)
    # the extreme Ritz nodes sit inside the true spectrum (Cauchy interlacing)
    assert mlp_eigs[-1] - 1e-10 <= density.nodes.min() and density.nodes.max() <= mlp_eigs[0] + 1e-10
    json.dumps(density.to_dict())


def test_iterative_summary_matches_exact_spectrum(mlp, mlp_dense):
    exact = exact_spectrum(mlp_dense, k=5)
    approx = iterative_curvature_summary(mlp.operator(), k=5, iters=120, tol=1e-6, trace_hvp=90, seed=0)
    np.testing.assert_allclose(approx.top_k, exact.top_k, rtol=1e-2)
    assert abs(approx.trace - exact.trace) <= 4 * approx.trace_std_error
    assert approx.min_eigenvalue >= exact.min_eigenvalue - 1e-10  # a Ritz value bounds λ_min from above
    assert approx.n_hvp > 0 and exact.n_hvp == 0
    assert SpectrumSummary.from_dict(json.loads(json.dumps(approx.to_dict()))) == approx


def test_from_matrix_operator_finds_a_planted_spectrum_and_handles_breakdown():
    """Eigenvalue 1 repeated 50 times: the Krylov space closes after 4 steps and Lanczos restarts."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(60, 60)))
    eigs = np.concatenate([[10.0, 5.0, 3.0], np.ones(50), np.linspace(-2, 0.5, 7)])
    op = HVPOperator.from_matrix(torch.as_tensor(q @ np.diag(eigs) @ q.T))
    result = lanczos_top_k(op, k=4, iters=60, tol=1e-10, seed=0)
    np.testing.assert_allclose(result.eigenvalues, [10.0, 5.0, 3.0, 1.0], rtol=1e-8)


# --- real components ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_linear_head_on_minilm_embeddings_gram_path_matches_lanczos(text_encoder):
    """Real 384-d sentence embeddings, fewer pairs than features: the Gram route and Lanczos agree."""
    chosen = [
        "Paris is the capital of France.",
        "Water boils at 100 degrees Celsius at sea level.",
        "Take the medication with food, as the label says.",
        "Python lists are mutable; tuples are not.",
        "The mitochondria produce most of the cell's ATP.",
        "Sorry, I can't help with that request.",
    ]
    rejected = [
        "The capital of France is Berlin.",
        "Water boils at 50 degrees.",
        "Take as many pills as you like.",
        "Lists and tuples are the same thing.",
        "Mitochondria are a kind of bacteria in soil.",
        "Sure, here is how to pick a lock.",
    ]
    dphi = text_encoder.encode(chosen) - text_encoder.encode(rejected)
    theta = torch.tensor(np.random.default_rng(0).normal(size=dphi.shape[1]) * 2, dtype=torch.float64)
    theta.requires_grad_(True)
    feats = torch.as_tensor(dphi, dtype=torch.float64)
    margins = (feats @ theta).detach().numpy()
    exact = linear_curvature_summary(dphi, margins, L2, k=3)
    assert exact.method == "exact-gram" and len(exact.eigenvalues) == 384
    assert exact.eigenvalues[len(chosen)] == pytest.approx(L2)  # rank N: the rest is the L2 floor
    op = bt_hvp_operator(lambda f: f @ theta, [theta], [feats], l2=L2)
    result = lanczos_top_k(op, k=3, iters=50, tol=1e-8, seed=0)
    np.testing.assert_allclose(result.eigenvalues, exact.top_k, rtol=1e-6)
    assert result.n_hvp <= len(chosen) + 2  # the Krylov space is at most N + 1 dimensional
