"""Summaries of a margin vector Δ = r(x, y+) − r(x, y−): accuracy, SNR, calibration, drift.

Every margin is oriented so that Δ > 0 means the model agrees with the label. Functions take
array-likes and return plain floats (nan where a statistic is undefined, never an exception),
so a metrics row can always be written and plotted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import expit


def _as_margins(margins: Sequence[float] | np.ndarray, name: str = "margins") -> np.ndarray:
    """A 1-D float array; a nan/inf margin means training diverged, so say so instead of averaging it."""
    arr = np.asarray(margins, dtype=float).reshape(-1)
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"{name} contain {bad} nan/inf value(s): did the reward model diverge?")
    return arr


def pairwise_accuracy(margins: Sequence[float] | np.ndarray) -> float:
    """Fraction of pairs ranked correctly (Δ > 0). A tie (Δ == 0) is not a correct ranking."""
    m = _as_margins(margins)
    return float(np.mean(m > 0)) if m.size else math.nan


def margin_snr(margins: Sequence[float] | np.ndarray) -> float:
    """mean(Δ) / std(Δ) (population std): how far the margins sit from zero relative to their spread.

    nan for fewer than two margins or zero spread: the ratio is undefined there, and an
    infinite SNR would wreck plots and JSON while telling the user nothing.
    """
    m = _as_margins(margins)
    if m.size < 2:
        return math.nan
    std = float(np.std(m))
    return float(np.mean(m)) / std if std > 0 else math.nan


def gold_accuracy(
    margins: Sequence[float] | np.ndarray, gold_margins: Sequence[float | None] | np.ndarray
) -> float:
    """Fraction of pairs whose margin has the sign of the gold margin.

    Pairs without a gold margin (None or nan) and gold ties (gold Δ == 0: no preferred side)
    are ignored; a model tie (Δ == 0) counts as wrong. nan when no pair is left to judge.
    """
    m = _as_margins(margins)
    gold = np.array([math.nan if g is None else float(g) for g in gold_margins], dtype=float)
    if gold.shape != m.shape:
        raise ValueError(f"gold_margins has {gold.size} entries but margins has {m.size}")
    usable = np.isfinite(gold) & (gold != 0)
    if not usable.any():
        return math.nan
    return float(np.mean(np.sign(m[usable]) == np.sign(gold[usable])))


@dataclass(frozen=True)
class CalibrationTable:
    """Reliability diagram data: per confidence bin, how many pairs, mean confidence and accuracy.

    Empty bins have count 0 and nan confidence/accuracy (plot them as gaps, not as zeros).
    """

    bin_lower: np.ndarray
    bin_upper: np.ndarray
    count: np.ndarray
    mean_confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def n(self) -> int:
        return int(self.count.sum())

    def ece(self) -> float:
        """Σ_b (n_b / n) |accuracy_b − confidence_b| over non-empty bins; nan when there are no pairs."""
        if self.n == 0:
            return math.nan
        full = self.count > 0
        gaps = np.abs(self.accuracy[full] - self.mean_confidence[full])
        return float(np.sum(self.count[full] * gaps) / self.n)

    def to_dict(self) -> dict[str, list]:
        return {k: np.asarray(v).tolist() for k, v in asdict(self).items()}


def calibration_table(margins: Sequence[float] | np.ndarray, n_bins: int = 10) -> CalibrationTable:
    """Bin pairs by the confidence of the Bradley-Terry prediction p = σ(Δ).

    The label is always "chosen wins", so the one-sided form would only ever see p against 1.
    The symmetric form scores the prediction the model actually makes: it predicts the side it
    favours with confidence max(p, 1 − p) ∈ [0.5, 1] and is correct iff Δ > 0 (a tie is wrong).
    Bins are equal-width on [0.5, 1]; confidence 1.0 falls in the last bin.
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    n_bins = int(n_bins)
    m = _as_margins(margins)
    p = expit(m)
    confidence = np.maximum(p, 1.0 - p)
    correct = m > 0
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    idx = np.clip(np.floor((confidence - 0.5) / (0.5 / n_bins)).astype(int), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=confidence, minlength=n_bins) / count
        acc = np.bincount(idx, weights=correct.astype(float), minlength=n_bins) / count
    return CalibrationTable(
        bin_lower=edges[:-1], bin_upper=edges[1:], count=count, mean_confidence=mean_conf, accuracy=acc
    )


def expected_calibration_error(margins: Sequence[float] | np.ndarray, n_bins: int = 10) -> float:
    """ECE of σ(Δ) in the symmetric form (see `calibration_table`); nan for no margins."""
    return calibration_table(margins, n_bins).ece()


def ks_statistic(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov distance between two margin distributions (0 = identical).

    The stop rule compares epoch t with t − 1: a small value means the margins have settled.
    nan when either sample is empty.
    """
    x, y = _as_margins(a, "a"), _as_margins(b, "b")
    if x.size == 0 or y.size == 0:
        return math.nan
    # The statistic only: sup |F_a − F_b| over the pooled sample. (scipy's ks_2samp also computes a
    # p-value we do not use, which warns or fails for tiny and tied samples.)
    x, y = np.sort(x), np.sort(y)
    grid = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, grid, side="right") / x.size
    cdf_y = np.searchsorted(y, grid, side="right") / y.size
    return float(np.max(np.abs(cdf_x - cdf_y)))


@dataclass(frozen=True)
class MarginMetrics:
    """One row of per-epoch margin metrics (nan where undefined, see the functions above)."""

    n: int  # number of pairs scored
    accuracy: float  # fraction with Δ > 0
    snr: float  # mean(Δ) / std(Δ)
    mean: float
    std: float  # population std of Δ
    gold_accuracy: float  # sign agreement with the gold margin, nan without gold
    ece: float  # expected calibration error of σ(Δ), symmetric form, 10 bins

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarize_margins(
    margins: Sequence[float] | np.ndarray, gold: Sequence[float | None] | np.ndarray | None = None
) -> MarginMetrics:
    """All margin metrics in one place, so every page and the CLI report the same numbers."""
    m = _as_margins(margins)
    return MarginMetrics(
        n=int(m.size),
        accuracy=pairwise_accuracy(m),
        snr=margin_snr(m),
        mean=float(np.mean(m)) if m.size else math.nan,
        std=float(np.std(m)) if m.size else math.nan,
        gold_accuracy=gold_accuracy(m, gold) if gold is not None else math.nan,
        ece=expected_calibration_error(m),
    )
