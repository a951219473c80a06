"""Paired bootstrap confidence intervals for "strategy A − strategy B", over test pairs and seeds.

Why paired and two-level: in a comparison every strategy at one seed trains on the same split and is scored on
the same test pairs, so most of the noise (which pairs are hard, which training subset was drawn) is shared and
cancels in the difference. Resampling seeds (training subsets, selection draws) and, inside each, test pairs with
the *same* indices for A and B keeps that pairing and still counts both sources of noise. With one seed only the
test pairs are resampled, and the interval then says nothing about another training subset. Resampling at both
levels counts the within-seed noise twice (it is already in the spread of the seed means), so the interval errs
wide: measured in tests/analysis/test_bootstrap.py with 3–4 seeds, coverage ≈ 0.98 for a nominal 0.95 and a
true difference of one MDD detected ≈ 0.89 of the time for a nominal 0.8. Conservative, never flattering.

The smallest difference a run could have detected (``mdd``) is (z₁₋α/₂ + z_power)·SE: a true difference of that
size is found (CI excludes 0) with probability ``power``; anything smaller is "not resolvable at this size".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import expit
from scipy.stats import norm

RowStatistic = Callable[[np.ndarray], np.ndarray]  # (rows, pairs) -> (rows,)


@dataclass(frozen=True)
class PairedDifference:
    """statistic(A) − statistic(B), averaged over seeds, with its bootstrap interval."""

    estimate: float  # the observed mean difference (not the bootstrap mean)
    ci_low: float
    ci_high: float
    se: float  # bootstrap standard deviation of the difference
    mdd: float  # minimum detectable difference at the given level and power
    n_seeds: int
    n_pairs: int  # test pairs summed over seeds
    level: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2.0

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0

    def to_dict(self) -> dict[str, float | int]:
        d = asdict(self)
        d["half_width"] = self.half_width
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def minimum_detectable_difference(se: float, level: float = 0.95, power: float = 0.8) -> float:
    """(z₁₋α/₂ + z_power)·SE: the true difference a two-sided test at ``level`` finds with ``power``."""
    return float((norm.ppf(0.5 + level / 2.0) + norm.ppf(power)) * se)


def _check(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if len(a) != len(b) or not a:
        raise ValueError(f"need the same number (≥ 1) of seeds for both sides, got {len(a)} and {len(b)}")
    a_arr = [np.asarray(x, dtype=float).reshape(-1) for x in a]
    b_arr = [np.asarray(x, dtype=float).reshape(-1) for x in b]
    for s, (x, y) in enumerate(zip(a_arr, b_arr)):
        if x.shape != y.shape or x.size == 0:
            raise ValueError(f"seed {s}: paired values must have the same non-zero length, got {x.size} and {y.size}")
    return a_arr, b_arr


def paired_bootstrap(
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    statistic: RowStatistic | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    power: float = 0.8,
    seed: int = 0,
) -> PairedDifference:
    """CI of the mean over seeds of [statistic(a_s) − statistic(b_s)], a_s and b_s being per-test-pair values.

    ``statistic`` maps a (rows, pairs) array to one value per row (default: the row mean, e.g. of 0/1
    correctness = accuracy; ``row_snr`` and ``row_ece`` take margins); it sees the same resampled indices for
    both sides. Each replicate draws the seeds with replacement and, for every drawn seed, a fresh resample of
    its pairs. Percentile interval.
    """
    a_arr, b_arr = _check(a, b)
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100 for a percentile interval, got {n_boot}")
    if not 0.5 < level < 1.0:
        raise ValueError(f"level must be in (0.5, 1), got {level}")
    stat = statistic or row_mean
    observed = float(np.mean([stat(x[None, :])[0] - stat(y[None, :])[0] for x, y in zip(a_arr, b_arr)]))
    rng = np.random.default_rng(seed)
    n_seeds = len(a_arr)
    # per seed: n_boot · n_seeds pair-resampled differences, so every (replicate, slot) gets its own resample
    per_seed = [_resampled_differences(x, y, stat, n_boot * n_seeds, rng) for x, y in zip(a_arr, b_arr)]
    drawn = rng.integers(0, n_seeds, (n_boot, n_seeds)) if n_seeds > 1 else np.zeros((n_boot, 1), dtype=int)
    slot = np.arange(n_boot)[:, None] * n_seeds + np.arange(n_seeds)[None, :]
    table = np.stack(per_seed)  # (n_seeds, n_boot · n_seeds)
    boots = table[drawn, slot].mean(axis=1)
    n_pairs = sum(x.size for x in a_arr)
    boots = boots[np.isfinite(boots)]
    if boots.size < n_boot // 2:  # the statistic is undefined on most resamples (e.g. SNR of constant margins)
        return PairedDifference(observed, math.nan, math.nan, math.nan, math.nan, n_seeds, n_pairs, level)
    alpha = 1.0 - level
    low, high = np.quantile(boots, [alpha / 2.0, 1.0 - alpha / 2.0])
    se = float(np.std(boots, ddof=1))
    return PairedDifference(
        estimate=observed, ci_low=float(low), ci_high=float(high), se=se,
        mdd=minimum_detectable_difference(se, level, power), n_seeds=n_seeds, n_pairs=n_pairs, level=level,
    )


def _resampled_differences(
    x: np.ndarray, y: np.ndarray, stat: RowStatistic, rows: int, rng: np.random.Generator, chunk: int = 512
) -> np.ndarray:
    out = np.empty(rows)
    for start in range(0, rows, chunk):
        idx = rng.integers(0, x.size, (min(chunk, rows - start), x.size))
        out[start:start + idx.shape[0]] = stat(x[idx]) - stat(y[idx])
    return out


def seed_bootstrap(
    a: Sequence[float], b: Sequence[float], n_boot: int = 2000, level: float = 0.95, power: float = 0.8, seed: int = 0
) -> PairedDifference:
    """For per-run numbers with no per-pair breakdown (Hessian trace, top eigenvalue): resample seeds only.

    With fewer than 3 seeds there is no interval worth the name; the bounds are nan.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"need two equal-length 1-D sequences, got {x.shape} and {y.shape}")
    d = x - y
    observed = float(np.mean(d))
    if d.size < 3 or not np.all(np.isfinite(d)):
        return PairedDifference(observed, math.nan, math.nan, math.nan, math.nan, int(d.size), 0, level)
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, d.size, (n_boot, d.size))].mean(axis=1)
    alpha = 1.0 - level
    low, high = np.quantile(boots, [alpha / 2.0, 1.0 - alpha / 2.0])
    se = float(np.std(boots, ddof=1))
    return PairedDifference(observed, float(low), float(high), se, minimum_detectable_difference(se, level, power),
                            int(d.size), 0, level)


def row_mean(x: np.ndarray) -> np.ndarray:
    """Mean of each row (accuracy from 0/1 correctness, win rate from win scores)."""
    return x.mean(axis=1)


def row_snr(margins: np.ndarray) -> np.ndarray:
    """Margin SNR mean(Δ)/std(Δ) of each row (population std; nan where a row has no spread)."""
    std = margins.std(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(std > 0, margins.mean(axis=1) / std, np.nan)


def row_ece(margins: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """ECE of σ(Δ) of each row, in the symmetric form of ``margins.calibration_table`` (10 equal bins on [½, 1])."""
    confidence = expit(np.abs(margins))
    correct = (margins > 0).astype(float)
    bins = np.clip(np.floor((confidence - 0.5) / (0.5 / n_bins)).astype(int), 0, n_bins - 1)
    flat = (np.arange(margins.shape[0])[:, None] * n_bins + bins).ravel()
    size = margins.shape[0] * n_bins
    conf_sum = np.bincount(flat, weights=confidence.ravel(), minlength=size)
    corr_sum = np.bincount(flat, weights=correct.ravel(), minlength=size)
    gap = np.abs(corr_sum - conf_sum).reshape(margins.shape[0], n_bins).sum(axis=1)  # Σ_b n_b·|acc_b − conf_b|
    return gap / margins.shape[1]


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; nan for one value) of the finite values."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan
