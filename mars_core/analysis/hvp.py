"""Curvature of the BT loss for any torch reward model, on one primitive: the Hessian-vector product.

Lanczos (top-k), Hutchinson/Hutch++ (trace) and stochastic Lanczos quadrature (density) all talk to the
curvature only through :class:`HVPOperator`, and each reports its cost in HVPs. Tests check every
estimator against the dense Hessian of a tiny model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from mars_core.analysis.curvature import SpectrumSummary, _check_k, _check_l2, _condition_number

# ---------------------------------------------------------------------------------------------------------
# Any torch reward model: one HVP primitive
# ---------------------------------------------------------------------------------------------------------


class HVPOperator:
    """A symmetric linear operator v ↦ A·v on flat parameter vectors that counts its applications.

    Every estimator below talks to the curvature only through :meth:`matvec`, so its cost is exactly
    the change in :attr:`n_hvp`. Vectors live on the operator's device and dtype.
    """

    def __init__(
        self,
        matvec: Callable[[torch.Tensor], torch.Tensor],
        dim: int,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        name: str = "operator",
    ) -> None:
        if dim < 1:
            raise ValueError(f"operator dimension must be ≥ 1, got {dim}")
        self._matvec = matvec
        self.dim = int(dim)
        self.dtype = dtype
        self.device = torch.device(device)
        self.name = name
        self.n_hvp = 0

    def matvec(self, v: torch.Tensor | np.ndarray) -> torch.Tensor:
        v = torch.as_tensor(v).to(device=self.device, dtype=self.dtype)
        if v.shape != (self.dim,):
            raise ValueError(
                f"{self.name} acts on flat vectors of length {self.dim}, got shape {tuple(v.shape)}"
            )
        out = self._matvec(v).detach()
        self.n_hvp += 1
        return out

    __matmul__ = matvec

    @classmethod
    def from_matrix(cls, matrix: torch.Tensor | np.ndarray, name: str = "matrix") -> HVPOperator:
        """Wrap an explicit symmetric matrix (tests, and the exact linear Hessian in benchmarks)."""
        a = torch.as_tensor(matrix)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"matrix must be square, got shape {tuple(a.shape)}")
        return cls(lambda v: a @ v, a.shape[0], a.dtype, a.device, name)


def _flat(grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params, strict=True)]
    )


def _batch_margins(margin_fn: Callable[[Any], torch.Tensor], batch: Any) -> torch.Tensor:
    margins = margin_fn(batch)
    if not isinstance(margins, torch.Tensor) or margins.ndim != 1 or margins.numel() == 0:
        shape = tuple(margins.shape) if isinstance(margins, torch.Tensor) else type(margins).__name__
        raise ValueError(f"margin_fn must return a non-empty 1-D tensor (one margin per pair), got {shape}")
    if not margins.requires_grad:
        raise ValueError("margin_fn returned margins that do not depend on the parameters (no gradient)")
    return margins


def bt_hvp_operator(
    margin_fn: Callable[[Any], torch.Tensor],
    params: Iterable[torch.Tensor],
    batches: Iterable[Any],
    l2: float = 0.0,
    kind: Literal["hessian", "gauss_newton"] = "hessian",
) -> HVPOperator:
    """Curvature of L(θ) = −mean_i log σ(Δ_i) + (λ/2)‖θ‖² over ALL pairs of all batches, as an operator.

    ``kind="hessian"``: exact Hessian-vector products by double back-propagation (indefinite for a
    non-linear reward). ``kind="gauss_newton"``: Jᵀ diag(σ'(Δ)) J v / N + λv with J = ∂Δ/∂θ (the Fisher of
    the BT model; positive semi-definite), J v obtained from a vjp of a vjp so ``margin_fn`` can stay an
    ordinary closure over the model. The mean is over pairs, not over batches, so unequal batches are
    fine. Put the model in eval mode first: dropout would make every product a different matrix; and
    load transformers with ``attn_implementation="eager"``: fused attention has no second derivative.
    """
    params = list(params)
    batches = list(batches)  # traversed once per product
    lam = _check_l2(l2)
    if not params:
        raise ValueError("no parameters given: pass e.g. model.parameters()")
    if any(not p.requires_grad for p in params):
        raise ValueError("every parameter must have requires_grad=True (filter frozen ones out first)")
    if not batches:
        raise ValueError("no batches given: the loss needs at least one batch of pairs")
    if kind not in ("hessian", "gauss_newton"):
        raise ValueError(f"kind must be 'hessian' or 'gauss_newton', got {kind!r}")
    sizes = [p.numel() for p in params]
    dim = sum(sizes)
    dtype, device = params[0].dtype, params[0].device

    def split(v: torch.Tensor) -> list[torch.Tensor]:
        return [c.view_as(p) for c, p in zip(torch.split(v, sizes), params, strict=True)]

    def hessian_block(margins: torch.Tensor, vs: list[torch.Tensor]) -> torch.Tensor:
        loss = -torch.nn.functional.logsigmoid(margins).sum()  # summed here, divided by N once at the end
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        dot = sum((g * u).sum() for g, u in zip(grads, vs, strict=True) if g is not None)
        if not isinstance(dot, torch.Tensor) or not dot.requires_grad:
            return torch.zeros(dim, dtype=dtype, device=device)  # gradient constant in θ: zero Hessian
        return _flat(torch.autograd.grad(dot, params, allow_unused=True), params)

    def gauss_newton_block(margins: torch.Tensor, vs: list[torch.Tensor]) -> torch.Tensor:
        u = torch.zeros_like(margins, requires_grad=True)
        jt_u = torch.autograd.grad(margins, params, grad_outputs=u, create_graph=True, allow_unused=True)
        dot = sum((g * w).sum() for g, w in zip(jt_u, vs, strict=True) if g is not None)
        (jv,) = torch.autograd.grad(dot, u, retain_graph=True)  # d/du uᵀJv = Jv
        m = margins.detach()
        weight = torch.sigmoid(m) * torch.sigmoid(-m)
        return _flat(
            torch.autograd.grad(margins, params, grad_outputs=weight * jv, allow_unused=True), params
        )

    block = hessian_block if kind == "hessian" else gauss_newton_block

    def matvec(v: torch.Tensor) -> torch.Tensor:
        vs = split(v)
        total = torch.zeros(dim, dtype=dtype, device=device)
        n_pairs = 0
        for batch in batches:
            margins = _batch_margins(margin_fn, batch)
            try:
                total += block(margins, vs).to(dtype)
            except RuntimeError as err:
                if "derivative for" in str(err) and "not implemented" in str(err):
                    raise RuntimeError(
                        f"{err}\nThe model uses a kernel without a second derivative (usually fused attention: "
                        "SDPA / flash). Load it with attn_implementation='eager' to take curvature products."
                    ) from err
                raise
            n_pairs += margins.numel()
        return total / n_pairs + lam * v

    return HVPOperator(matvec, dim, dtype, device, f"BT {kind.replace('_', '-')}")


def dense_hessian(op: HVPOperator) -> torch.Tensor:
    """The full matrix from dim products with basis vectors; only for tiny models (tests, references)."""
    eye = torch.eye(op.dim, dtype=op.dtype, device=op.device)
    return torch.stack([op.matvec(e) for e in eye], dim=1)


# ---------------------------------------------------------------------------------------------------------
# Estimators built on the operator
# ---------------------------------------------------------------------------------------------------------


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed))


def _rademacher(shape: tuple[int, ...], gen: torch.Generator, op: HVPOperator) -> torch.Tensor:
    signs = torch.randint(0, 2, shape, generator=gen, dtype=torch.int8) * 2 - 1
    return signs.to(device=op.device, dtype=op.dtype)


def _check_count(name: str, value: int, minimum: int = 1) -> int:
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value}")
    return int(value)


@dataclass(frozen=True, eq=False)
class _Tridiagonal:
    alphas: np.ndarray
    betas: np.ndarray  # betas[j] couples step j and j+1; betas[-1] is the residual norm after the last step
    basis: torch.Tensor  # (steps, dim), orthonormal rows
    converged: bool


def _ritz(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-pairs of the tridiagonal T (ascending)."""
    t = np.diag(alphas) + np.diag(betas[: len(alphas) - 1], 1) + np.diag(betas[: len(alphas) - 1], -1)
    return np.linalg.eigh(t)


def _lanczos(
    op: HVPOperator, steps: int, start: torch.Tensor, gen: torch.Generator, k: int = 0, tol: float = 0.0
) -> _Tridiagonal:
    """Lanczos with full re-orthogonalisation (classical Gram-Schmidt, twice: 'twice is enough').

    Stops early once the top-k Ritz values have residual ‖Aŷ − θŷ‖ ≤ tol·|θ| (when k > 0 and tol > 0).
    On breakdown (an invariant subspace) it continues from a fresh random vector orthogonal to the basis.
    """
    steps = min(steps, op.dim)
    basis = torch.zeros((steps, op.dim), dtype=op.dtype, device=op.device)
    alphas: list[float] = []
    betas: list[float] = []
    q = start / torch.linalg.vector_norm(start)
    converged = False
    for j in range(steps):
        basis[j] = q
        w = op.matvec(q)
        alpha = float(torch.dot(q, w))
        w = w - alpha * q
        if j > 0:
            w = w - betas[-1] * basis[j - 1]
        for _ in range(2):
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta = float(torch.linalg.vector_norm(w))
        alphas.append(alpha)
        betas.append(beta)
        if k and tol > 0 and j + 1 >= k:
            theta, s = _ritz(np.array(alphas), np.array(betas))
            top = slice(len(theta) - k, None)
            if np.all(beta * np.abs(s[-1, top]) <= tol * np.maximum(np.abs(theta[top]), 1e-300)):
                converged = True
                break
        if j + 1 == steps:
            converged = converged or steps == op.dim
            break
        scale = max(abs(a) for a in alphas) or 1.0
        if beta <= 1e-10 * scale:  # Krylov space is invariant: Ritz values so far are exact, go on elsewhere
            r = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(op.device, op.dtype)
            for _ in range(2):
                r = r - basis[: j + 1].T @ (basis[: j + 1] @ r)
            q = r / torch.linalg.vector_norm(r)
            betas[-1] = 0.0
        else:
            q = w / beta
    n = len(alphas)
    return _Tridiagonal(np.array(alphas), np.array(betas), basis[:n], converged)


@dataclass(frozen=True, eq=False)
class LanczosResult:
    """Top-k eigenpairs of the operator and what they cost."""

    eigenvalues: np.ndarray  # the k largest Ritz values, descending
    eigenvectors: torch.Tensor  # (k, dim) unit Ritz vectors, on the operator's device
    residuals: np.ndarray  # ‖A y − θ y‖ per Ritz pair: |λ_true − θ| is at most this (often far less)
    ritz_values: np.ndarray  # every Ritz value, descending; the last approximates λ_min from above
    alphas: np.ndarray  # the tridiagonal T: its leading j×j block gives the Ritz values after j steps
    betas: np.ndarray
    iterations: int
    converged: bool
    n_hvp: int

    def ritz_values_after(self, steps: int) -> np.ndarray:
        """Ritz values (descending) the run had after ``steps`` products: convergence histories for free."""
        steps = _check_count("steps", steps)
        if steps > self.iterations:
            raise ValueError(f"the run took only {self.iterations} steps, asked for {steps}")
        return _ritz(self.alphas[:steps], self.betas[:steps])[0][::-1]


def lanczos_top_k(
    op: HVPOperator, k: int = 5, iters: int = 100, tol: float = 1e-4, seed: int = 0
) -> LanczosResult:
    """The k largest (algebraic) eigenvalues by Lanczos with full re-orthogonalisation.

    Why Lanczos rather than (deflated) power iteration: after m products Lanczos has the best polynomial
    of degree m in the Krylov space, so it converges at a rate set by √(gap), power iteration by
    λ₂/λ₁; deflated power iteration also restarts for each eigenvalue and compounds the errors of the
    earlier ones. Full re-orthogonalisation costs O(m·dim) per step, small next to one HVP (two
    backward passes) for m up to a few hundred, and removes the ghost copies of converged eigenvalues.
    Memory: iters × dim numbers. Stops when every top-k residual is ≤ tol·|θ| or after ``iters`` products.
    The residual bounds the distance to SOME eigenvalue: in a tight cluster an eigenvalue not yet found
    can shift the ranks, so ask for a tol ten times below the accuracy you need there.
    """
    k = _check_k(k)
    iters = _check_count("iters", iters)
    if not tol >= 0:
        raise ValueError(f"tol must be ≥ 0, got {tol}")
    k = min(k, op.dim)
    gen = _generator(seed)
    start = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(op.device, op.dtype)
    before = op.n_hvp
    tri = _lanczos(op, max(iters, k), start, gen, k=k, tol=tol)
    theta, s = _ritz(tri.alphas, tri.betas)
    top = np.arange(len(theta) - 1, len(theta) - 1 - k, -1)
    vectors = torch.as_tensor(s[:, top].T.copy(), dtype=op.dtype, device=op.device) @ tri.basis
    return LanczosResult(
        eigenvalues=theta[top],
        eigenvectors=vectors,
        residuals=tri.betas[-1] * np.abs(s[-1, top]),
        ritz_values=theta[::-1],
        alphas=tri.alphas,
        betas=tri.betas,
        iterations=len(tri.alphas),
        converged=tri.converged,
        n_hvp=op.n_hvp - before,
    )


@dataclass(frozen=True)
class TraceEstimate:
    """A stochastic trace with its standard error (the spread of the probe samples / √probes)."""

    estimate: float
    std_error: float
    n_probes: int
    n_hvp: int
    method: str


def hutchinson_trace(op: HVPOperator, probes: int = 30, seed: int = 0) -> TraceEstimate:
    """tr(A) ≈ mean zᵀAz over Rademacher z: unbiased, variance 2(‖A‖_F² − Σ A_ii²)/probes."""
    probes = _check_count("probes", probes, 2)
    gen = _generator(seed)
    before = op.n_hvp
    samples = np.empty(probes)
    for i in range(probes):
        z = _rademacher((op.dim,), gen, op)
        samples[i] = float(torch.dot(z, op.matvec(z)))
    se = float(samples.std(ddof=1) / math.sqrt(probes))
    return TraceEstimate(float(samples.mean()), se, probes, op.n_hvp - before, "hutchinson")


def hutchpp_trace(op: HVPOperator, n_hvp: int = 90, seed: int = 0) -> TraceEstimate:
    """Hutch++ (Meyer, Musco, Musco & Woodruff 2021): trace of a sketched top subspace exactly, the rest by Hutchinson.

    A third of the budget sketches range(A·S), a third computes tr(QᵀAQ), a third runs Hutchinson on
    (I − QQᵀ)A(I − QQᵀ). A Hessian's few large eigenvalues dominate Hutchinson's variance, and they are
    exactly what the sketch removes. The standard error is that of the residual Hutchinson part.
    """
    n_hvp = _check_count("n_hvp", n_hvp, 4)
    gen = _generator(seed)
    sketch = min(n_hvp // 3, op.dim)
    probes = n_hvp - 2 * sketch
    before = op.n_hvp
    s = _rademacher((op.dim, sketch), gen, op)
    y = torch.stack([op.matvec(c) for c in s.T], dim=1)
    q, _ = torch.linalg.qr(y)
    top = sum(float(torch.dot(c, op.matvec(c))) for c in q.T)
    samples = np.empty(probes)
    for i in range(probes):
        g = _rademacher((op.dim,), gen, op)
        g = g - q @ (q.T @ g)
        samples[i] = float(torch.dot(g, op.matvec(g)))
    se = float(samples.std(ddof=1) / math.sqrt(probes))
    return TraceEstimate(top + float(samples.mean()), se, probes, op.n_hvp - before, "hutch++")


@dataclass(frozen=True, eq=False)
class SpectralDensity:
    """Stochastic Lanczos quadrature: per probe, Ritz nodes and Gauss weights of the spectral measure."""

    nodes: np.ndarray  # (n_probes, steps) Ritz values
    weights: np.ndarray  # (n_probes, steps), each row sums to 1
    grid: np.ndarray
    density: np.ndarray  # Gaussian-smoothed density on grid; integrates to ≈ 1 when the grid covers the nodes
    sigma: float
    n_hvp: int

    def mass_above(self, threshold: float) -> float:
        """Estimated fraction of eigenvalues > threshold."""
        return float((self.weights * (self.nodes > threshold)).sum(axis=1).mean())

    def mass_below(self, threshold: float) -> float:
        """Estimated fraction of eigenvalues < threshold."""
        return float((self.weights * (self.nodes < threshold)).sum(axis=1).mean())

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes.tolist(),
            "weights": self.weights.tolist(),
            "grid": self.grid.tolist(),
            "density": self.density.tolist(),
            "sigma": self.sigma,
            "n_hvp": self.n_hvp,
        }


def slq_density(
    op: HVPOperator,
    n_probes: int = 10,
    iters: int = 60,
    seed: int = 0,
    grid: int | np.ndarray = 512,
    sigma: float | None = None,
) -> SpectralDensity:
    """Spectral density by stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017; Ghorbani et al. 2019).

    For a unit Rademacher probe v, vᵀf(A)v = Σ_j τ_j f(θ_j) with Ritz values θ_j and τ_j the squared first
    components of T's eigenvectors; averaged over probes this is (1/dim)·Σ_i f(λ_i). ``sigma`` is the
    width of the Gaussian that smooths the nodes (default 1% of the spectral span); ``grid`` is a point
    count spanning the nodes ± 4σ, or explicit points. Costs n_probes × iters products.
    """
    n_probes = _check_count("n_probes", n_probes)
    iters = _check_count("iters", iters)
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    gen = _generator(seed)
    steps = min(iters, op.dim)
    before = op.n_hvp
    nodes = np.zeros((n_probes, steps))
    weights = np.zeros((n_probes, steps))
    for p in range(n_probes):
        tri = _lanczos(op, steps, _rademacher((op.dim,), gen, op), gen)
        theta, s = _ritz(tri.alphas, tri.betas)
        nodes[p, : len(theta)] = theta
        weights[p, : len(theta)] = s[0] ** 2  # unused slots keep weight 0
    span = float(nodes.max() - nodes.min())
    if sigma is None:
        sigma = 0.01 * span if span > 0 else max(abs(float(nodes.max())), 1.0) * 1e-3
    if isinstance(grid, int | np.integer):
        points = _check_count("grid", int(grid), 2)
        grid = np.linspace(nodes.min() - 4 * sigma, nodes.max() + 4 * sigma, points)
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 2:
        raise ValueError("grid must be a point count ≥ 2 or a 1-D array of at least 2 points")
    z = (grid[None, None, :] - nodes[:, :, None]) / sigma
    kernel = np.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
    density = (weights[:, :, None] * kernel).sum(axis=1).mean(axis=0)
    return SpectralDensity(nodes, weights, grid, density, float(sigma), op.n_hvp - before)


def iterative_curvature_summary(
    op: HVPOperator, k: int = 5, iters: int = 100, tol: float = 1e-3, trace_hvp: int = 60, seed: int = 0
) -> SpectrumSummary:
    """What the app records per epoch for a non-linear reward: Lanczos top-k (and λ_min bound) plus Hutch++ trace."""
    lanczos = lanczos_top_k(op, k=k, iters=iters, tol=tol, seed=seed)
    trace = hutchpp_trace(op, n_hvp=trace_hvp, seed=seed + 1)
    ritz = lanczos.ritz_values
    return SpectrumSummary(
        eigenvalues=tuple(float(x) for x in ritz),
        top_k=tuple(float(x) for x in lanczos.eigenvalues),
        trace=trace.estimate,
        min_eigenvalue=float(ritz[-1]),
        condition_number=_condition_number(float(ritz[0]), float(ritz[-1])),
        n_hvp=lanczos.n_hvp + trace.n_hvp,
        method="lanczos+hutch++",
        trace_std_error=trace.std_error,
    )
