"""Budget allocation: shares q, integer counts, strategies, and the config's guard rails."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mars_core.augment.allocation import (
    Allocation,
    AllocationConfig,
    allocate,
    allocation_scores,
    allocation_weights,
    effective_number,
    integer_counts,
    split_sides,
)

margin_lists = st.lists(
    st.floats(min_value=-20, max_value=20, allow_nan=False, allow_infinity=False), min_size=1, max_size=30
)
budgets = st.integers(min_value=0, max_value=300)
taus = st.floats(min_value=0, max_value=50, allow_nan=False)
configs = st.builds(
    AllocationConfig,
    strategy=st.sampled_from(["mars", "uniform", "won"]),
    tau=taus,
    margin_mode=st.sampled_from(["abs", "signed"]),
    tau_scale=st.sampled_from(["raw", "std"]),
    rounding=st.sampled_from(["largest_remainder", "multinomial"]),
)


# --- config -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"strategy": "greedy"}, "strategy must be one of"),
        ({"tau": -1.0}, "tau must be a finite number ≥ 0"),
        ({"tau": math.inf}, "tau must be a finite number ≥ 0"),
        ({"tau": "1"}, "tau must be a number"),
        ({"margin_mode": "absolute"}, "margin_mode must be"),
        ({"tau_scale": "zscore"}, "tau_scale must be"),
        ({"rounding": "round"}, "rounding must be one of"),
        ({"cap_per_pair": 0}, "strategy 'none'"),
        ({"cap_per_pair": 2.5}, "cap_per_pair must be a whole number"),
        ({"cap_per_pair": True}, "cap_per_pair must be a whole number"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        AllocationConfig(**kwargs)


def test_every_config_field_has_help_text():
    from dataclasses import fields

    for f in fields(AllocationConfig):
        assert f.metadata.get("help"), f"{f.name} has no help text"


def test_config_is_frozen():
    cfg = AllocationConfig()
    with pytest.raises(AttributeError):
        cfg.tau = 3.0  # type: ignore[misc]


@pytest.mark.parametrize("budget", [-1, 2.5, True, "10"])
def test_allocate_rejects_a_budget_that_is_not_a_whole_number(budget):
    with pytest.raises(ValueError, match="budget must be a whole number"):
        allocate([0.1, 0.2], budget, AllocationConfig())


def test_allocate_rejects_nan_margins():
    with pytest.raises(ValueError, match="nan"):
        allocate([0.1, float("nan")], 4, AllocationConfig())


# --- budget unit --------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10_000))
def test_split_sides_spends_exactly_the_count_and_favours_one_side_by_at_most_one(c):
    n_plus, n_minus = split_sides(c)
    assert n_plus + n_minus == c
    assert 0 <= n_plus - n_minus <= 1
    assert split_sides(c, odd_to_rejected=True) == (n_minus, n_plus)


def test_split_sides_small_cases():
    assert [split_sides(c) for c in range(5)] == [(0, 0), (1, 0), (1, 1), (2, 1), (2, 2)]
    with pytest.raises(ValueError):
        split_sides(-1)


# --- weights ------------------------------------------------------------------------------------------


@given(margin_lists, configs)
def test_weights_are_a_distribution(margins, cfg):
    q = allocation_weights(margins, cfg)
    assert q.shape == (len(margins),)
    assert np.all(q >= 0)
    assert math.isclose(q.sum(), 1.0, rel_tol=1e-9)


@given(margin_lists, taus, st.sampled_from(["raw", "std"]))
def test_mars_abs_weights_are_non_increasing_in_abs_margin(margins, tau, scale):
    cfg = AllocationConfig(strategy="mars", tau=tau, tau_scale=scale)
    m = allocation_scores(margins, cfg)
    q = allocation_weights(margins, cfg)
    np.testing.assert_array_equal(m, np.abs(margins))
    order = np.argsort(m, kind="stable")
    assert np.all(np.diff(q[order]) <= 0)


@given(margin_lists, taus)
def test_won_weights_are_non_decreasing_in_abs_margin(margins, tau):
    cfg = AllocationConfig(strategy="won", tau=tau)
    m = np.abs(margins)
    q = allocation_weights(margins, cfg)
    order = np.argsort(m, kind="stable")
    assert np.all(np.diff(q[order]) >= 0)


def test_mars_weights_match_the_softmax_formula():
    d = np.array([0.3, -1.2, 2.5, 0.0, -0.7])
    tau = 1.7
    expected = np.exp(-tau * np.abs(d)) / np.exp(-tau * np.abs(d)).sum()
    np.testing.assert_allclose(allocation_weights(d, AllocationConfig(tau=tau)), expected, rtol=1e-12)


def test_weights_stay_finite_for_huge_tau_and_margins():
    d = np.array([1e3, 2e3, -5e2])
    q = allocation_weights(d, AllocationConfig(tau=1e6))
    np.testing.assert_array_equal(q, [0.0, 0.0, 1.0])


@given(margin_lists, st.sampled_from(["mars", "won"]), st.sampled_from(["abs", "signed"]))
def test_tau_near_zero_gives_uniform_weights(margins, strategy, mode):
    q = allocation_weights(margins, AllocationConfig(strategy=strategy, tau=1e-12, margin_mode=mode))
    np.testing.assert_allclose(q, 1.0 / len(margins), rtol=1e-9)


# --- integer counts -----------------------------------------------------------------------------------


@given(margin_lists, budgets, configs, st.integers(0, 2**32 - 1))
def test_counts_sum_to_the_budget_without_a_cap(margins, budget, cfg, seed):
    counts = allocate(margins, budget, cfg, seed=seed).counts
    assert counts.sum() == budget
    assert np.all(counts >= 0)


@given(margin_lists, budgets, configs, st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_cap_is_respected_and_the_budget_is_spent_when_it_fits(margins, budget, cfg, cap, seed):
    cfg = AllocationConfig(**{**cfg.__dict__, "cap_per_pair": cap})
    counts = allocate(margins, budget, cfg, seed=seed).counts
    assert counts.max() <= cap
    # Excess from capped pairs is redistributed, never dropped: the sum is the budget whenever it fits.
    assert counts.sum() == min(budget, len(margins) * cap)


def test_cap_excess_is_redistributed_in_proportion_to_q():
    # expected 6, 2, 2; the cap of 4 frees 2 units, which the two equal-q pairs share equally.
    np.testing.assert_array_equal(integer_counts([0.6, 0.2, 0.2], 10, cap_per_pair=4), [4, 3, 3])


def test_cap_excess_reaches_pairs_whose_share_underflowed_to_zero():
    # τ so large that q is one-hot: the capped favourite overflows into the next-smallest margins.
    alloc = allocate([5.0, 0.0, 3.0, 9.0], 7, AllocationConfig(tau=1e4, cap_per_pair=3))
    assert alloc.q[1] == 1.0
    np.testing.assert_array_equal(alloc.counts, [1, 3, 3, 0])


@given(margin_lists, budgets, taus, st.sampled_from(["raw", "std"]), st.one_of(st.none(), st.integers(1, 8)))
def test_mars_abs_counts_are_non_increasing_in_abs_margin(margins, budget, tau, scale, cap):
    cfg = AllocationConfig(tau=tau, tau_scale=scale, cap_per_pair=cap)
    alloc = allocate(margins, budget, cfg)
    order = np.argsort(alloc.scores, kind="stable")
    assert np.all(np.diff(alloc.counts[order]) <= 0)


@given(margin_lists, budgets)
def test_tau_near_zero_gives_near_uniform_counts(margins, budget):
    counts = allocate(margins, budget, AllocationConfig(tau=1e-12)).counts
    assert counts.max() - counts.min() <= 1


@given(margin_lists, st.integers(1, 300), st.sampled_from(["raw", "std"]))
def test_huge_tau_puts_everything_on_the_minimum_margin_pairs(margins, budget, scale):
    m = np.abs(margins)
    alloc = allocate(margins, budget, AllocationConfig(tau=1e9, tau_scale=scale))
    at_min = m == m.min()
    # The limit is reached once the τ-scaled gap to the runner-up makes exp(−gap) vanish.
    assume(at_min.all() or (m[~at_min] - m.min()).min() * alloc.tau_in_force > 800)
    assert alloc.counts[at_min].sum() == budget
    assert alloc.counts[~at_min].sum() == 0


@given(
    st.floats(min_value=0.01, max_value=10),
    st.lists(st.floats(min_value=-10, max_value=10), max_size=10),
    st.integers(1, 200),
    st.floats(min_value=0.01, max_value=10),
)
def test_signed_mode_favours_the_mis_ranked_pair_of_equal_size(d, others, budget, tau):
    margins = [d, -d, *others]
    cfg = AllocationConfig(tau=tau, margin_mode="signed")
    alloc = allocate(margins, budget, cfg)
    assert alloc.q[1] > alloc.q[0]
    assert alloc.counts[1] >= alloc.counts[0]
    # abs mode cannot tell them apart
    q_abs = allocation_weights(margins, AllocationConfig(tau=tau))
    assert q_abs[0] == q_abs[1]


def test_signed_mode_gives_strictly_more_units_to_the_mis_ranked_pair():
    alloc = allocate([1.0, -1.0], 10, AllocationConfig(tau=1.0, margin_mode="signed"))
    assert alloc.counts[1] > alloc.counts[0]
    assert alloc.counts.sum() == 10


@given(margin_lists, budgets, taus, st.sampled_from(["mars", "won"]), st.integers(-20, 20))
def test_std_mode_is_invariant_to_exact_rescaling(margins, budget, tau, strategy, k):
    # Powers of two rescale exactly in floating point (away from subnormals), so the counts must
    # match bit for bit.
    assume(all(x == 0 or abs(x) > 1e-280 for x in margins))
    cfg = AllocationConfig(strategy=strategy, tau=tau, tau_scale="std")
    a = allocate(margins, budget, cfg)
    b = allocate(np.asarray(margins) * 2.0**k, budget, cfg)
    np.testing.assert_array_equal(a.q, b.q)
    np.testing.assert_array_equal(a.counts, b.counts)


@given(margin_lists, taus, st.floats(min_value=1e-3, max_value=1e3))
def test_std_mode_weights_are_invariant_to_any_positive_rescaling(margins, tau, c):
    cfg = AllocationConfig(tau=tau, tau_scale="std")
    np.testing.assert_allclose(
        allocation_weights(margins, cfg), allocation_weights(np.asarray(margins) * c, cfg), atol=1e-9
    )


def test_raw_mode_is_not_scale_invariant_and_reports_the_tau_in_force():
    d = np.array([0.1, 0.5, 1.0, -2.0])
    raw = AllocationConfig(tau=2.0)
    assert not np.allclose(allocation_weights(d, raw), allocation_weights(d * 10, raw))
    assert allocate(d, 8, raw).tau_in_force == 2.0
    std = AllocationConfig(tau=2.0, tau_scale="std")
    assert allocate(d, 8, std).tau_in_force == pytest.approx(2.0 / np.std(d))
    assert allocate(d * 10, 8, std).tau_in_force == pytest.approx(2.0 / np.std(d * 10))


def test_std_mode_falls_back_to_raw_when_all_margins_are_equal():
    alloc = allocate([0.7, 0.7, 0.7], 6, AllocationConfig(tau=3.0, tau_scale="std"))
    assert alloc.tau_in_force == 3.0
    np.testing.assert_array_equal(alloc.counts, [2, 2, 2])


@given(margin_lists, budgets, st.integers(0, 2**32 - 1), st.one_of(st.none(), st.integers(1, 8)))
def test_multinomial_rounding_is_reproducible_by_seed(margins, budget, seed, cap):
    cfg = AllocationConfig(tau=1.0, rounding="multinomial", cap_per_pair=cap)
    a = allocate(margins, budget, cfg, seed=seed).counts
    b = allocate(margins, budget, cfg, seed=seed).counts
    np.testing.assert_array_equal(a, b)


def test_multinomial_rounding_differs_across_seeds_and_averages_to_budget_times_q():
    d = np.array([0.0, 0.2, 0.5, 1.0, 2.0, -0.3])
    cfg = AllocationConfig(tau=1.5, rounding="multinomial")
    budget, n_seeds = 40, 3000
    draws = np.stack([allocate(d, budget, cfg, seed=s).counts for s in range(n_seeds)])
    assert len({tuple(row) for row in draws[:20]}) > 1
    q = allocation_weights(d, cfg)
    se = np.sqrt(budget * q * (1 - q) / n_seeds)
    assert np.all(np.abs(draws.mean(axis=0) - budget * q) < 5 * se)


def test_largest_remainder_is_deterministic_and_breaks_ties_by_index():
    # Four equal shares, budget 6: the two leftover units go to the lowest indices.
    np.testing.assert_array_equal(integer_counts(np.full(4, 0.25), 6), [2, 2, 1, 1])
    np.testing.assert_array_equal(integer_counts(np.full(4, 0.25), 6, seed=99), [2, 2, 1, 1])


@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=20), budgets)
def test_largest_remainder_stays_within_one_of_the_expected_count(raw, budget):
    assume(sum(raw) > 1e-6)
    q = np.asarray(raw) / sum(raw)
    counts = integer_counts(q, budget)
    assert counts.sum() == budget
    assert np.all(np.abs(counts - budget * q) < 1 + 1e-9)


def test_integer_counts_rejects_shares_that_are_not_a_distribution():
    with pytest.raises(ValueError, match="summing to 1"):
        integer_counts([0.5, 0.2], 3)
    with pytest.raises(ValueError, match="summing to 1"):
        integer_counts([1.5, -0.5], 3)
    with pytest.raises(ValueError, match="permutation"):
        integer_counts([0.5, 0.5], 3, priority=[0, 0])


# --- strategies ---------------------------------------------------------------------------------------


@given(margin_lists, budgets, st.sampled_from(["largest_remainder", "multinomial"]))
def test_none_strategy_spends_nothing(margins, budget, rounding):
    alloc = allocate(margins, budget, AllocationConfig(strategy="none", rounding=rounding))
    assert np.all(alloc.counts == 0)
    assert np.all(alloc.q == 0)
    assert alloc.effective_n == 0.0
    assert alloc.total == 0


@given(margin_lists, budgets, taus)
def test_uniform_ignores_margins_and_tau(margins, budget, tau):
    alloc = allocate(margins, budget, AllocationConfig(strategy="uniform", tau=tau))
    np.testing.assert_allclose(alloc.q, 1 / len(margins))
    assert alloc.counts.max() - alloc.counts.min() <= 1
    # leftover units go to the lowest indices
    assert np.all(np.diff(alloc.counts) <= 0)
    assert alloc.tau_in_force == 0.0
    assert alloc.effective_n == pytest.approx(len(margins))


@given(margin_lists, budgets, taus, st.one_of(st.none(), st.integers(1, 8)))
def test_won_counts_are_non_decreasing_in_confidence(margins, budget, tau, cap):
    alloc = allocate(margins, budget, AllocationConfig(strategy="won", tau=tau, cap_per_pair=cap))
    # Among equal |Δ| the lower index wins ties, so list those highest index first.
    order = np.lexsort((-np.arange(len(margins)), np.abs(margins)))
    assert np.all(np.diff(alloc.counts[order]) >= 0)


def test_won_at_tau_zero_gives_the_leftover_to_the_most_confident_pairs():
    d = np.array([0.1, -3.0, 0.5, 2.0, -0.2])
    alloc = allocate(d, 3, AllocationConfig(strategy="won", tau=0.0))
    np.testing.assert_array_equal(alloc.counts, [0, 1, 1, 1, 0])


def test_won_with_huge_tau_puts_everything_on_the_most_confident_pair():
    d = np.array([0.1, -3.0, 0.5, 2.0, -0.2])
    alloc = allocate(d, 12, AllocationConfig(strategy="won", tau=1e6))
    np.testing.assert_array_equal(alloc.counts, [0, 12, 0, 0, 0])


def test_mars_and_won_pick_opposite_ends_of_the_same_margins():
    d = np.linspace(-3, 3, 13)
    mars = allocate(d, 30, AllocationConfig(strategy="mars", tau=2.0))
    won = allocate(d, 30, AllocationConfig(strategy="won", tau=2.0))
    assert mars.counts[np.argmin(np.abs(d))] == mars.counts.max()
    assert won.counts[np.argmax(np.abs(d))] == won.counts.max()
    assert mars.counts[np.argmax(np.abs(d))] < won.counts[np.argmax(np.abs(d))]


# --- effective number and the record ------------------------------------------------------------------


@given(st.integers(1, 500))
def test_effective_number_is_n_for_uniform_and_one_for_one_hot(n):
    assert effective_number(np.full(n, 1.0 / n)) == pytest.approx(n)
    one_hot = np.zeros(n)
    one_hot[n // 2] = 1.0
    assert effective_number(one_hot) == pytest.approx(1.0)


@given(margin_lists, taus)
def test_effective_number_lies_between_one_and_n(margins, tau):
    q = allocation_weights(margins, AllocationConfig(tau=tau))
    assert 1 - 1e-9 <= effective_number(q) <= len(margins) + 1e-9


def test_effective_number_shrinks_as_tau_grows():
    d = np.linspace(-2, 2, 21)
    values = [allocate(d, 50, AllocationConfig(tau=t)).effective_n for t in (0.0, 0.5, 2.0, 8.0)]
    assert values[0] == pytest.approx(21)
    assert all(a > b for a, b in zip(values, values[1:], strict=False))


def test_allocation_record_keeps_what_the_allocation_was_given():
    alloc = allocate([0.4, -0.1, 1.5], 5, AllocationConfig(tau=1.0, cap_per_pair=3), seed=7)
    assert isinstance(alloc, Allocation)
    assert alloc.config.cap_per_pair == 3 and alloc.budget == 5
    assert int(alloc.counts.sum()) == alloc.total == 5 and alloc.counts.max() <= 3


def test_no_pairs_means_nothing_to_allocate():
    alloc = allocate([], 10, AllocationConfig())
    assert alloc.counts.size == 0
    assert alloc.total == 0
