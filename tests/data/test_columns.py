"""Column maps (parsed from text, applied to a file) and their errors."""

from __future__ import annotations

import csv

import pytest

from mars_core.data.columns import parse_column_map
from mars_core.data.errors import DataError
from mars_core.data.loading import load_pairs
from tests.data.helpers import FIXTURES, GENERIC_ROW, assert_located, write_jsonl


def test_generic_csv_with_column_map_and_multiline_cells():
    path = FIXTURES / "generic_renamed.csv"
    column_map = {"prompt": "question", "chosen": "good_answer", "rejected": "bad_answer"}
    pairs, report = load_pairs(path, column_map=column_map)
    assert report.format == "generic"
    with path.open(newline="") as f:
        raw = list(csv.DictReader(f))
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [
        (r["question"], r["good_answer"], r["bad_answer"]) for r in raw
    ]
    assert "\n" in pairs[2].chosen  # a quoted multi-line cell stays one row


def test_column_map_error_names_the_files_column(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q?", "good": "a", "bad": "b"}])
    with pytest.raises(DataError) as exc:
        load_pairs(
            path, format="generic", column_map={"prompt": "query", "chosen": "good", "rejected": "bad"}
        )
    assert_located(exc.value, "qa.jsonl", None, "query")
    assert "question" in str(exc.value)  # the columns that are present


def test_column_map_key_must_be_a_field_we_read(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GENERIC_ROW])
    with pytest.raises(DataError, match="'answer' is not a field"):
        load_pairs(path, column_map={"answer": "chosen"})


def test_column_map_cannot_send_two_fields_to_one_column(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"q": "p", "a": "c", "b": "r"}])
    with pytest.raises(DataError, match="sends both 'chosen' and 'rejected' to the column 'a'"):
        load_pairs(path, column_map={"prompt": "q", "chosen": "a", "rejected": "a"})


def test_row_errors_name_the_files_column_under_a_column_map(tmp_path):
    rows = [{"q": "a?", "good": "yes", "bad": "no"}, {"q": "", "good": "x", "bad": "y"}]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    pairs, report = load_pairs(path, column_map={"prompt": "q", "chosen": "good", "rejected": "bad"})
    assert len(pairs) == 1
    assert report.skipped == [(2, "q", "empty text")]


def test_parsed_column_map_loads_a_renamed_file():
    column_map = parse_column_map("prompt=question, chosen = good_answer ,rejected=bad_answer")
    assert column_map == {"prompt": "question", "chosen": "good_answer", "rejected": "bad_answer"}
    pairs, _ = load_pairs(FIXTURES / "generic_renamed.csv", column_map=column_map)
    assert len(pairs) == 3


def test_parse_column_map_keeps_names_with_spaces_dots_and_equals():
    assert parse_column_map("prompt=user question,info=meta.info,chosen=a=b") == {
        "prompt": "user question",
        "info": "meta.info",
        "chosen": "a=b",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "column map is empty; expected OUR_FIELD=FILE_COLUMN pairs"),
        ("   ", "column map is empty"),
        ("prompt=q,,chosen=c", "has an empty entry"),
        ("prompt=q,", "has an empty entry"),
        ("prompt", "entry 'prompt' has no '='; write OUR_FIELD=FILE_COLUMN"),
        ("=question", "entry '=question' is missing our field"),
        ("prompt=", "entry 'prompt=' is missing the file's column"),
        ("answer=good", "'answer' is not a field we read; use one of .*chosen.*prompt"),
        ("prompt=a,prompt=b", "names 'prompt' twice"),
        ("chosen=x,rejected=x", "sends both 'chosen' and 'rejected' to the column 'x'"),
    ],
)
def test_parse_column_map_errors_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_column_map(text)
