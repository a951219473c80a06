"""plan_batches: a partition of the rows, length-sorted batches, and the cheapest one under its cost model."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mars_core.augment.length_batches import modelled_cost, padding_groups, plan_batches

rows = st.lists(st.tuples(st.integers(1, 200), st.integers(1, 120)), min_size=1, max_size=40)


@given(rows, st.integers(1, 12), st.floats(0, 200))
def test_plan_is_a_partition_into_sorted_batches_within_the_cap(data, max_batch, step_rows):
    prompts, gens = [p for p, _ in data], [g for _, g in data]
    plan = plan_batches(prompts, gens, max_batch, step_rows)
    assert sorted(i for b in plan for i in b) == list(range(len(data)))
    assert all(1 <= len(b) <= max_batch for b in plan)
    assert all([prompts[i] for i in b] == sorted(prompts[i] for i in b) for b in plan)
    # batches follow each other in length: no batch holds a prompt shorter than the previous batch's longest
    assert all(max(prompts[i] for i in a) <= min(prompts[i] for i in b) for a, b in itertools.pairwise(plan))


def _contiguous_partitions(n: int, max_batch: int):
    for cuts in itertools.product((False, True), repeat=n - 1):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
        if all(b - a <= max_batch for a, b in itertools.pairwise(bounds)):
            yield [list(range(a, b)) for a, b in itertools.pairwise(bounds)]


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(1, 60), st.integers(1, 40)), min_size=1, max_size=9),
       st.integers(1, 5), st.floats(0, 50))
def test_plan_is_the_cheapest_grouping_of_the_sorted_rows(data, max_batch, step_rows):
    """Exhaustive check: no contiguous grouping of the length-sorted rows costs less than the plan."""
    data = sorted(data)
    prompts, gens = [p for p, _ in data], [g for _, g in data]
    plan = plan_batches(prompts, gens, max_batch, step_rows)
    best = min(modelled_cost(p, prompts, gens, step_rows) for p in _contiguous_partitions(len(data), max_batch))
    assert modelled_cost(plan, prompts, gens, step_rows) == pytest.approx(best)


def test_equal_prompts_fill_batches_and_distant_lengths_part():
    assert len(plan_batches([30] * 10, [20] * 10, 4, step_rows=8)) == 3  # as few batches as the cap allows
    # two clusters 150 tokens apart: padding the short ones' batch by decoding 150 prompt tokens per long row
    # costs more than a second batch's steps
    prompts = [10, 11, 12, 160, 161, 162]
    plan = plan_batches(prompts, [20] * 6, 6, step_rows=8)
    assert sorted(map(sorted, plan)) == [[0, 1, 2], [3, 4, 5]]
    # with no per-step cost, nothing beyond equal lengths is ever shared
    assert all(len({prompts[i] for i in b}) == 1 for b in plan_batches(prompts, [20] * 6, 6, step_rows=0))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="generation lengths"):
        plan_batches([1, 2], [1], 4, 1.0)
    with pytest.raises(ValueError, match="max_batch"):
        plan_batches([1], [1], 0, 1.0)


@given(st.lists(st.integers(1, 700), min_size=1, max_size=40), st.floats(0, 1), st.integers(1, 4096))
def test_padding_groups_partition_the_rows_shortest_first_within_both_limits(lengths, waste, max_tokens):
    groups = padding_groups(lengths, waste, max_tokens)
    order = [i for g in groups for i in g]
    assert sorted(order) == list(range(len(lengths)))
    assert [lengths[i] for i in order] == sorted(lengths)
    for g in groups:
        padded = max(lengths[i] for i in g) * len(g)
        assert len(g) == 1 or (padded <= max_tokens and padded <= (1 + waste) * sum(lengths[i] for i in g) + 1e-9)


def test_padding_groups_keep_a_long_row_out_of_a_pass_of_short_ones():
    assert padding_groups([20, 22, 400, 21, 25]) == [[0, 3, 1, 4], [2]]
    assert padding_groups([300] * 10) == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9]]  # 6 x 300 <= 2048 tokens a pass
