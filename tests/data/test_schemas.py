"""Each preference schema from its fixture, its row checks, and format auto-detection."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mars_core.data.errors import DataError
from mars_core.data.loading import load_pairs
from mars_core.data.schemas import DETECT_ROWS, FORMATS, required_columns, split_hh_dialogue
from tests.data.helpers import FIXTURES, GENERIC_ROW, A, H, assert_located, read_jsonl, write_csv, write_jsonl

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
    assert report.skipped == [] and report.duplicates == []
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


def test_required_columns_matches_axis():
    assert required_columns("pku-saferlhf", "harmless")[-1] == "safer_response_id"
    assert required_columns("generic") == ("prompt", "chosen", "rejected")
    with pytest.raises(ValueError, match="format must be one of"):
        required_columns("hh")


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
    assert "A day on Venus is longer than its year." in multi.prompt  # earlier assistant turns stay
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


def test_pku_label_out_of_range(tmp_path):
    rows = read_jsonl(FIXTURES / "pku_saferlhf.jsonl")
    rows[1]["better_response_id"] = 2
    pairs, report = load_pairs(write_jsonl(tmp_path / "pku.jsonl", rows))
    assert len(pairs) == 3
    assert report.skipped == [(2, "better_response_id", "label must be 0 or 1, got 2")]
    assert len(load_pairs(tmp_path / "pku.jsonl", axis="harmless")[0]) == 4  # the other axis is fine


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


def test_csv_labels_arrive_as_text_and_are_checked(tmp_path):
    path = write_csv(
        tmp_path / "shp.csv",
        ["history", "human_ref_A", "human_ref_B", "labels"],
        [["h1", "a", "b", "1"], ["h2", "a", "b", "2"], ["h3", "a", "b", "0"]],
    )
    pairs, report = load_pairs(path)
    assert [(p.chosen, p.rejected) for p in pairs] == [("a", "b"), ("b", "a")]
    assert report.skipped == [(2, "labels", "label must be 0 or 1, got '2'")]


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
# Auto-detection
# --------------------------------------------------------------------------------------------

GOOD_ROWS = [
    {"prompt": f"Question {i}?", "chosen": f"Good answer {i}.", "rejected": f"Bad {i}."} for i in range(5)
]


@pytest.mark.parametrize(
    ("odd", "reason"),
    [
        (42, "expected text, got a number (42)"),
        (["a", "list"], "expected text, got a list"),
        ({"text": "an object"}, "expected text, got an object"),
        (True, "expected text, got a boolean"),
    ],
)
def test_one_odd_first_row_does_not_decide_the_format(tmp_path, odd, reason):
    """Detection reads many rows: a non-text 'chosen' in row 1 is that row's problem, not the file's."""
    rows = [{**GOOD_ROWS[0], "chosen": odd}, *GOOD_ROWS[1:]]
    pairs, report = load_pairs(write_jsonl(tmp_path / "odd.jsonl", rows))
    assert report.format == "generic"
    assert len(pairs) == 4
    assert report.skipped == [(1, "chosen", reason)]


def test_odd_first_rows_in_an_hh_file(tmp_path):
    hh = read_jsonl(FIXTURES / "hh_rlhf.jsonl")
    rows = [{**hh[0], "chosen": 7}, {**hh[1], "chosen": "no dialogue markers"}, *hh[2:]]
    pairs, report = load_pairs(write_jsonl(tmp_path / "hh.jsonl", rows))
    assert report.format == "hh-rlhf"
    assert [(s.row, s.field) for s in report.skipped] == [(1, "chosen"), (2, "chosen")]
    assert len(pairs) == len(hh) - 2


def test_chat_messages_win_over_an_odd_plain_text_row(tmp_path):
    uf = read_jsonl(FIXTURES / "ultrafeedback.jsonl")
    rows = [{**uf[0], "chosen": "plain text"}, *uf[1:]]
    pairs, report = load_pairs(write_jsonl(tmp_path / "uf.jsonl", rows))
    assert report.format == "ultrafeedback"
    assert report.skipped[0][:2] == (1, "chosen") and len(pairs) == len(uf) - 1


def test_a_column_missing_from_row_one_is_still_seen(tmp_path):
    rows = [{"chosen": "c0", "rejected": "r0"}, *GOOD_ROWS]
    pairs, report = load_pairs(write_jsonl(tmp_path / "late.jsonl", rows))
    assert report.format == "generic" and len(pairs) == 5
    assert report.skipped == [(1, "prompt", "missing in this row")]


def test_detection_votes_over_the_first_rows_only(tmp_path):
    hh = read_jsonl(FIXTURES / "hh_rlhf.jsonl")[0]
    rows = [hh] * DETECT_ROWS + [{"chosen": [{"role": "user", "content": "x"}], "rejected": []}] * (
        DETECT_ROWS + 1
    )
    _, report = load_pairs(write_jsonl(tmp_path / "long.jsonl", rows))
    assert report.format == "hh-rlhf"


def test_a_tie_between_kinds_is_not_guessed(tmp_path):
    hh = read_jsonl(FIXTURES / "hh_rlhf.jsonl")[0]
    uf = read_jsonl(FIXTURES / "ultrafeedback.jsonl")[0]
    rows = [hh, {"chosen": uf["chosen"], "rejected": uf["rejected"]}]
    with pytest.raises(DataError, match="'chosen' holds .*HH-RLHF dialogues in 1.*chat messages in 1"):
        load_pairs(write_jsonl(tmp_path / "tie.jsonl", rows))


def test_no_text_anywhere_in_chosen_is_explained(tmp_path):
    rows = [{**r, "chosen": 5} for r in GOOD_ROWS]
    with pytest.raises(
        DataError, match="'chosen' holds neither text nor lists of chat messages in the first 5 rows"
    ):
        load_pairs(write_jsonl(tmp_path / "numbers.jsonl", rows))


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


def test_missing_column_names_it_and_the_columns_present(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [{"prompt": "p", "chosen": "c", "answer": "x"}])
    with pytest.raises(DataError) as exc:
        load_pairs(path, format="generic")
    assert_located(exc.value, "data.jsonl", None, "rejected")
    assert "columns present: prompt, chosen, answer" in str(exc.value)


# --------------------------------------------------------------------------------------------
# Row checks shared by the schemas
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
    path = write_jsonl(tmp_path / "data.jsonl", [GENERIC_ROW, {**GENERIC_ROW, "chosen": "Four."}, row])
    with pytest.raises(DataError) as exc:
        load_pairs(path, format="generic", strict=True)
    assert_located(exc.value, "data.jsonl", 3, field)
    assert reason in str(exc.value)
    pairs, report = load_pairs(path, format="generic")
    assert len(pairs) == 2
    assert report.skipped == [(3, field, exc.value.reason)]
