"""Where a run's pairs come from: demo suites, a split file, or a file plus a separate held-out file."""

from __future__ import annotations

import csv
import json

import pytest

from mars_core.run.config import DataConfig
from mars_core.run.sources import TEST_ID_PREFIX, load_source, write_problems


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def generic_rows(n: int, start: int = 0, prompt: str = "question") -> list[dict]:
    return [{"prompt": f"{prompt} {i}", "chosen": f"a good answer {i}", "rejected": f"a poor answer {i}"}
            for i in range(start, start + n)]


def test_demo_suites_are_split_by_the_seeded_fraction():
    data = load_source(DataConfig(source="demo:toy", n_pairs=50, seed=1, test_fraction=0.2))
    assert len(data.train) + len(data.test) == 50 and len(data.test) == 10
    assert not {p.id for p in data.train} & {p.id for p in data.test}
    assert data.reports == [] and "2-D toy (50 pairs" in data.description
    again = load_source(DataConfig(source="demo:toy", n_pairs=50, seed=1, test_fraction=0.2))
    assert [p.id for p in again.test] == [p.id for p in data.test]


def test_a_file_is_split_and_reports_its_skipped_rows(tmp_path):
    rows = generic_rows(20)
    rows[3] = {"prompt": "q", "chosen": "same", "rejected": "same"}
    data = load_source(DataConfig(source=write_jsonl(tmp_path / "pairs.jsonl", rows), seed=0))
    assert len(data.train) + len(data.test) == 19 and data.test
    (report,) = data.reports
    assert [(s.row, s.field) for s in report.skipped] == [(4, "rejected")]
    assert "1 rows skipped" in data.description


def test_test_data_holds_out_its_own_file_and_every_pair_of_data_trains(tmp_path):
    train_file = write_jsonl(tmp_path / "train.jsonl", generic_rows(12))
    (tmp_path / "held").mkdir()
    test_file = write_jsonl(tmp_path / "held" / "train.jsonl", generic_rows(5, start=10))  # same stem: same ids
    data = load_source(DataConfig(source=train_file, test_source=test_file, test_fraction=0.5))
    assert len(data.train) == 12, "with --test-data no pair of --data is held out"
    assert len(data.test) == 5
    assert all(p.id.startswith(TEST_ID_PREFIX) for p in data.test)
    assert not {p.id for p in data.train} & {p.id for p in data.test}, "ids never collide across the two files"
    assert data.test_prompts_in_train == 2  # questions 10 and 11 are in both
    assert "held out: " in data.description and "2 held-out prompts also occur in training" in data.description
    assert len(data.reports) == 2


def test_pairs_limits_the_training_file_only(tmp_path):
    train_file = write_jsonl(tmp_path / "a.jsonl", generic_rows(30))
    test_file = write_jsonl(tmp_path / "b.jsonl", generic_rows(8, start=100))
    data = load_source(DataConfig(source=train_file, test_source=test_file, n_pairs=10))
    assert (len(data.train), len(data.test)) == (10, 8)


def test_strict_stops_at_the_first_bad_row(tmp_path):
    rows = generic_rows(6)
    rows[2]["chosen"] = 42
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    assert len(load_source(DataConfig(source=path)).reports[0].skipped) == 1
    with pytest.raises(ValueError, match="row 3"):
        load_source(DataConfig(source=path, strict=True))


def test_skipped_rows_are_written_in_full(tmp_path):
    rows = generic_rows(10)
    for i in (1, 4, 7):
        rows[i]["rejected"] = rows[i]["chosen"]
    data = load_source(DataConfig(source=write_jsonl(tmp_path / "p.jsonl", rows)))
    out = write_problems(data.reports[0], tmp_path / "out")
    assert out == tmp_path / "out" / "p.jsonl.problems.csv"
    with out.open(encoding="utf-8") as handle:
        got = list(csv.DictReader(handle))
    assert [int(r["row"]) for r in got] == [2, 5, 8]
    assert all(r["field"] == "rejected" and r["reason"] for r in got)
