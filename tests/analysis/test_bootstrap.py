"""Paired bootstrap CIs, the minimum detectable difference, row statistics, and Best-of-N scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mars_core.analysis.best_of_n import best_of_n, text_candidates, toy_candidates, win_scores
from mars_core.analysis.bootstrap import (
    mean_and_std,
    minimum_detectable_difference,
    paired_bootstrap,
    row_ece,
    row_snr,
    seed_bootstrap,
)
from mars_core.analysis.margins import expected_calibration_error, margin_snr
from mars_core.data.text_suite import gold_reward
from mars_core.data.toy import toy_gold_reward


def _paired_accuracy_data(rng: np.random.Generator, diff: float, seeds: int = 3, n: int = 300):
    """Per seed: B correct w.p. 0.6 (+ a seed effect shared by A and B); A = B with some pairs switched so that
    E[acc(A) − acc(B)] = diff. The seed effect is the 'training subset' noise that pairing must cancel."""
    a, b = [], []
    for _ in range(seeds):
        p = np.clip(0.6 + rng.normal(0, 0.05), 0.05, 0.95)
        base = (rng.random(n) < p).astype(float)
        x = base.copy()
        up = rng.random(n) < max(diff, 0) / (1 - p)  # wrong -> right
        x[(base == 0) & up] = 1.0
        b.append(base)
        a.append(x)
    return a, b


def test_ci_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    true, hits, trials = 0.03, 0, 150
    for t in range(trials):
        a, b = _paired_accuracy_data(rng, true)
        result = paired_bootstrap(a, b, n_boot=400, seed=t)
        assert result.ci_low <= result.estimate <= result.ci_high
        hits += result.ci_low <= true <= result.ci_high
    # 150 trials: a 95 % interval's coverage has a standard error of ≈ 0.018
    assert 0.86 <= hits / trials <= 0.995


def _independent_accuracy_data(rng: np.random.Generator, diff: float, seeds: int = 4, n: int = 400):
    """A and B correct independently per pair (w.p. p + diff and p), p shared per seed: the variance of the
    difference hardly depends on diff, so the MDD estimated at diff = 0 applies at diff = MDD."""
    a, b = [], []
    for _ in range(seeds):
        p = np.clip(0.6 + rng.normal(0, 0.05), 0.05, 0.9)
        a.append((rng.random(n) < p + diff).astype(float))
        b.append((rng.random(n) < p).astype(float))
    return a, b


def test_a_true_difference_of_the_mdd_is_detected_about_80_percent_of_the_time():
    rng = np.random.default_rng(1)
    mdd = float(np.mean([paired_bootstrap(*_independent_accuracy_data(rng, 0.0), n_boot=500, seed=k).mdd
                         for k in range(5)]))
    detected, trials = 0, 120
    for t in range(trials):
        a, b = _independent_accuracy_data(rng, mdd)
        detected += paired_bootstrap(a, b, n_boot=300, seed=t).ci_low > 0
    # 120 trials: the detection rate's standard error is ≈ 0.04 around the nominal 0.8
    assert 0.62 <= detected / trials <= 0.95
    assert minimum_detectable_difference(1.0) == pytest.approx(1.96 + 0.8416, abs=1e-3)


def test_pairing_removes_shared_seed_noise():
    """A large seed effect shared by both sides widens an unpaired comparison but not the paired one."""
    rng = np.random.default_rng(2)
    a, b = [], []
    for shift in (-2.0, 0.0, 2.0):
        x = rng.normal(shift, 1.0, 500)
        a.append(x + 0.05)
        b.append(x)
    paired = paired_bootstrap(a, b)
    assert paired.estimate == pytest.approx(0.05)
    assert paired.ci_low == pytest.approx(0.05) and paired.ci_high == pytest.approx(0.05)
    identical = paired_bootstrap(b, b)
    assert (identical.estimate, identical.ci_low, identical.ci_high, identical.mdd) == (0.0, 0.0, 0.0, 0.0)
    assert not identical.excludes_zero and paired.excludes_zero


def test_row_statistics_match_the_margin_module():
    rng = np.random.default_rng(3)
    m = rng.normal(0.4, 1.3, (4, 257))
    np.testing.assert_allclose(row_ece(m), [expected_calibration_error(r) for r in m], rtol=1e-12)
    np.testing.assert_allclose(row_snr(m), [margin_snr(r) for r in m], rtol=1e-12)
    assert math.isnan(row_snr(np.ones((1, 5)))[0])


def test_snr_and_ece_bootstrap_contain_their_estimates():
    rng = np.random.default_rng(4)
    a = [rng.normal(0.6, 1.0, 400) for _ in range(3)]
    b = [x + rng.normal(-0.1, 0.3, 400) for x in a]
    for stat in (row_snr, row_ece):
        d = paired_bootstrap(a, b, stat, n_boot=300)
        assert d.ci_low <= d.estimate <= d.ci_high and d.n_seeds == 3 and d.n_pairs == 1200


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="same number"):
        paired_bootstrap([np.ones(3)], [])
    with pytest.raises(ValueError, match="seed 0"):
        paired_bootstrap([np.ones(3)], [np.ones(4)])
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap([np.ones(3)], [np.ones(3)], n_boot=10)


def test_seed_bootstrap_needs_three_seeds():
    short = seed_bootstrap([1.0, 2.0], [0.5, 1.0])
    assert short.estimate == pytest.approx(0.75) and math.isnan(short.ci_low)
    full = seed_bootstrap([1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.5])
    assert full.ci_low <= full.estimate <= full.ci_high and full.estimate == pytest.approx(0.875)
    assert mean_and_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    assert math.isnan(mean_and_std([1.0])[1])


def test_best_of_n_picks_by_model_and_judges_by_gold():
    gold = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]])
    perfect = best_of_n(gold, gold)
    assert perfect.match_rate == 1.0 and perfect.regret == 0.0
    wrong = best_of_n(-gold, gold)
    assert wrong.picked_gold.tolist() == [1.0, 0.0] and wrong.match_rate == 0.0
    assert wrong.regret == pytest.approx((2.0 + 5.0) / 2)
    assert perfect.win_rate_vs(wrong) == 1.0 and wrong.win_rate_vs(perfect) == 0.0
    assert win_scores([1.0, 2.0, 3.0], [1.0, 3.0, 2.0]).tolist() == [0.5, 0.0, 1.0]
    with pytest.raises(ValueError, match="shape"):
        best_of_n(gold[:, :2], gold)


def test_candidate_sets_carry_the_true_gold_reward():
    text = text_candidates(n=6, seed=1)
    assert text.shape()[1] == 6 and text.shape()[0] >= 60
    for prompt, row, gold_row in zip(text.prompts[:5], text.responses[:5], text.gold[:5]):
        assert len(set(row)) == 6
        np.testing.assert_allclose(gold_row, [gold_reward(prompt, r) for r in row])
    assert text_candidates(n=6, seed=1).responses == text.responses != text_candidates(n=6, seed=2).responses
    toy = toy_candidates(n=4, groups=50, seed=0)
    np.testing.assert_allclose(toy.gold[3], toy_gold_reward(toy.responses[3]))
