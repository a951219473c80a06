"""Export: TRL-readable rows with provenance, written whole or not at all, with clear path errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mars_core.data.pairs import PreferencePair
from mars_core.store.export import export_rows, export_run, rows_to_bytes
from mars_core.store.sqlite import EpochRecord, ParaphraseRecord, Store


@pytest.fixture
def run(tmp_path) -> tuple[Store, int]:
    store = Store(tmp_path / "mars.db")
    originals = [PreferencePair(f"p{i}", f"prompt {i}", f"good {i}", f"bad {i}") for i in range(3)]
    run_id = store.create_run("r", {"refine": {"review_policy": "auto"}}, "demo", originals,
                              [PreferencePair("t0", "q", "yes", "no")])
    kept = ParaphraseRecord("e1:p0:c0", "p0", "chosen", 1, "good 0", "fine 0", "lm", 0.9)
    dropped = ParaphraseRecord("e1:p1:c0", "p1", "chosen", 1, "good 1", "nice 1", "lm", 0.9)
    new = [PreferencePair("p0~a", "prompt 0", "fine 0", "bad 0", "synthetic", "p0", 1, chosen_paraphrase_id=kept.id),
           PreferencePair("p1~a", "prompt 1", "nice 1", "bad 1", "synthetic", "p1", 1,
                          chosen_paraphrase_id=dropped.id)]
    store.commit_epoch(run_id, EpochRecord(1, {}, new_pairs=new, new_paraphrases=[kept, dropped]))
    store.decide(run_id, kept.id, "edited", "ana", edited_text="fine zero")
    store.decide(run_id, dropped.id, "rejected", "ana")
    return store, run_id


def test_training_rows_follow_review_and_carry_provenance(run):
    store, run_id = run
    rows = export_rows(store, run_id, "training")
    assert [r["id"] for r in rows] == ["p0", "p1", "p2", "p0~a"], "the rejected paraphrase's pair is left out"
    synthetic = rows[-1]
    assert synthetic["chosen"] == "fine zero", "the reviewer's edit is exported"
    assert (synthetic["parent_id"], synthetic["review_status"], synthetic["reviewer"]) == ("p0", "edited", "ana")
    assert [r["id"] for r in export_rows(store, run_id, "reviewed")] == ["p0~a"]
    assert len(export_rows(store, run_id, "all")) == 5
    assert "t0" not in {r["id"] for r in export_rows(store, run_id, "all")}, "held-out pairs are never exported"


def test_jsonl_and_csv_files_read_back(run, tmp_path):
    store, run_id = run
    assert export_run(store, run_id, tmp_path / "out" / "a.jsonl") == 4
    lines = [json.loads(x) for x in (tmp_path / "out" / "a.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [x["id"] for x in lines] == ["p0", "p1", "p2", "p0~a"]
    export_run(store, run_id, tmp_path / "a.csv")
    frame = pd.read_csv(tmp_path / "a.csv")
    assert list(frame.columns[:3]) == ["prompt", "chosen", "rejected"] and len(frame) == 4
    assert not [p for p in tmp_path.rglob("*") if "tmp" in p.name], "no temp file is left behind"


def test_an_existing_folder_is_a_clear_error_and_leaves_nothing(run, tmp_path):
    store, run_id = run
    target = tmp_path / "exports.jsonl"
    target.mkdir()
    with pytest.raises(ValueError, match=f"cannot export to {target}: it is a folder"):
        export_run(store, run_id, target)
    assert list(target.iterdir()) == [] and not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_a_path_under_a_file_names_the_file_in_the_way(run, tmp_path):
    store, run_id = run
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    target = blocker / "sub" / "a.jsonl"
    with pytest.raises(ValueError, match=f"cannot export to {target}: {blocker} is a file, not a folder"):
        export_run(store, run_id, target)
    with pytest.raises(ValueError, match="export format must be one of jsonl, csv"):
        export_run(store, run_id, tmp_path / "a.txt")
    assert sorted(p.name for p in tmp_path.iterdir() if "tmp" in p.name) == []


def test_exported_bytes_pass_through_the_redaction(monkeypatch):
    monkeypatch.setenv("MARS_OPENAI_API_KEY", "configured-key-31337")
    row = {"prompt": "Q", "chosen": "use sk-live-abcdefgh123 here", "rejected": "configured-key-31337 leaked",
           "gold_margin": 1.5}
    for fmt in ("jsonl", "csv"):
        data = rows_to_bytes([row], fmt).decode()
        assert "sk-live-abcdefgh123" not in data and "configured-key-31337" not in data
        assert data.count("[redacted]") == 2 and "1.5" in data
