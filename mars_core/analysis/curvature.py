"""Curvature of the Bradley-Terry loss: exact spectra for a linear reward, iterative ones for any model.

Why this module exists: MARS spends its paraphrase budget on pairs with small |Δ|, and those are the
pairs with the largest σ'(Δ), i.e. the largest share of trace(H). For a linear reward on frozen
embeddings everything is exact and cheap (numpy). For a reward model of any shape we only have
Hessian-vector products (double back-propagation), so Lanczos, Hutchinson/Hutch++ and stochastic
Lanczos quadrature are all written on ONE primitive, :class:`HVPOperator`, and each reports its cost
in HVPs. Tests check every estimator against the dense Hessian of a tiny model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------------------
# Linear reward r = θᵀφ(x, y): exact, numpy only
# ---------------------------------------------------------------------------------------------------------


def sigmoid_prime(t: np.ndarray | float) -> np.ndarray | float:
    """σ'(t) = σ(t)(1 − σ(t)), written as e^{−|t|}/(1 + e^{−|t|})² so huge |t| neither overflows nor cancels."""
    arr = np.asarray(t, dtype=np.float64)
    e = np.exp(-np.abs(arr))
    out = np.minimum(e / (1.0 + e) ** 2, 0.25)  # rounding near t = 0 can exceed the bound by an ulp
    return out if out.ndim else float(out)


def _check_pairs(delta_phi: np.ndarray, margins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dphi = np.asarray(delta_phi, dtype=np.float64)
    m = np.asarray(margins, dtype=np.float64)
    if dphi.ndim != 2:
        raise ValueError(f"delta_phi must be a 2-D array (pairs × features), got shape {dphi.shape}")
    if m.ndim != 1:
        raise ValueError(f"margins must be a 1-D array (one per pair), got shape {m.shape}")
    if dphi.shape[0] != m.shape[0]:
        raise ValueError(f"delta_phi has {dphi.shape[0]} pairs but margins has {m.shape[0]}")
    if dphi.shape[0] == 0:
        raise ValueError("need at least one pair to compute curvature")
    if not (np.isfinite(dphi).all() and np.isfinite(m).all()):
        raise ValueError("delta_phi and margins must be finite (found NaN or inf)")
    return dphi, m


def _check_l2(l2: float) -> float:
    if not math.isfinite(l2) or l2 < 0:
        raise ValueError(f"l2 must be a finite number ≥ 0, got {l2}")
    return float(l2)


def curvature_contributions(delta_phi: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """σ'(Δ_i)·‖Δφ_i‖² per pair: N times pair i's share of trace(H) (without the λ·d of the L2 term)."""
    dphi, m = _check_pairs(delta_phi, margins)
    return sigmoid_prime(m) * np.einsum("ij,ij->i", dphi, dphi)


def _weighted_rows(dphi: np.ndarray, m: np.ndarray) -> np.ndarray:
    # B with BᵀB = mean σ'(Δ_i) Δφ_i Δφ_iᵀ; numpy turns B.T @ B into one symmetric rank-k update.
    return dphi * np.sqrt(sigmoid_prime(m) / len(m))[:, None]


def linear_bt_hessian(delta_phi: np.ndarray, margins: np.ndarray, l2: float = 0.0) -> np.ndarray:
    """H = mean σ'(Δ_i) Δφ_i Δφ_iᵀ + λI, the exact Hessian of the L2-regularised BT loss of a linear reward."""
    dphi, m = _check_pairs(delta_phi, margins)
    lam = _check_l2(l2)
    b = _weighted_rows(dphi, m)
    hessian = b.T @ b
    hessian[np.diag_indices_from(hessian)] += lam
    return hessian


@dataclass(frozen=True)
class SpectrumSummary:
    """What the app stores about a Hessian spectrum; tuples of floats so it is immutable and JSON-safe."""

    eigenvalues: tuple[float, ...]  # descending; the full spectrum when exact, the Ritz values otherwise
    top_k: tuple[float, ...]  # the k largest eigenvalues
    trace: float
    min_eigenvalue: float  # exact, or the smallest Ritz value (an upper bound on λ_min) when iterative
    condition_number: float  # λ_max / λ_min; inf when λ_min ≤ 0 (singular or indefinite)
    n_hvp: int  # Hessian-vector products spent; 0 for an exact decomposition
    method: str
    trace_std_error: float = 0.0  # standard error of a stochastic trace; 0 when exact

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; a non-finite condition number becomes None (JSON has no inf)."""
        d = asdict(self)
        d["eigenvalues"] = list(self.eigenvalues)
        d["top_k"] = list(self.top_k)
        d["condition_number"] = self.condition_number if math.isfinite(self.condition_number) else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpectrumSummary:
        required = ("eigenvalues", "top_k", "trace", "min_eigenvalue", "condition_number", "n_hvp", "method")
        missing = [key for key in required if key not in d]
        if missing:
            raise ValueError(f"spectrum summary is missing {', '.join(missing)}")
        cond = d["condition_number"]
        return cls(
            eigenvalues=tuple(float(x) for x in d["eigenvalues"]),
            top_k=tuple(float(x) for x in d["top_k"]),
            trace=float(d["trace"]),
            min_eigenvalue=float(d["min_eigenvalue"]),
            condition_number=math.inf if cond is None else float(cond),
            n_hvp=int(d["n_hvp"]),
            method=str(d["method"]),
            trace_std_error=float(d.get("trace_std_error", 0.0)),
        )


def _condition_number(lam_max: float, lam_min: float) -> float:
    return lam_max / lam_min if lam_min > 0 else math.inf


def _summary(eigs_desc: np.ndarray, k: int, trace: float, n_hvp: int, method: str, se: float = 0.0):
    eigs = [float(x) for x in eigs_desc]
    return SpectrumSummary(
        eigenvalues=tuple(eigs),
        top_k=tuple(eigs[:k]),
        trace=float(trace),
        min_eigenvalue=eigs[-1],
        condition_number=_condition_number(eigs[0], eigs[-1]),
        n_hvp=int(n_hvp),
        method=method,
        trace_std_error=float(se),
    )


def _check_k(k: int) -> int:
    if int(k) != k or k < 1:
        raise ValueError(f"k (how many top eigenvalues) must be a positive integer, got {k}")
    return int(k)


def exact_spectrum(hessian: Any, k: int = 10) -> SpectrumSummary:
    """Full eigen-decomposition of a symmetric matrix (a Hessian small enough to hold densely)."""
    k = _check_k(k)
    h = hessian.detach().cpu().numpy() if hasattr(hessian, "detach") else np.asarray(hessian)  # torch or numpy
    h = h.astype(np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1] or h.shape[0] == 0:
        raise ValueError(f"a Hessian must be a non-empty square matrix, got shape {h.shape}")
    scale = max(float(np.abs(h).max()), np.finfo(float).tiny)
    asym = float(np.abs(h - h.T).max()) / scale
    if asym > 1e-5:  # float32 double back-propagation leaves ~1e-7; more means it is not a Hessian
        raise ValueError(f"matrix is not symmetric (relative asymmetry {asym:.1e}); a Hessian must be")
    eigs = np.linalg.eigvalsh(0.5 * (h + h.T))[::-1]
    return _summary(eigs, k, float(np.trace(h)), 0, "exact")


def linear_curvature_summary(
    delta_phi: np.ndarray, margins: np.ndarray, l2: float = 0.0, k: int = 10
) -> SpectrumSummary:
    """Exact spectrum of the linear BT Hessian, via the N×N Gram matrix when there are fewer pairs than features.

    BᵀB (d×d) and BBᵀ (N×N) share their non-zero eigenvalues, so with N < d we decompose the smaller one
    and pad with d − N zeros; λ shifts every eigenvalue.
    """
    k = _check_k(k)
    dphi, m = _check_pairs(delta_phi, margins)
    lam = _check_l2(l2)
    n, d = dphi.shape
    b = _weighted_rows(dphi, m)
    if n < d:
        nonzero = np.linalg.eigvalsh(b @ b.T)
        eigs = np.concatenate([nonzero, np.zeros(d - n)])
        method = "exact-gram"
    else:
        eigs = np.linalg.eigvalsh(b.T @ b)
        method = "exact"
    eigs = np.sort(eigs)[::-1] + lam
    trace = float(np.einsum("ij,ij->", b, b)) + lam * d
    return _summary(eigs, k, trace, 0, method)
