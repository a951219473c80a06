"""Label decisions in a real SQLite store: one transaction each, conflicts, the log, the migration,
what trains afterwards and what the export writes."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from mars_core.data.pairs import PreferencePair
from mars_core.store.export import export_rows, export_run
from mars_core.store.records import LabelConflict, StoreError
from mars_core.store.schema import SCHEMA_VERSION
from mars_core.store.sqlite import EpochRecord, ParaphraseRecord, Store


def _pairs(n: int) -> list[PreferencePair]:
    return [PreferencePair(f"p{i}", f"prompt {i}", f"good {i}", f"bad {i}", source="t", gold_margin=1.0 + i)
            for i in range(n)]


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "labels.db")
    run_id = s.create_run("r", {"refine": {"review_policy": "auto"}}, "test", _pairs(4),
                          [PreferencePair("t0", "q", "a", "b")], epoch0=EpochRecord(0, {}))
    return s, run_id


def test_a_decision_is_stored_signed_and_logged(store):
    s, run = store
    got = s.decide_label(run, "p1", "swap", " ana ", score=0.91)
    assert (got.decision, got.reviewer, got.score) == ("swap", "ana", 0.91)
    again = Store(s.path).label_decisions(run)["p1"]
    assert again == got
    log = s.label_log(run)
    assert [(r["pair_id"], r["decision"], r["previous"], r["reviewer"]) for r in log] == [("p1", "swap", None, "ana")]


def test_changing_a_decision_needs_the_one_seen_and_is_logged(store):
    s, run = store
    s.decide_label(run, "p1", "unsure", "ana")
    with pytest.raises(LabelConflict, match="already marked 'unsure' by ana"):
        s.decide_label(run, "p1", "keep", "bob")  # bob loaded it undecided
    s.decide_label(run, "p1", "keep", "bob", expected="unsure")
    assert s.label_decisions(run)["p1"].reviewer == "bob"
    assert [(r["decision"], r["previous"]) for r in s.label_log(run)] == [("unsure", None), ("keep", "unsure")]


def test_bad_decisions_are_refused_and_nothing_is_written(store):
    s, run = store
    with pytest.raises(ValueError, match="keep, swap, drop, unsure"):
        s.decide_label(run, "p1", "flip", "ana")
    with pytest.raises(ValueError, match="reviewer's name"):
        s.decide_label(run, "p1", "swap", "  ")
    with pytest.raises(StoreError, match="no pair 'nope'"):
        s.decide_label(run, "nope", "swap", "ana")
    with pytest.raises(ValueError, match="not an original training pair"):
        s.decide_label(run, "t0", "swap", "ana")
    assert s.label_decisions(run) == {} and s.label_log(run) == []


def test_two_reviewers_racing_one_wins_the_other_gets_a_conflict(store):
    s, run = store
    barrier, results = threading.Barrier(2), {}

    def go(name: str, decision: str) -> None:
        mine = Store(s.path)
        barrier.wait()
        try:
            results[name] = mine.decide_label(run, "p2", decision, name)
        except LabelConflict as exc:
            results[name] = exc

    threads = [threading.Thread(target=go, args=a) for a in (("ana", "swap"), ("bob", "drop"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(type(r).__name__ for r in results.values()) == ["LabelConflict", "LabelDecision"]
    assert len(s.label_log(run)) == 1


def test_the_training_set_carries_the_corrections(store):
    s, run = store
    s.decide_label(run, "p0", "swap", "ana")
    s.decide_label(run, "p1", "drop", "ana")
    s.decide_label(run, "p2", "unsure", "ana")
    train = {p.id: p for p in s.training_pairs(run, "auto")}
    assert set(train) == {"p0", "p2", "p3"}
    assert (train["p0"].chosen, train["p0"].rejected, train["p0"].gold_margin) == ("bad 0", "good 0", -1.0)
    assert train["p2"].chosen == "good 2"
    assert s.get_pairs(run, split="train")[0].chosen == "good 0"  # the stored data is never rewritten


def _child(pid: str, parent: PreferencePair, chosen_from: str, para: str) -> tuple[PreferencePair, ParaphraseRecord]:
    record = ParaphraseRecord(para, parent.id, "chosen", 1, chosen_from, f"{chosen_from}!", "m", status="pending")
    other = parent.rejected if chosen_from == parent.chosen else parent.chosen
    pair = PreferencePair(pid, parent.prompt, f"{chosen_from}!", other, source="synthetic", parent_id=parent.id,
                          epoch_added=1, chosen_paraphrase_id=para)
    return pair, record


def test_children_follow_the_parent_unless_built_after_the_swap(store):
    s, run = store
    parent = s.get_pairs(run, split="train")[0]
    before, r1 = _child("p0.s1", parent, parent.chosen, "x1")  # built under the stored label
    after, r2 = _child("p0.s2", parent, parent.rejected, "x2")  # built while the parent trained swapped
    s.commit_epoch(run, EpochRecord(1, {}, new_pairs=[before, after], new_paraphrases=[r1, r2]))
    s.decide_label(run, "p0", "swap", "ana")
    train = {p.id: p for p in s.training_pairs(run, "auto")}
    assert train["p0.s1"].chosen == "bad 0" and train["p0.s1"].rejected == "good 0!"
    assert train["p0.s2"].chosen == "bad 0!"  # already corrected: not swapped twice
    s.decide_label(run, "p0", "keep", "bob", expected="swap")
    train = {p.id: p for p in s.training_pairs(run, "auto")}
    assert train["p0.s1"].chosen == "good 0!" and train["p0.s2"].chosen == "good 0"
    s.decide_label(run, "p0", "drop", "bob", expected="keep")
    assert not {"p0", "p0.s1", "p0.s2"} & {p.id for p in s.training_pairs(run, "auto")}


def test_export_writes_the_corrected_data_and_records_each_correction(store, tmp_path):
    s, run = store
    s.decide_label(run, "p0", "swap", "ana")
    s.decide_label(run, "p1", "drop", "bob")
    rows = {r["id"]: r for r in export_rows(s, run, "training")}
    assert set(rows) == {"p0", "p2", "p3"}
    assert (rows["p0"]["chosen"], rows["p0"]["rejected"], rows["p0"]["label_decision"]) == ("bad 0", "good 0", "swap")
    assert rows["p0"]["label_reviewer"] == "ana" and rows["p0"]["label_decided_at"].endswith("+00:00")
    assert rows["p2"]["label_decision"] is None
    everything = {r["id"]: r for r in export_rows(s, run, "all")}
    assert everything["p1"]["label_decision"] == "drop" and everything["p1"]["chosen"] == "good 1"
    assert everything["p0"]["chosen"] == "bad 0"
    n = export_run(s, run, tmp_path / "out.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert n == 3 and [r["label_decision"] for r in lines] == ["swap", None, None]


def test_a_version_1_store_opens_gains_the_tables_and_keeps_its_runs(store):
    s, run = store
    with sqlite3.connect(s.path) as con:  # make it look like a store written before label decisions existed
        con.execute("DROP TABLE label_decisions")
        con.execute("DROP TABLE label_log")
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    reopened = Store(s.path)
    assert [r.id for r in reopened.list_runs()] == [run]
    assert len(reopened.training_pairs(run, "auto")) == 4
    reopened.decide_label(run, "p3", "drop", "ana")
    with sqlite3.connect(s.path) as con:
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert int(version) == SCHEMA_VERSION == 2


def test_deleting_a_run_deletes_its_decisions(store):
    s, run = store
    s.decide_label(run, "p0", "swap", "ana")
    s.delete_run(run)
    with sqlite3.connect(s.path) as con:
        left = [con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("label_decisions", "label_log")]
    assert left == [0, 0]
