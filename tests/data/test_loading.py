"""Loaders for each preference schema, their error messages, the report, and the train/test split."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mars_core.data.loading import (
    FORMATS,
    DataError,
    load_pairs,
    pairs_from_frame,
    pairs_to_frame,
    required_columns,
    split_hh_dialogue,
    train_test_split,
)
from mars_core.data.pairs import PreferencePair

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data"
H, A = "\n\nHuman: ", "\n\nAssistant: "


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def assert_located(err: DataError, file: str, row: int | None, field: str | None) -> None:
    """The error carries the location as attributes and names it in its message."""
    assert Path(err.file).name == file
    assert err.row == row
    assert err.field == field
    msg = str(err)
    assert file in msg
    if row is not None:
        assert f"row {row}" in msg
    if field is not None:
        assert f"field '{field}'" in msg


GENERIC_ROW = {"prompt": "What is 2 + 2?", "chosen": "4.", "rejected": "5."}


# --------------------------------------------------------------------------------------------
# Each schema from its fixture, with auto-detection
# --------------------------------------------------------------------------------------------

FIXTURE_FORMATS = [
    ("generic.jsonl", "generic"),
    ("hh_rlhf.jsonl", "hh-rlhf"),
    ("pku_saferlhf.jsonl", "pku-saferlhf"),
    ("ultrafeedback.jsonl", "ultrafeedback"),
    ("shp.csv", "shp"),
    ("summarize.json", "summarize"),
]


@pytest.mark.parametrize(("name", "fmt"), FIXTURE_FORMATS)
def test_fixture_auto_detects_its_schema_and_loads_every_row(name, fmt):
    pairs, report = load_pairs(FIXTURES / name)
    assert report.format == fmt
    assert report.pairs_loaded == report.rows_read == len(pairs) >= 3
    assert report.skipped == []
    assert all(p.source == fmt for p in pairs)
    stem = Path(name).stem
    assert [p.id for p in pairs] == [f"{stem}:{i}" for i in range(1, len(pairs) + 1)]
    for p in pairs:
        assert p.prompt.strip() and p.chosen.strip() and p.rejected.strip()
        assert p.chosen != p.rejected
        assert not p.is_synthetic and p.epoch_added == 0
    explicit, _ = load_pairs(FIXTURES / name, format=fmt)
    assert explicit == pairs


def test_every_format_has_a_fixture():
    assert sorted(f for _, f in FIXTURE_FORMATS) == sorted(FORMATS)


def test_generic_jsonl_keeps_text_as_written():
    pairs, _ = load_pairs(FIXTURES / "generic.jsonl")
    raw = read_jsonl(FIXTURES / "generic.jsonl")
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [
        (r["prompt"], r["chosen"], r["rejected"]) for r in raw
    ]


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


def test_row_errors_name_the_files_column_under_a_column_map(tmp_path):
    rows = [{"q": "a?", "good": "yes", "bad": "no"}, {"q": "", "good": "x", "bad": "y"}]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    pairs, report = load_pairs(path, column_map={"prompt": "q", "chosen": "good", "rejected": "bad"})
    assert len(pairs) == 1
    assert report.skipped == [(2, "q", "empty text")]


def test_parquet_written_by_pandas_loads_like_jsonl(tmp_path):
    raw = read_jsonl(FIXTURES / "generic.jsonl")
    path = tmp_path / "prefs.parquet"
    pd.DataFrame(raw).to_parquet(path)
    pairs, report = load_pairs(path)
    assert report.format == "generic"
    jsonl_pairs, _ = load_pairs(FIXTURES / "generic.jsonl")
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [
        (p.prompt, p.chosen, p.rejected) for p in jsonl_pairs
    ]
    assert [p.id for p in pairs] == [f"prefs:{i}" for i in range(1, 5)]


def test_parquet_with_nested_chat_messages_is_ultrafeedback(tmp_path):
    raw = read_jsonl(FIXTURES / "ultrafeedback.jsonl")
    path = tmp_path / "uf.parquet"
    pd.DataFrame(raw).to_parquet(path)  # list<struct<role, content>> columns, as on the Hub
    pairs, report = load_pairs(path)
    assert report.format == "ultrafeedback"
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [
        (r["prompt"], r["chosen"][-1]["content"], r["rejected"][-1]["content"]) for r in raw
    ]


def test_json_array_file_is_accepted(tmp_path):
    path = tmp_path / "arr.json"
    path.write_text(json.dumps([GENERIC_ROW, {**GENERIC_ROW, "chosen": "Four."}]))
    pairs, _ = load_pairs(path)
    assert [p.chosen for p in pairs] == ["4.", "Four."]
    assert [p.id for p in pairs] == ["arr:1", "arr:2"]


def test_jsonl_ids_are_line_numbers_and_stable(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text(json.dumps(GENERIC_ROW) + "\n\n" + json.dumps({**GENERIC_ROW, "chosen": "Four."}) + "\n")
    first, report = load_pairs(path)
    second, _ = load_pairs(path)
    assert [p.id for p in first] == ["gaps:1", "gaps:3"]  # blank lines are not rows, but count as lines
    assert first == second
    assert report.rows_read == 2


# --------------------------------------------------------------------------------------------
# HH-RLHF
# --------------------------------------------------------------------------------------------


def test_hh_prompt_is_the_shared_prefix_through_the_last_assistant_turn():
    pairs, _ = load_pairs(FIXTURES / "hh_rlhf.jsonl")
    raw = read_jsonl(FIXTURES / "hh_rlhf.jsonl")
    for p, r in zip(pairs, raw, strict=True):
        assert p.prompt.endswith("\n\nAssistant:")
        assert r["chosen"] == p.prompt + " " + p.chosen
        assert r["rejected"] == p.prompt + " " + p.rejected
        assert "\n\nAssistant:" not in p.chosen and "\n\nHuman:" not in p.chosen
    multi = pairs[3]  # three human turns
    assert multi.prompt.count("\n\nHuman:") == 3 and multi.prompt.count("\n\nAssistant:") == 3
    assert (
        "A day on Venus is longer than its year." in multi.prompt
    )  # earlier assistant turns stay in the prompt
    assert multi.chosen.startswith("Venus spins very slowly")
    assert multi.rejected == "Nobody knows."


def test_split_hh_dialogue_uses_the_last_assistant_marker():
    dialogue = H + "Hi" + A + "Hello." + H + "Bye" + A + "Goodbye."
    prompt, response = split_hh_dialogue(dialogue)
    assert prompt == H + "Hi" + A + "Hello." + H + "Bye" + "\n\nAssistant:"
    assert response == "Goodbye."


def test_hh_dialogues_that_differ_before_the_last_turn_are_an_error(tmp_path):
    rows = [
        {
            "chosen": H + "Hi" + A + "Hello." + H + "Bye" + A + "Goodbye.",
            "rejected": H + "Hi" + A + "Go away." + H + "Bye" + A + "Whatever.",
        },
    ]
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    with pytest.raises(DataError) as exc:
        load_pairs(path, format="hh-rlhf", strict=True)
    assert_located(exc.value, "hh.jsonl", 1, "rejected")
    assert "differs" in str(exc.value)


@pytest.mark.parametrize(
    ("chosen", "reason"),
    [
        (H + "Hi there, no answer yet.", "no '\\n\\nAssistant:' turn"),
        (H + "Hi" + A + "Hello." + H + "And then?", "ends with a Human turn"),
        (H + "Hi" + A + "   ", "final assistant response is empty"),
    ],
)
def test_hh_bad_dialogue_shapes(tmp_path, chosen, reason):
    rows = [
        {"chosen": H + "Hi" + A + "Hello.", "rejected": H + "Hi" + A + "Go away."},
        {"chosen": chosen, "rejected": H + "Hi" + A + "Go away."},
    ]
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    with pytest.raises(DataError) as exc:
        load_pairs(path, format="hh-rlhf", strict=True)
    assert_located(exc.value, "hh.jsonl", 2, "chosen")
    assert reason in str(exc.value)


# --------------------------------------------------------------------------------------------
# PKU-SafeRLHF, UltraFeedback, SHP, summarize
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("axis", "label"), [("helpful", "better_response_id"), ("harmless", "safer_response_id")]
)
def test_pku_axis_picks_the_label(axis, label):
    pairs, _ = load_pairs(FIXTURES / "pku_saferlhf.jsonl", axis=axis)
    raw = read_jsonl(FIXTURES / "pku_saferlhf.jsonl")
    for p, r in zip(pairs, raw, strict=True):
        assert p.chosen == r[f"response_{r[label]}"]
        assert p.rejected == r[f"response_{1 - r[label]}"]


def test_pku_axes_disagree_where_the_labels_do():
    helpful, _ = load_pairs(FIXTURES / "pku_saferlhf.jsonl", axis="helpful")
    harmless, _ = load_pairs(FIXTURES / "pku_saferlhf.jsonl", axis="harmless")
    raw = read_jsonl(FIXTURES / "pku_saferlhf.jsonl")
    differs = [r["better_response_id"] != r["safer_response_id"] for r in raw]
    assert any(differs) and not all(differs)
    assert [h.chosen != s.chosen for h, s in zip(helpful, harmless, strict=True)] == differs


def test_pku_harmless_axis_needs_the_safer_column(tmp_path):
    rows = [
        {k: v for k, v in r.items() if k != "safer_response_id"}
        for r in read_jsonl(FIXTURES / "pku_saferlhf.jsonl")
    ]
    path = write_jsonl(tmp_path / "pku.jsonl", rows)
    assert load_pairs(path)[1].format == "pku-saferlhf"
    with pytest.raises(DataError) as exc:
        load_pairs(path, axis="harmless")
    assert_located(exc.value, "pku.jsonl", None, "safer_response_id")


def test_bad_axis_is_refused():
    with pytest.raises(ValueError, match="axis must be one of helpful, harmless"):
        load_pairs(FIXTURES / "pku_saferlhf.jsonl", axis="honest")


def test_ultrafeedback_without_prompt_column_uses_the_shared_history(tmp_path):
    history = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another?"},
    ]
    single = [{"role": "user", "content": "Say hi."}]
    rows = [
        {
            "chosen": [*history, {"role": "assistant", "content": "Green."}],
            "rejected": [*history, {"role": "assistant", "content": "Blue again."}],
        },
        {
            "chosen": [*single, {"role": "assistant", "content": "Hi!"}],
            "rejected": [*single, {"role": "assistant", "content": "No."}],
        },
    ]
    pairs, report = load_pairs(write_jsonl(tmp_path / "uf.jsonl", rows))
    assert report.format == "ultrafeedback"
    assert pairs[0].prompt == "User: Name a colour.\n\nAssistant: Blue.\n\nUser: Another?"
    assert (pairs[0].chosen, pairs[0].rejected) == ("Green.", "Blue again.")
    assert pairs[1].prompt == "Say hi."


@pytest.mark.parametrize(
    ("rejected", "field", "reason"),
    [
        (
            [{"role": "user", "content": "Other question"}, {"role": "assistant", "content": "x"}],
            "rejected",
            "differs from 'chosen'",
        ),
        ([{"role": "user", "content": "Q"}], "rejected", "not the assistant"),
        ("not a list", "rejected", "expected a list"),
        ([{"role": "user"}, {"role": "assistant", "content": "x"}], "rejected", "message 0"),
    ],
)
def test_ultrafeedback_bad_messages(tmp_path, rejected, field, reason):
    chosen = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    rows = [
        {"prompt": "Q", "chosen": chosen, "rejected": [chosen[0], {"role": "assistant", "content": "B"}]},
        {"prompt": "Q", "chosen": chosen, "rejected": rejected},
    ]
    path = write_jsonl(tmp_path / "uf.jsonl", rows)
    with pytest.raises(DataError) as exc:
        load_pairs(path, format="ultrafeedback", strict=True)
    assert_located(exc.value, "uf.jsonl", 2, field)
    assert reason in str(exc.value)


def test_shp_label_one_prefers_a():
    pairs, _ = load_pairs(FIXTURES / "shp.csv")
    with (FIXTURES / "shp.csv").open(newline="") as f:
        raw = list(csv.DictReader(f))
    assert {r["labels"] for r in raw} == {"0", "1"}
    for p, r in zip(pairs, raw, strict=True):
        a_wins = r["labels"] == "1"
        assert p.prompt == r["history"]
        assert p.chosen == (r["human_ref_A"] if a_wins else r["human_ref_B"])
        assert p.rejected == (r["human_ref_B"] if a_wins else r["human_ref_A"])


def test_summarize_prompt_and_choice():
    pairs, _ = load_pairs(FIXTURES / "summarize.json")
    raw = json.loads((FIXTURES / "summarize.json").read_text())
    for p, r in zip(pairs, raw, strict=True):
        assert p.prompt.startswith(f"SUBREDDIT: r/{r['info']['subreddit']}\nTITLE: {r['info']['title']}\n")
        assert p.prompt.endswith("POST: " + r["info"]["post"])
        assert p.chosen == r["summaries"][r["choice"]]["text"].strip()
        assert p.rejected == r["summaries"][1 - r["choice"]]["text"].strip()


def test_summarize_from_a_flattened_csv(tmp_path):
    raw = json.loads((FIXTURES / "summarize.json").read_text())
    rows = [[r["info"]["post"], json.dumps(r["summaries"]), r["choice"]] for r in raw]
    path = write_csv(tmp_path / "cmp.csv", ["info.post", "summaries", "choice"], rows)
    pairs, report = load_pairs(path)
    assert report.format == "summarize"
    assert [p.prompt for p in pairs] == [r["info"]["post"] for r in raw]  # no title/subreddit columns
    assert [p.chosen for p in pairs] == [r["summaries"][r["choice"]]["text"].strip() for r in raw]


def test_summarize_needs_two_summaries(tmp_path):
    row = {"info": {"post": "A post."}, "summaries": [{"text": "only one"}], "choice": 0}
    with pytest.raises(DataError) as exc:
        load_pairs(write_jsonl(tmp_path / "s.jsonl", [row]), strict=True)
    assert_located(exc.value, "s.jsonl", 1, "summaries")


# --------------------------------------------------------------------------------------------
# Auto-detection failures
# --------------------------------------------------------------------------------------------


def test_unknown_columns_list_what_was_found_and_what_each_format_needs(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(DataError) as exc:
        load_pairs(path)
    msg = str(exc.value)
    assert "question, answer" in msg
    for fmt in FORMATS:
        assert fmt in msg
    assert "human_ref_A" in msg  # what SHP would need


def test_chosen_rejected_without_prompt_or_dialogue_markers_is_not_guessed(tmp_path):
    path = write_jsonl(tmp_path / "bare.jsonl", [{"chosen": "yes", "rejected": "no"}])
    with pytest.raises(DataError, match="neither HH-RLHF dialogues nor lists of chat messages"):
        load_pairs(path)


def test_columns_that_fit_two_formats_are_ambiguous(tmp_path):
    pku = read_jsonl(FIXTURES / "pku_saferlhf.jsonl")[0]
    path = write_jsonl(tmp_path / "both.jsonl", [{**pku, "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError) as exc:
        load_pairs(path)
    msg = str(exc.value)
    assert "ambiguous" in msg and "generic" in msg and "pku-saferlhf" in msg and "response_0" in msg
    pairs, report = load_pairs(path, format="pku-saferlhf")
    assert report.format == "pku-saferlhf" and len(pairs) == 1


# --------------------------------------------------------------------------------------------
# Bad input: file level
# --------------------------------------------------------------------------------------------


def test_missing_column_names_it_and_the_columns_present(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [{"prompt": "p", "chosen": "c", "answer": "x"}])
    with pytest.raises(DataError) as exc:
        load_pairs(path, format="generic")
    assert_located(exc.value, "data.jsonl", None, "rejected")
    assert "columns present: prompt, chosen, answer" in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found") as exc:
        load_pairs(tmp_path / "nope.jsonl")
    assert_located(exc.value, "nope.jsonl", None, None)


def test_unsupported_extension(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("prompt,chosen,rejected\n")
    with pytest.raises(DataError, match=r"unsupported file type '\.txt'.*\.jsonl"):
        load_pairs(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("e.jsonl", ""),
        ("e.jsonl", "\n  \n"),
        ("e.csv", ""),
        ("e.json", "[]"),
        ("e.csv", "prompt,chosen,rejected\n"),
    ],
)
def test_empty_files(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match="empty file") as exc:
        load_pairs(path)
    assert_located(exc.value, name, None, None)


def test_empty_parquet(tmp_path):
    path = tmp_path / "e.parquet"
    pd.DataFrame(
        {
            "prompt": pd.Series([], dtype=str),
            "chosen": pd.Series([], dtype=str),
            "rejected": pd.Series([], dtype=str),
        }
    ).to_parquet(path)
    with pytest.raises(DataError, match="empty file"):
        load_pairs(path)


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_pairs(path)


def test_malformed_json_array_names_line_and_column(tmp_path):
    path = tmp_path / "arr.json"
    path.write_text('[\n {"prompt": "p", "chosen": "c", "rejected": "r"},\n {"prompt": }\n]')
    with pytest.raises(DataError, match="malformed JSON .* line 3"):
        load_pairs(path)


def test_single_json_object_is_explained(tmp_path):
    path = tmp_path / "obj.json"
    path.write_text(json.dumps({"data": [GENERIC_ROW]}, indent=2))
    with pytest.raises(DataError, match="one JSON object; expected JSON lines or an array"):
        load_pairs(path)


# --------------------------------------------------------------------------------------------
# Bad input: row level
# --------------------------------------------------------------------------------------------

ROW_CASES = [
    ({"prompt": "p", "chosen": "", "rejected": "r"}, "chosen", "empty text"),
    ({"prompt": "p", "chosen": "c", "rejected": " \n\t"}, "rejected", "only whitespace"),
    ({"prompt": "p", "chosen": "same", "rejected": "same "}, "rejected", "same text as 'chosen'"),
    ({"prompt": 42, "chosen": "c", "rejected": "r"}, "prompt", "expected text, got a number (42)"),
    ({"prompt": "p", "chosen": ["c"], "rejected": "r"}, "chosen", "expected text, got a list"),
    ({"prompt": "p", "chosen": None, "rejected": "r"}, "chosen", "missing value (null)"),
    ({"prompt": "p", "chosen": "c"}, "rejected", "missing in this row"),
]


@pytest.mark.parametrize(("row", "field", "reason"), ROW_CASES)
def test_generic_row_problems_are_located(tmp_path, row, field, reason):
    path = write_jsonl(tmp_path / "data.jsonl", [GENERIC_ROW, GENERIC_ROW, row])
    with pytest.raises(DataError) as exc:
        load_pairs(path, format="generic", strict=True)
    assert_located(exc.value, "data.jsonl", 3, field)
    assert reason in str(exc.value)
    pairs, report = load_pairs(path, format="generic")
    assert len(pairs) == 2
    assert report.skipped == [(3, field, exc.value.reason)]


def test_malformed_json_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(
        json.dumps(GENERIC_ROW) + "\n" + '{"prompt": "p", "chosen": "c",\n' + json.dumps(GENERIC_ROW) + "\n"
    )
    with pytest.raises(DataError, match="malformed JSON") as exc:
        load_pairs(path, strict=True)
    assert_located(exc.value, "data.jsonl", 2, None)
    pairs, report = load_pairs(path)
    assert [p.id for p in pairs] == ["data:1", "data:3"]
    assert report.skipped[0].row == 2


def test_json_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(GENERIC_ROW) + "\n" + '["p", "c", "r"]\n')
    pairs, report = load_pairs(path)
    assert len(pairs) == 1 and report.skipped == [(2, None, "expected a JSON object, got a list")]


@pytest.mark.parametrize(
    ("label", "shown"), [(2, "2"), (-1, "-1"), ("yes", "'yes'"), (0.5, "0.5"), (True, "True")]
)
def test_shp_label_must_be_0_or_1(tmp_path, label, shown):
    row = {"history": "h", "human_ref_A": "a", "human_ref_B": "b", "labels": label}
    path = write_jsonl(tmp_path / "shp.jsonl", [{**row, "labels": 1}, row])
    with pytest.raises(DataError) as exc:
        load_pairs(path, strict=True)
    assert_located(exc.value, "shp.jsonl", 2, "labels")
    assert f"label must be 0 or 1, got {shown}" in str(exc.value)


def test_pku_label_out_of_range(tmp_path):
    rows = read_jsonl(FIXTURES / "pku_saferlhf.jsonl")
    rows[1]["better_response_id"] = 2
    pairs, report = load_pairs(write_jsonl(tmp_path / "pku.jsonl", rows))
    assert len(pairs) == 3
    assert report.skipped == [(2, "better_response_id", "label must be 0 or 1, got 2")]
    assert len(load_pairs(tmp_path / "pku.jsonl", axis="harmless")[0]) == 4  # the other axis is fine


def test_csv_labels_arrive_as_text_and_are_checked(tmp_path):
    path = write_csv(
        tmp_path / "shp.csv",
        ["history", "human_ref_A", "human_ref_B", "labels"],
        [["h1", "a", "b", "1"], ["h2", "a", "b", "2"], ["h3", "a", "b", "0"]],
    )
    pairs, report = load_pairs(path)
    assert [(p.chosen, p.rejected) for p in pairs] == [("a", "b"), ("b", "a")]
    assert report.skipped == [(2, "labels", "label must be 0 or 1, got '2'")]


def test_csv_row_with_wrong_number_of_fields(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,chosen,rejected\np,c,r\np,c\np,c,r\n")
    with pytest.raises(DataError, match="has 2 fields but the header has 3") as exc:
        load_pairs(path, strict=True)
    assert_located(exc.value, "d.csv", 2, None)


def test_non_utf8_bytes_in_jsonl_name_row_field_and_offset(tmp_path):
    good = (json.dumps(GENERIC_ROW) + "\n").encode()
    bad = b'{"prompt": "p", "chosen": "caf\xe9", "rejected": "r"}\n'
    data = good + bad + good
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(data)
    offset = data.index(b"\xe9")
    with pytest.raises(DataError) as exc:
        load_pairs(path, strict=True)
    assert_located(exc.value, "latin1.jsonl", 2, "chosen")
    assert f"invalid UTF-8 byte 0xe9 at byte offset {offset}" in str(exc.value)
    pairs, report = load_pairs(path)
    assert [p.id for p in pairs] == ["latin1:1", "latin1:3"]


def test_non_utf8_bytes_in_csv_name_row_field_and_offset(tmp_path):
    data = "prompt,chosen,rejected\nna\u00efve?,yes,no\n".encode() + b"q,fa\xe7ade,wall\nq2,x,\xff\xfe\n"
    path = tmp_path / "cp1252.csv"
    path.write_bytes(data)
    with pytest.raises(DataError) as exc:
        load_pairs(path, strict=True)
    assert_located(exc.value, "cp1252.csv", 2, "chosen")
    offset_e7, offset_ff = data.index(b"\xe7"), data.index(b"\xff")
    assert f"byte 0xe7 at byte offset {offset_e7}" in str(exc.value)
    pairs, report = load_pairs(path)
    assert [p.prompt for p in pairs] == ["na\u00efve?"]  # valid multi-byte UTF-8 is fine
    assert report.skipped[1][:2] == (3, "rejected")
    assert f"byte 0xff at byte offset {offset_ff}" in report.skipped[1].reason


def test_utf8_bom_is_ignored(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfprompt,chosen,rejected\np,c,r\n")
    pairs, report = load_pairs(path)
    assert report.format == "generic" and pairs[0].prompt == "p"


# --------------------------------------------------------------------------------------------
# Strict vs lenient, report, nothing left
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
    assert "6 rows read, 3 pairs loaded, 3 skipped" in summary
    assert "row 2, field 'chosen': empty text" in summary


def test_strict_load_raises_at_the_first_bad_row(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", mixed_rows())
    with pytest.raises(DataError) as exc:
        load_pairs(path, strict=True)
    assert_located(exc.value, "mixed.jsonl", 2, "chosen")


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


def test_bad_format_name():
    with pytest.raises(ValueError, match="format must be 'auto' or one of"):
        load_pairs(FIXTURES / "generic.jsonl", format="hh")


def test_required_columns_matches_axis():
    assert required_columns("pku-saferlhf", "harmless")[-1] == "safer_response_id"
    assert required_columns("generic") == ("prompt", "chosen", "rejected")


# --------------------------------------------------------------------------------------------
# Split and tables
# --------------------------------------------------------------------------------------------


def make_pairs(n: int) -> list[PreferencePair]:
    return [PreferencePair(id=f"d:{i}", prompt=f"p{i}", chosen=f"c{i}", rejected=f"r{i}") for i in range(n)]


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
    pairs = make_pairs(30)
    a = {p.id for p in train_test_split(pairs, 0.3, seed=1)[1]}
    b = {p.id for p in train_test_split(list(reversed(pairs)), 0.3, seed=1)[1]}
    assert a == b


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
