"""Margin metrics: accuracy, SNR, gold agreement, calibration, the KS stop statistic."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit

from mars_core.analysis.margins import (
    MarginMetrics,
    calibration_table,
    expected_calibration_error,
    gold_accuracy,
    ks_statistic,
    margin_snr,
    pairwise_accuracy,
    summarize_margins,
)

finite = st.floats(min_value=-30, max_value=30, allow_nan=False, allow_infinity=False)
margin_lists = st.lists(finite, min_size=1, max_size=60)


def _bt_margins(n: int, scale: float, seed: int) -> np.ndarray:
    """Margins oriented to the label, with labels drawn from the Bradley-Terry model itself.

    The model's own score s predicts p(first wins) = σ(s); the label is sampled from that, and
    the margin is s when the first response won, −s when it lost. So σ(Δ) is calibrated by
    construction; multiplying s by `scale` afterwards makes it over- (>1) or under- (<1) confident.
    """
    rng = np.random.default_rng(seed)
    s = rng.normal(0.0, 2.0, n)
    first_wins = rng.random(n) < expit(s)
    return np.where(first_wins, s, -s) * scale


# --- accuracy and SNR ---------------------------------------------------------------------------------


def test_accuracy_counts_ties_as_wrong():
    assert pairwise_accuracy([1.0, -1.0, 0.0, 2.0]) == 0.5
    assert pairwise_accuracy([0.0, 0.0]) == 0.0


def test_empty_margins_give_nan_not_an_error():
    assert math.isnan(pairwise_accuracy([]))
    assert math.isnan(margin_snr([]))
    assert math.isnan(expected_calibration_error([]))
    metrics = summarize_margins([])
    assert metrics.n == 0 and math.isnan(metrics.accuracy) and math.isnan(metrics.mean)


def test_nan_margins_are_rejected_with_a_hint():
    with pytest.raises(ValueError, match="diverge"):
        pairwise_accuracy([0.1, float("nan")])
    with pytest.raises(ValueError, match="diverge"):
        summarize_margins([0.1, float("inf")])


@given(margin_lists)
def test_accuracy_is_the_fraction_of_positive_margins(margins):
    acc = pairwise_accuracy(margins)
    assert acc == sum(1 for m in margins if m > 0) / len(margins)
    # flipping every pair swaps right and wrong, except ties which are wrong both ways
    ties = sum(1 for m in margins if m == 0) / len(margins)
    assert pairwise_accuracy([-m for m in margins]) == pytest.approx(1 - acc - ties)


@given(st.lists(finite, min_size=2, max_size=60), st.floats(min_value=1e-3, max_value=1e3))
def test_snr_is_scale_free_and_matches_mean_over_std(margins, c):
    m = np.asarray(margins)
    snr = margin_snr(m)
    if np.std(m) <= 1e-12:
        return
    assert snr == pytest.approx(m.mean() / m.std(), rel=1e-9)
    assert margin_snr(m * c) == pytest.approx(snr, rel=1e-6, abs=1e-9)
    assert margin_snr(-m) == pytest.approx(-snr, rel=1e-9)


def test_snr_is_nan_without_spread_or_with_one_pair():
    assert math.isnan(margin_snr([2.0, 2.0, 2.0]))
    assert math.isnan(margin_snr([1.5]))
    assert margin_snr([1.0, 3.0]) == pytest.approx(2.0)  # mean 2, population std 1


# --- gold agreement -----------------------------------------------------------------------------------


def test_gold_accuracy_ignores_missing_and_tied_gold():
    margins = [1.0, -0.5, 2.0, 0.3, -1.0, 0.0]
    gold = [0.2, 0.7, None, float("nan"), -3.0, 1.0]
    # judged: (1.0, 0.2) right, (-0.5, 0.7) wrong, (-1.0, -3.0) right, (0.0, 1.0) tie = wrong
    assert gold_accuracy(margins, gold) == 0.5
    assert gold_accuracy([1.0, 2.0], [0.0, 1.0]) == 1.0  # gold tie dropped


def test_gold_accuracy_is_nan_when_nothing_can_be_judged():
    assert math.isnan(gold_accuracy([1.0, 2.0], [None, float("nan")]))
    assert math.isnan(gold_accuracy([], []))


def test_gold_accuracy_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="gold_margins has 1 entries"):
        gold_accuracy([1.0, 2.0], [1.0])


@given(margin_lists)
def test_gold_equal_to_the_margins_agrees_except_on_ties(margins):
    nonzero = [m for m in margins if m != 0]
    expected = 1.0 if nonzero else math.nan
    result = gold_accuracy(margins, margins)
    assert result == expected or (math.isnan(expected) and math.isnan(result))


# --- calibration --------------------------------------------------------------------------------------


def test_bradley_terry_sampled_labels_are_calibrated():
    ece = expected_calibration_error(_bt_margins(40_000, 1.0, seed=0))
    assert ece < 0.02


def test_overconfident_and_underconfident_margins_have_large_ece():
    calibrated = expected_calibration_error(_bt_margins(40_000, 1.0, seed=1))
    over = calibration_table(_bt_margins(40_000, 4.0, seed=1))
    under = calibration_table(_bt_margins(40_000, 0.25, seed=1))
    assert over.ece() > calibrated + 0.05 and under.ece() > calibrated + 0.05
    full = over.count > 500
    # Overconfident: in well-populated bins accuracy falls short of confidence; underconfident: exceeds it.
    assert np.all(over.accuracy[full] < over.mean_confidence[full])
    full = under.count > 500
    assert np.all(under.accuracy[full] > under.mean_confidence[full])


@given(margin_lists, st.integers(1, 20))
def test_calibration_table_is_consistent(margins, n_bins):
    table = calibration_table(margins, n_bins)
    assert table.n == len(margins)
    np.testing.assert_allclose(table.bin_lower[0], 0.5)
    np.testing.assert_allclose(table.bin_upper[-1], 1.0)
    full = table.count > 0
    assert np.all(table.mean_confidence[full] >= table.bin_lower[full] - 1e-12)
    assert np.all(table.mean_confidence[full] <= table.bin_upper[full] + 1e-12)
    assert np.all(np.isnan(table.mean_confidence[~full]))
    assert 0.0 <= table.ece() <= 1.0


@given(margin_lists, st.integers(1, 20))
def test_ece_matches_a_direct_loop(margins, n_bins):
    """An independent, deliberately naive ECE: loop over pairs, find each one's bin by search."""
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    sums: dict[int, list[float]] = {}
    for d in margins:
        p = 1.0 / (1.0 + math.exp(-d))
        conf = max(p, 1 - p)
        b = next(k for k in range(n_bins) if conf < edges[k + 1] or k == n_bins - 1)
        sums.setdefault(b, []).append((conf, 1.0 if d > 0 else 0.0))
    ece = sum(
        len(v) / len(margins) * abs(np.mean([c for _, c in v]) - np.mean([c for c, _ in v]))
        for v in sums.values()
    )
    assert expected_calibration_error(margins, n_bins) == pytest.approx(ece, abs=1e-9)


def test_calibration_table_to_dict_is_plottable():
    import json

    data = json.loads(json.dumps(calibration_table([0.1, 3.0, -2.0], 4).to_dict(), allow_nan=True))
    assert set(data) == {"bin_lower", "bin_upper", "count", "mean_confidence", "accuracy"}
    assert len(data["count"]) == 4 and sum(data["count"]) == 3


def test_calibration_rejects_bad_bin_counts():
    with pytest.raises(ValueError, match="n_bins"):
        calibration_table([0.1], 0)


# --- KS statistic -------------------------------------------------------------------------------------


def test_ks_is_zero_for_identical_samples_and_one_for_disjoint():
    a = np.linspace(-1, 1, 50)
    assert ks_statistic(a, a) == 0.0
    assert ks_statistic(a, a + 5.0) == 1.0
    assert math.isnan(ks_statistic([], a))


@settings(deadline=None)
@given(margin_lists, margin_lists)
def test_ks_matches_scipy_and_is_symmetric(a, b):
    from scipy.stats import ks_2samp

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's p-value for tiny samples
        expected = ks_2samp(a, b, method="asymp").statistic
    assert ks_statistic(a, b) == pytest.approx(expected, abs=1e-12)
    assert ks_statistic(a, b) == ks_statistic(b, a)


def test_ks_shrinks_as_the_margin_distribution_settles():
    rng = np.random.default_rng(3)
    base = rng.normal(1.0, 1.0, 2000)
    drifted = ks_statistic(base, rng.normal(1.5, 1.0, 2000))
    settled = ks_statistic(base, rng.normal(1.0, 1.0, 2000))
    assert settled < 0.06 < drifted


# --- summary ------------------------------------------------------------------------------------------


def test_summary_agrees_with_the_individual_functions():
    margins = _bt_margins(500, 1.0, seed=5)
    gold = np.where(np.arange(500) % 3 == 0, np.nan, margins + 0.5)
    metrics = summarize_margins(margins, gold)
    assert isinstance(metrics, MarginMetrics)
    assert metrics.n == 500
    assert metrics.accuracy == pairwise_accuracy(margins)
    assert metrics.snr == margin_snr(margins)
    assert metrics.mean == pytest.approx(margins.mean())
    assert metrics.std == pytest.approx(margins.std())
    assert metrics.gold_accuracy == gold_accuracy(margins, gold)
    assert metrics.ece == expected_calibration_error(margins)
    assert set(metrics.to_dict()) == {"n", "accuracy", "snr", "mean", "std", "gold_accuracy", "ece"}


def test_summary_without_gold_reports_nan_gold_accuracy():
    assert math.isnan(summarize_margins([0.5, -0.2, 1.0]).gold_accuracy)
