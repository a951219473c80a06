"""The loader's report (skipped rows, duplicates), strict mode, prompt cutting, the split by prompt, tables."""

from __future__ import annotations

import csv
import random
from collections import Counter

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mars_core.data.errors import DataError
from mars_core.data.loading import (
    load_pairs,
    pairs_from_frame,
    pairs_to_frame,
    split_report,
    train_test_split,
)
from mars_core.data.pairs import PreferencePair
from tests.data.helpers import FIXTURES, GENERIC_ROW, assert_located, write_jsonl

# --------------------------------------------------------------------------------------------
# Strict vs lenient, the report
# --------------------------------------------------------------------------------------------


def mixed_rows() -> list[dict]:
    return [
        GENERIC_ROW,
        {"prompt": "p", "chosen": "", "rejected": "r"},
        {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
        {"prompt": "p", "chosen": "x", "rejected": "x"},
        {"prompt": 7, "chosen": "c", "rejected": "r"},
        {"prompt": "Largest ocean?", "chosen": "The Pacific.", "rejected": "The Atlantic."},
    ]


def test_lenient_load_skips_and_reports_every_bad_row(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", mixed_rows())
    pairs, report = load_pairs(path)
    assert [p.id for p in pairs] == ["mixed:1", "mixed:3", "mixed:6"]
    assert report.rows_read == 6 and report.pairs_loaded == 3
    assert [(s.row, s.field) for s in report.skipped] == [(2, "chosen"), (4, "rejected"), (5, "prompt")]
    assert report.rows_read == report.pairs_loaded + len(report.skipped)
    summary = report.summary()
    assert "6 rows read, 3 pairs loaded, 3 skipped, 0 exact duplicates dropped" in summary
    assert "row 2, field 'chosen': empty text" in summary


def test_skip_lines_give_the_first_reasons_for_printing(tmp_path):
    pairs, report = load_pairs(write_jsonl(tmp_path / "mixed.jsonl", mixed_rows()))
    assert report.skip_lines(2) == [
        "row 2, field 'chosen': empty text",
        "row 4, field 'rejected': same text as 'chosen' (chosen and rejected must differ)",
    ]
    assert report.skip_lines(None)[-1] == "row 5, field 'prompt': expected text, got a number (7)"
    assert len(report.skip_lines()) == 3


def test_row_problem_without_a_field_prints_without_one(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\nnot json\n')
    _, report = load_pairs(path)
    assert report.skip_lines() == ["row 2: malformed JSON (Expecting value at column 1)"]


def test_write_problems_lists_every_skipped_and_duplicate_row(tmp_path):
    rows = [*mixed_rows(), GENERIC_ROW, {"prompt": "", "chosen": "c", "rejected": "r"}]
    _, report = load_pairs(write_jsonl(tmp_path / "mixed.jsonl", rows))
    out = report.write_problems(tmp_path / "problems.csv")
    with out.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["kind"], r["row"], r["field"]) for r in table] == [
        ("skipped", "2", "chosen"),
        ("skipped", "4", "rejected"),
        ("skipped", "5", "prompt"),
        ("skipped", "8", "prompt"),
        ("duplicate", "7", ""),
    ]
    assert table[-1]["reason"] == "repeats row 1"
    assert "and 1 more" in report.summary()  # 4 skipped, 3 shown


def test_strict_load_raises_at_the_first_bad_row(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", mixed_rows())
    with pytest.raises(DataError) as exc:
        load_pairs(path, strict=True)
    assert_located(exc.value, "mixed.jsonl", 2, "chosen")
    assert exc.value.reason == "empty text"


def test_strict_load_of_a_clean_file_loads_everything():
    pairs, report = load_pairs(FIXTURES / "hh_rlhf.jsonl", strict=True)
    assert len(pairs) == report.rows_read and not report.skipped


def test_no_surviving_row_raises_with_the_first_reasons(tmp_path):
    rows = [{"prompt": "p", "chosen": "", "rejected": "r"}, {"prompt": "p", "chosen": "x", "rejected": "x"}]
    path = write_jsonl(tmp_path / "allbad.jsonl", rows)
    with pytest.raises(DataError) as exc:
        load_pairs(path)
    msg = str(exc.value)
    assert "allbad.jsonl" in msg and "no usable rows (2 read" in msg
    assert "row 1, field 'chosen': empty text" in msg and "row 2, field 'rejected'" in msg


def test_data_error_is_a_value_error_with_a_readable_message():
    err = DataError("/tmp/data.jsonl", 7, "chosen", "empty text")
    assert isinstance(err, ValueError)
    assert str(err) == "data.jsonl row 7, field 'chosen': empty text"
    assert str(DataError("x.csv", None, None, "empty file")) == "x.csv: empty file"


def test_bad_format_name():
    with pytest.raises(ValueError, match="format must be 'auto' or one of"):
        load_pairs(FIXTURES / "generic.jsonl", format="hh")


def test_bad_axis_is_refused():
    with pytest.raises(ValueError, match="axis must be one of helpful, harmless"):
        load_pairs(FIXTURES / "pku_saferlhf.jsonl", axis="honest")


# --------------------------------------------------------------------------------------------
# Exact duplicates
# --------------------------------------------------------------------------------------------


def test_exact_duplicate_rows_are_dropped_and_reported(tmp_path):
    a = {"prompt": "Q?", "chosen": "Yes.", "rejected": "No."}
    b = {"prompt": "R?", "chosen": "Up.", "rejected": "Down."}
    rows = [a, b, a, {**a, "rejected": "Maybe."}, b, {**a, "chosen": "Yes.  "}]  # last: same after strip
    pairs, report = load_pairs(write_jsonl(tmp_path / "dups.jsonl", rows))
    assert [p.id for p in pairs] == ["dups:1", "dups:2", "dups:4"]
    assert report.duplicates == [(3, 1), (5, 2), (6, 1)]
    assert report.rows_read == report.pairs_loaded + len(report.skipped) + len(report.duplicates)
    assert "3 exact duplicates dropped" in report.summary()
    assert "Duplicates: row 3 repeats row 1; row 5 repeats row 2; row 6 repeats row 1." in report.summary()
    assert report.duplicate_lines(1) == ["row 3 repeats row 1"]
    strict_pairs, _ = load_pairs(tmp_path / "dups.jsonl", strict=True)  # a duplicate is not a bad row
    assert strict_pairs == pairs


def test_same_prompt_with_other_responses_is_not_a_duplicate(tmp_path):
    rows = [GENERIC_ROW, {**GENERIC_ROW, "chosen": "Four."}, {**GENERIC_ROW, "rejected": "Six."}]
    pairs, report = load_pairs(write_jsonl(tmp_path / "d.jsonl", rows))
    assert len(pairs) == 3 and report.duplicates == []


# --------------------------------------------------------------------------------------------
# Long dialogues
# --------------------------------------------------------------------------------------------


def test_max_chars_cuts_prompts_from_the_left_and_keeps_responses():
    full, _ = load_pairs(FIXTURES / "hh_rlhf.jsonl")
    max_chars = 150
    cut, report = load_pairs(FIXTURES / "hh_rlhf.jsonl", max_chars=max_chars)
    expected_cuts = 0
    for f, c in zip(full, cut, strict=True):
        assert (c.chosen, c.rejected) == (f.chosen, f.rejected)  # responses are never cut
        assert f.prompt.endswith(c.prompt)  # the end of the dialogue survives
        longest = max(len(f.chosen), len(f.rejected))
        budget = max(max_chars - longest, max_chars // 4)
        assert len(c.prompt) == min(len(f.prompt), budget)
        expected_cuts += len(f.prompt) > budget
    assert report.truncated == expected_cuts >= 2
    assert report.long_responses == 0
    assert f"{expected_cuts} prompts cut from the left" in report.summary()
    assert cut[3].prompt.endswith("Wow, why?\n\nAssistant:")


def test_long_hh_dialogues_load_whole_without_max_chars():
    pairs, report = load_pairs(FIXTURES / "hh_harmless_excerpt.jsonl.gz")
    assert report.truncated == 0 and not report.skipped
    assert max(len(p.prompt) for p in pairs) > 1000  # nothing dropped for length: models truncate


def test_response_longer_than_max_chars_is_kept_whole_and_counted(tmp_path):
    long_answer = "word " * 60
    row = {"prompt": "Context sentence. " * 10 + "The question?", "chosen": long_answer, "rejected": "Short."}
    pairs, report = load_pairs(write_jsonl(tmp_path / "long.jsonl", [row]), max_chars=100)
    assert pairs[0].chosen == long_answer.strip()
    assert pairs[0].prompt == row["prompt"][-25:]  # a quarter of max_chars of context is kept
    assert (report.truncated, report.long_responses) == (1, 1)


def test_max_chars_must_be_positive():
    with pytest.raises(ValueError, match="max_chars must be a positive"):
        load_pairs(FIXTURES / "generic.jsonl", max_chars=0)


# --------------------------------------------------------------------------------------------
# Split by prompt
# --------------------------------------------------------------------------------------------


def make_pairs(n: int) -> list[PreferencePair]:
    return [PreferencePair(id=f"d:{i}", prompt=f"p{i}", chosen=f"c{i}", rejected=f"r{i}") for i in range(n)]


def pairs_with_prompts(prompt_of: list[int]) -> list[PreferencePair]:
    """Pair i asks prompt number prompt_of[i]."""
    return [
        PreferencePair(id=f"d:{i}", prompt=f"prompt {k}", chosen=f"c{i}", rejected=f"r{i}")
        for i, k in enumerate(prompt_of)
    ]


def test_split_is_deterministic_disjoint_and_complete():
    pairs = make_pairs(50)
    train, test = train_test_split(pairs, test_fraction=0.2, seed=3)
    assert (train, test) == train_test_split(pairs, test_fraction=0.2, seed=3)
    assert len(test) == 10 and len(train) == 40
    assert {p.id for p in train}.isdisjoint({p.id for p in test})
    assert {p.id for p in train} | {p.id for p in test} == {p.id for p in pairs}
    other = train_test_split(pairs, test_fraction=0.2, seed=4)[1]
    assert {p.id for p in other} != {p.id for p in test}


def test_split_does_not_depend_on_input_order():
    pairs = pairs_with_prompts([i // 3 for i in range(30)])
    a = {p.id for p in train_test_split(pairs, 0.3, seed=1)[1]}
    b = {p.id for p in train_test_split(list(reversed(pairs)), 0.3, seed=1)[1]}
    assert a == b


def test_split_keeps_every_prompt_on_one_side():
    """Summarize-from-feedback has many comparisons per post: none of a post's may train and test."""
    rng = random.Random(0)
    prompt_of = [rng.randrange(40) for _ in range(300)]
    pairs = pairs_with_prompts(prompt_of)
    largest = max(Counter(prompt_of).values())
    for seed in range(10):
        train, test = train_test_split(pairs, 0.2, seed=seed)
        report = split_report(train, test)
        assert report.shared_prompts == 0
        assert {p.prompt for p in train}.isdisjoint({p.prompt for p in test})
        assert report.train_prompts + report.test_prompts == len({p.prompt for p in pairs})
        assert abs(len(test) - 60) < largest  # closer than one prompt's pairs


def test_split_prompt_match_ignores_surrounding_whitespace():
    pairs = [
        PreferencePair(id=f"w:{i}", prompt="Q?" + " " * i, chosen=f"c{i}", rejected="r") for i in range(4)
    ]
    pairs += make_pairs(6)
    for seed in range(5):
        train, test = train_test_split(pairs, 0.3, seed=seed)
        assert split_report(train, test).shared_prompts == 0


def test_split_hits_the_fraction_when_group_sizes_allow():
    # five prompts with three pairs each and five with one: 4 test pairs are always reachable
    pairs = pairs_with_prompts([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 6, 7, 8, 9])
    for seed in range(20):
        train, test = train_test_split(pairs, 0.2, seed=seed)
        assert len(test) == 4 and len(train) == 16


def test_split_with_only_large_groups_still_tests_something():
    pairs = pairs_with_prompts([0] * 10 + [1] * 10)
    train, test = train_test_split(pairs, 0.05, seed=0)
    assert len(test) == 10 and len(train) == 10
    assert train_test_split(pairs_with_prompts([0] * 5), 0.5) == (pairs_with_prompts([0] * 5), [])


def test_split_keeps_synthetic_pairs_with_their_parent():
    originals = make_pairs(10)
    children = [
        PreferencePair(
            id=f"syn:{i}:{k}",
            prompt=p.prompt,
            chosen=p.chosen + "!",
            rejected=p.rejected,
            source="synthetic",
            parent_id=p.id,
            epoch_added=1,
        )
        for i, p in enumerate(originals)
        for k in range(2)
    ]
    for seed in range(5):
        train, test = train_test_split(originals + children, 0.3, seed=seed)
        assert train and test
        train_roots = {p.parent_id or p.id for p in train}
        test_roots = {p.parent_id or p.id for p in test}
        assert train_roots.isdisjoint(test_roots)


def test_split_report_summary_counts_pairs_and_prompts():
    pairs = pairs_with_prompts([0, 0, 1, 2, 3, 3, 3, 4, 5, 6])
    train, test = train_test_split(pairs, 0.3, seed=2)
    report = split_report(train, test)
    assert (report.train_pairs, report.test_pairs) == (len(train), len(test))
    assert report.train_prompts == len({p.prompt for p in train})
    text = report.summary()
    assert f"{len(train)} train pairs ({report.train_prompts} prompts)" in text
    assert "no prompt on both sides" in text
    leaky = split_report(pairs[:2], pairs[1:3])
    assert leaky.shared_prompts == 1 and "1 prompts on both sides" in leaky.summary()


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan"), True])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction must be strictly between 0 and 1"):
        train_test_split(make_pairs(5), fraction)


def test_split_tiny_inputs():
    assert train_test_split([], 0.2) == ([], [])
    one = make_pairs(1)
    assert train_test_split(one, 0.2) == (one, [])
    train, test = train_test_split(make_pairs(2), 0.01)
    assert len(train) == len(test) == 1


def test_split_rejects_duplicate_ids():
    pairs = make_pairs(3) + make_pairs(1)
    with pytest.raises(ValueError, match="'d:0' appears more than once"):
        train_test_split(pairs)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 60), fraction=st.floats(0.01, 0.99), seed=st.integers(0, 2**32 - 1))
def test_split_properties(n, fraction, seed):
    pairs = make_pairs(n)
    train, test = train_test_split(pairs, fraction, seed)
    assert len(train) + len(test) == n
    assert {p.id for p in train}.isdisjoint({p.id for p in test})
    assert sorted(p.id for p in train + test) == sorted(p.id for p in pairs)
    assert train_test_split(pairs, fraction, seed) == (train, test)
    if n >= 2:
        assert train and test
        assert len(test) == min(max(round(n * fraction), 1), n - 1)
    assert [p.id for p in train] == [p.id for p in pairs if p in train]  # input order kept


@settings(max_examples=60, deadline=None)
@given(
    prompt_of=st.lists(st.integers(0, 12), min_size=2, max_size=80),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_by_prompt_properties(prompt_of, fraction, seed):
    pairs = pairs_with_prompts(prompt_of)
    train, test = train_test_split(pairs, fraction, seed)
    assert sorted(p.id for p in train + test) == sorted(p.id for p in pairs)
    assert {p.prompt for p in train}.isdisjoint({p.prompt for p in test})
    if len(set(prompt_of)) >= 2:
        assert train and test
        target = min(max(round(len(pairs) * fraction), 1), len(pairs) - 1)
        largest = max(prompt_of.count(k) for k in set(prompt_of))
        assert abs(len(test) - target) < largest


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def test_frame_round_trip_keeps_every_field():
    pairs, _ = load_pairs(FIXTURES / "hh_rlhf.jsonl")
    synthetic = pairs[0].with_changes(
        id="syn:1",
        chosen="Paraphrased.",
        source="synthetic",
        parent_id=pairs[0].id,
        epoch_added=2,
        gold_margin=0.75,
        chosen_paraphrase_id=12,
    )
    all_pairs = [*pairs, synthetic]
    frame = pairs_to_frame(all_pairs)
    assert list(frame.columns[:4]) == ["id", "prompt", "chosen", "rejected"]
    assert len(frame) == len(all_pairs)
    assert pairs_from_frame(frame) == all_pairs


def test_frame_round_trip_through_parquet(tmp_path):
    pairs = make_pairs(3) + [
        make_pairs(1)[0].with_changes(
            id="s", parent_id="d:0", gold_margin=-1.5, rejected_paraphrase_id=4, epoch_added=1
        )
    ]
    path = tmp_path / "pairs.parquet"
    pairs_to_frame(pairs).to_parquet(path)
    assert pairs_from_frame(pd.read_parquet(path)) == pairs


def test_frame_needs_the_text_columns():
    with pytest.raises(DataError, match="missing column") as exc:
        pairs_from_frame(pd.DataFrame({"id": ["a"], "prompt": ["p"], "chosen": ["c"]}))
    assert exc.value.field == "rejected"
    minimal = pairs_from_frame(
        pd.DataFrame({"id": ["a"], "prompt": ["p"], "chosen": ["c"], "rejected": ["r"]})
    )
    assert minimal == [PreferencePair(id="a", prompt="p", chosen="c", rejected="r")]
    with pytest.raises(DataError, match="row 2, field 'chosen': expected text, got a number"):
        pairs_from_frame(
            pd.DataFrame({"id": ["a", "b"], "prompt": ["p", "q"], "chosen": ["c", 3], "rejected": "r"})
        )
