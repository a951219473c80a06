"""The label-error score, its confident-learning threshold, the ranking metrics and applying corrections."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import expit

from mars_core.analysis.label_errors import (
    apply_label_decisions,
    confident_threshold,
    flagged,
    label_error_scores,
    precision_at_k,
    rank_suspects,
    roc_auc,
    swapped,
)
from mars_core.data.pairs import PreferencePair

finite = st.floats(-30, 30, allow_nan=False)


def test_score_is_the_probability_of_the_other_order():
    scores = label_error_scores([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(scores, [expit(2.0), 0.5, expit(-3.0)])


@given(st.lists(finite, min_size=2, max_size=40))
def test_score_falls_as_the_out_of_fold_margin_rises(margins):
    m = np.array(margins)
    s = label_error_scores(m)
    order = np.argsort(m, kind="stable")
    assert np.all(np.diff(s[order]) <= 1e-12)
    assert np.all((s > 0) & (s < 1) | np.isclose(s, 0) | np.isclose(s, 1))


def test_threshold_is_the_mean_confidence_in_the_given_labels():
    margins = np.array([3.0, 2.0, 1.0, -2.5])
    t = confident_threshold(margins)
    assert t == pytest.approx(np.mean(expit(margins)))
    assert flagged(margins).tolist() == [False, False, False, True]
    # a pair the model is unsure about (Δ = 0) is flagged only when the labels are on average less sure than it
    assert not flagged([0.0, 3.0, 3.0])[0]
    assert flagged([0.0, 0.1, -0.1])[2]


def test_nan_margins_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="cross-fitted"):
        label_error_scores([0.1, float("nan")])


def test_ranking_most_suspicious_first_with_ties_by_id():
    order = rank_suspects([0.2, 0.9, 0.9, 0.1], ["d", "c", "b", "a"])
    assert order.tolist() == [2, 1, 0, 3]
    with pytest.raises(ValueError, match="3 scores for 2"):
        rank_suspects([0.1, 0.2, 0.3], ["a", "b"])


def test_precision_at_k_and_auc_against_known_errors():
    scores = np.array([0.9, 0.8, 0.3, 0.2, 0.1])
    errors = np.array([True, False, True, False, False])
    assert precision_at_k(scores, errors, 1) == 1.0
    assert precision_at_k(scores, errors, 2) == 0.5
    assert precision_at_k(scores, errors, 3) == pytest.approx(2 / 3)
    # errors rank above clean pairs in 5 of the 6 (error, clean) comparisons
    assert roc_auc(scores, errors) == pytest.approx(5 / 6)
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5  # ties count half
    assert np.isnan(roc_auc([0.1, 0.2], [False, False]))
    with pytest.raises(ValueError, match="k must be"):
        precision_at_k(scores, errors, 0)


def _pair(pid: str, parent: str | None = None, gold: float | None = 1.0) -> PreferencePair:
    return PreferencePair(pid, "p", f"good {pid}", f"bad {pid}", parent_id=parent, gold_margin=gold,
                          chosen_paraphrase_id="c1" if parent else None)


def test_swap_reverses_texts_paraphrase_ids_and_the_gold_sign():
    p = swapped(_pair("s", parent="a", gold=1.5))
    assert (p.chosen, p.rejected, p.gold_margin) == ("bad s", "good s", -1.5)
    assert (p.chosen_paraphrase_id, p.rejected_paraphrase_id) == (None, "c1")
    assert swapped(swapped(p)) == p


def test_decisions_swap_drop_keep_and_children_follow_their_parent():
    pairs = [_pair("a"), _pair("b"), _pair("c"), _pair("d"), _pair("a.1", parent="a"), _pair("b.1", parent="b"),
             _pair("a.2", parent="a")]
    out = apply_label_decisions(pairs, {"a": "swap", "b": "drop", "c": "keep", "d": "unsure"},
                                reversed_children={"a.2"})
    by_id = {p.id: p for p in out}
    assert set(by_id) == {"a", "c", "d", "a.1", "a.2"}
    assert by_id["a"].chosen == "bad a" and by_id["a.1"].chosen == "bad a.1"
    assert by_id["a.2"] == pairs[-1]  # built while its parent trained swapped: already corrected
    assert by_id["c"] == pairs[2] and by_id["d"] == pairs[3]
    # withdrawing the swap reverses such a child back to its parent's stored order
    back = {p.id: p for p in apply_label_decisions(pairs, {"a": "keep"}, reversed_children={"a.2"})}
    assert back["a.2"].chosen == "bad a.2" and back["a"] == pairs[0]
    with pytest.raises(ValueError, match="unknown label decision"):
        apply_label_decisions(pairs, {"a": "flip"})
