"""Cross-pair construction: counts, provenance, ids, and what must never be produced."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mars_core.augment.allocation import split_sides
from mars_core.augment.cross_pairs import count_cross_pairs, cross_pairs
from mars_core.data.pairs import PreferencePair

PARENT = PreferencePair(
    id="hh-17",
    prompt="How do I keep basil alive indoors?",
    chosen="Give it six hours of sun and water when the top soil is dry.",
    rejected="Basil cannot grow indoors.",
    source="hh-rlhf",
    gold_margin=1.25,
)


def _paraphrases(prefix: str, n: int, first_id: int = 100) -> list[tuple[int | None, str]]:
    return [(first_id + k, f"{prefix} paraphrase {k}") for k in range(n)]


@pytest.mark.parametrize(
    ("n_plus", "n_minus"), [(0, 0), (1, 0), (0, 1), (1, 1), (2, 1), (3, 0), (0, 3), (3, 2)]
)
def test_count_is_all_combinations_but_the_original(n_plus, n_minus):
    pairs = cross_pairs(PARENT, _paraphrases("good", n_plus), _paraphrases("bad", n_minus, 200), epoch=1)
    assert len(pairs) == (n_plus + 1) * (n_minus + 1) - 1 == count_cross_pairs(n_plus, n_minus)


@given(st.integers(0, 6), st.integers(0, 6), st.integers(1, 50))
def test_count_formula_holds_for_distinct_texts(n_plus, n_minus, epoch):
    pairs = cross_pairs(PARENT, _paraphrases("good", n_plus), _paraphrases("bad", n_minus, 200), epoch)
    assert len(pairs) == count_cross_pairs(n_plus, n_minus)
    assert len({p.id for p in pairs}) == len(pairs)
    assert len({(p.chosen, p.rejected) for p in pairs}) == len(pairs)
    assert (PARENT.chosen, PARENT.rejected) not in {(p.chosen, p.rejected) for p in pairs}


@given(st.integers(0, 40))
def test_one_allocation_count_yields_the_promised_pairs(count):
    n_plus, n_minus = split_sides(count)
    pairs = cross_pairs(PARENT, _paraphrases("good", n_plus), _paraphrases("bad", n_minus, 200), 2)
    assert len(pairs) == (n_plus + 1) * (n_minus + 1) - 1
    assert (len(pairs) > 0) == (count > 0)


def test_provenance_fields():
    chosen = [(11, "Six hours of sunlight; water once the surface dries."), (None, "Sun and moderate water.")]
    rejected = [(21, "Indoor basil is impossible.")]
    pairs = cross_pairs(PARENT, chosen, rejected, epoch=3)
    by_id = {p.id: p for p in pairs}
    assert set(by_id) == {f"hh-17~e3~c{i}r{j}" for i in range(3) for j in range(2)} - {"hh-17~e3~c0r0"}
    for p in pairs:
        assert p.prompt == PARENT.prompt
        assert p.source == "synthetic"
        assert p.parent_id == "hh-17"
        assert p.is_synthetic
        assert p.epoch_added == 3
        assert p.gold_margin == 1.25
    c1r0 = by_id["hh-17~e3~c1r0"]
    assert (c1r0.chosen, c1r0.rejected) == (chosen[0][1], PARENT.rejected)
    assert (c1r0.chosen_paraphrase_id, c1r0.rejected_paraphrase_id) == (11, None)
    c0r1 = by_id["hh-17~e3~c0r1"]
    assert (c0r1.chosen, c0r1.rejected) == (PARENT.chosen, rejected[0][1])
    assert (c0r1.chosen_paraphrase_id, c0r1.rejected_paraphrase_id) == (None, 21)
    c2r1 = by_id["hh-17~e3~c2r1"]
    assert (c2r1.chosen_paraphrase_id, c2r1.rejected_paraphrase_id) == (None, 21)  # unstored paraphrase


def test_the_same_parent_at_two_epochs_gets_distinct_ids():
    first = cross_pairs(PARENT, _paraphrases("good", 2), _paraphrases("bad", 1, 200), epoch=1)
    second = cross_pairs(PARENT, _paraphrases("good again", 2, 300), _paraphrases("bad", 1, 400), epoch=2)
    ids = [p.id for p in first + second]
    assert len(set(ids)) == len(ids)


def test_synthetic_parent_points_provenance_at_the_original_and_keeps_ids_unique():
    children = cross_pairs(PARENT, _paraphrases("good", 2), _paraphrases("bad", 1, 200), epoch=1)
    child = next(p for p in children if p.id.endswith("c1r1"))
    grandchildren = cross_pairs(child, _paraphrases("better", 1, 500), [], epoch=2)
    root_again = cross_pairs(PARENT, _paraphrases("good 2", 1, 600), [], epoch=2)
    assert all(g.parent_id == "hh-17" for g in grandchildren)
    # Index 0 is the synthetic parent's own text, itself a stored paraphrase: its id carries over,
    # so rejecting paraphrase 200 in review can find this grandchild too.
    (g,) = grandchildren
    assert g.id == "hh-17~e1~c1r1~e2~c1r0"
    assert (g.chosen, g.rejected) == ("better paraphrase 0", child.rejected)
    assert (g.chosen_paraphrase_id, g.rejected_paraphrase_id) == (500, 200)
    ids = [p.id for p in children + grandchildren + root_again]
    assert len(set(ids)) == len(ids)


def test_identical_chosen_and_rejected_text_is_skipped():
    # A paraphrase of y+ that happens to read exactly like y− carries no preference.
    chosen = [(1, PARENT.rejected), (2, "Plenty of sun, careful watering.")]
    pairs = cross_pairs(PARENT, chosen, [], epoch=1)
    assert [(p.chosen, p.rejected) for p in pairs] == [("Plenty of sun, careful watering.", PARENT.rejected)]
    assert all(p.chosen.strip() != p.rejected.strip() for p in pairs)


def test_an_echoed_paraphrase_does_not_duplicate_the_original_or_each_other():
    # A paraphraser that returns its input (modulo whitespace) must not re-add the original pair.
    chosen = [(1, PARENT.chosen + "  "), (2, "Sun and water."), (3, "Sun and water.")]
    pairs = cross_pairs(PARENT, chosen, [], epoch=1)
    assert [(p.chosen, p.chosen_paraphrase_id) for p in pairs] == [("Sun and water.", 2)]


def test_no_paraphrases_means_no_pairs():
    assert cross_pairs(PARENT, [], [], epoch=1) == []


@pytest.mark.parametrize("epoch", [0, -1, 1.0, True])
def test_epoch_must_be_a_refinement_epoch(epoch):
    with pytest.raises(ValueError, match="epoch must be a refinement epoch"):
        cross_pairs(PARENT, _paraphrases("good", 1), [], epoch=epoch)


def test_count_rejects_negative_counts():
    with pytest.raises(ValueError, match="≥ 0"):
        count_cross_pairs(-1, 2)
