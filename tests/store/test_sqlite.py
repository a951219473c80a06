"""The SQLite store: round trips, review conflicts, training-set policy, and crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from mars_core.data.pairs import PreferencePair
from mars_core.store.locks import new_owner
from mars_core.store.sqlite import (
    EpochRecord,
    MarginRow,
    ParaphraseRecord,
    ReviewConflict,
    RunDeleted,
    Store,
    StoreError,
)


def _pairs(n: int, prefix: str = "p") -> list[PreferencePair]:
    return [PreferencePair(f"{prefix}{i}", f"prompt {i}", f"good {i}", f"bad {i}", gold_margin=float(i)) for i in range(n)]


def _epoch(epoch: int, parent: PreferencePair) -> EpochRecord:
    para_c = ParaphraseRecord(f"e{epoch}:{parent.id}:c0", parent.id, "chosen", epoch, parent.chosen,
                              f"fine {parent.id}", "toy", 0.9, {"reasons": []})
    para_r = ParaphraseRecord(f"e{epoch}:{parent.id}:r0", parent.id, "rejected", epoch, parent.rejected,
                              f"poor {parent.id}", "toy", 0.9, {"reasons": []})
    new = [
        PreferencePair(f"{parent.id}~e{epoch}~a", parent.prompt, para_c.text, parent.rejected, "synthetic",
                       parent.id, epoch, chosen_paraphrase_id=para_c.id),
        PreferencePair(f"{parent.id}~e{epoch}~b", parent.prompt, parent.chosen, para_r.text, "synthetic",
                       parent.id, epoch, rejected_paraphrase_id=para_r.id),
    ]
    margins = [MarginRow(f"p{i}", "train", 0.1 * i, 0.2, 0.25, 1, 0.01) for i in range(4)]
    return EpochRecord(epoch, {"accuracy": 0.5 + epoch / 10}, {"strategy": "mars"}, {"trace": 1.0},
                       {"w": np.arange(3, dtype=np.float32)}, margins, new, [para_c, para_r], 1.5)


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "mars.db")


def test_a_page_of_pairs_and_its_margins_are_read_without_the_rest(store):
    run = store.create_run("big", {}, "toy", _pairs(12_000), _pairs(3, "t"))
    store.commit_epoch(run, _epoch(1, _pairs(1)[0]))
    assert store.count_pairs(run, split="train", synthetic=False) == 12_000
    assert store.count_pairs(run, split="train") == 12_002  # synthetic pairs are training pairs too
    assert store.count_pairs(run, split="train", synthetic=True) == 2
    assert [p.id for p in store.get_pairs(run, split="train", offset=9_998, limit=3)] == ["p9998", "p9999", "p10000"]
    many = [f"p{i}" for i in range(0, 12_000, 1)][::-1]  # more ids than one IN (...) may hold
    assert {p.id for p in store.get_pairs(run, split="train", synthetic=False, ids=many)} == set(many)
    with pytest.raises(ValueError, match="not supported"):
        store.get_pairs(run, ids=many, limit=5)
    assert [p.id for p in store.get_pairs(run, ids=["p7", "t1", "nope"])] == ["p7", "t1"]
    assert store.pair_margins(run, 1, ["p2", "p3", "t0"]) == pytest.approx({"p2": 0.2, "p3": 0.30000000000000004})
    assert store.margins_complete(run, 1, "train", "alloc_margin")
    assert not store.margins_complete(run, 1, "test", "alloc_margin")  # no test rows stored at epoch 1
    with pytest.raises(ValueError, match="not a margins column"):
        store.margins_complete(run, 1, "train", "margin; DROP TABLE pairs")


def test_run_and_pairs_round_trip(store):
    from dataclasses import fields

    from mars_core.store.sqlite import PAIR_COLUMNS

    assert [c.strip() for c in PAIR_COLUMNS.split(",")] == ["pair_id", *[f.name for f in fields(PreferencePair)][1:]]
    run = store.create_run("demo", {"tau": 2.0}, "demo:text", _pairs(4), _pairs(2, "t"))
    assert store.get_run(run).config == {"tau": 2.0}
    assert [p.id for p in store.get_pairs(run, split="train")] == ["p0", "p1", "p2", "p3"]
    assert store.get_pairs(run, split="test")[1] == _pairs(2, "t")[1]
    assert store.list_runs()[0].name == "demo"
    with pytest.raises(StoreError, match="no run with id 99"):
        store.get_run(99)


def test_epoch_round_trip_and_model_state(store):
    run = store.create_run("demo", {}, "demo", _pairs(4), [])
    store.commit_epoch(run, _epoch(1, _pairs(1)[0]))
    got = store.get_epoch(run, 1, with_model=True)
    assert got.metrics["accuracy"] == pytest.approx(0.6)
    np.testing.assert_array_equal(got.model_state["w"], np.arange(3))
    assert len(store.margin_rows(run, epoch=1)) == 4
    assert len(store.get_pairs(run, synthetic=True)) == 2
    with pytest.raises(StoreError, match="already has epoch 1"):
        store.commit_epoch(run, _epoch(1, _pairs(1)[0]))


def test_review_decisions_and_conflicts(store):
    run = store.create_run("demo", {}, "demo", _pairs(2), [])
    store.commit_epoch(run, _epoch(1, _pairs(1)[0]))
    pid = "e1:p0:c0"
    decided = store.decide(run, pid, "edited", "ana", edited_text="a better text")
    assert (decided.status, decided.reviewer, decided.final_text) == ("edited", "ana", "a better text")
    with pytest.raises(ReviewConflict, match="already marked 'edited' by ana"):
        store.decide(run, pid, "rejected", "bob")
    assert store.get_paraphrase(run, pid).status == "edited"
    with pytest.raises(ValueError, match="reviewer"):
        store.decide(run, "e1:p0:r0", "accepted", "  ")
    assert store.review_counts(run)["edited"] == 1
    assert [entry["reviewer"] for entry in store.review_log(run)] == ["ana"]


def test_two_reviewers_racing_on_one_item_one_wins(store):
    run = store.create_run("demo", {}, "demo", _pairs(2), [])
    store.commit_epoch(run, _epoch(1, _pairs(1)[0]))
    outcomes: list[str] = []

    def review(name: str) -> None:
        try:
            store.decide(run, "e1:p0:c0", "accepted" if name == "a" else "rejected", name)
            outcomes.append("won")
        except ReviewConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=review, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "won"]


def test_training_pairs_follow_review_policy(store):
    run = store.create_run("demo", {}, "demo", _pairs(2), [])
    store.commit_epoch(run, _epoch(1, _pairs(1)[0]))
    assert len(store.training_pairs(run, "auto")) == 4  # pending paraphrases train in auto mode
    assert len(store.training_pairs(run, "gated")) == 2  # nothing accepted yet
    store.decide(run, "e1:p0:c0", "rejected", "ana")
    store.decide(run, "e1:p0:r0", "edited", "ana", edited_text="edited bad")
    auto = store.training_pairs(run, "auto")
    assert [p.id for p in auto] == ["p0", "p1", "p0~e1~b"]
    assert auto[-1].rejected == "edited bad"
    assert [p.id for p in store.training_pairs(run, "gated")] == ["p0", "p1", "p0~e1~b"]


def test_step_lock_is_exclusive_until_released(store):
    run = store.create_run("demo", {}, "demo", _pairs(1), [])
    assert store.acquire_step_lock(run, "tab-1")
    assert not store.acquire_step_lock(run, "tab-2")
    store.release_step_lock(run, "tab-1")
    assert store.acquire_step_lock(run, "tab-2")
    assert store.step_lock_owner(run) == "tab-2"


def test_caches_round_trip(store):
    vectors = {"k1": np.ones(4, dtype=np.float32), "k2": np.zeros(4, dtype=np.float32)}
    store.put_features(vectors)
    got = store.get_features(["k1", "k2", "missing"])
    assert set(got) == {"k1", "k2"}
    np.testing.assert_array_equal(got["k1"], vectors["k1"])
    assert store.get("g") is None
    store.put("g", ["a", "b"])
    assert store.get("g") == ["a", "b"]


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_text("this is not sqlite, just text" * 100)
    with pytest.raises(StoreError, match="notes.db is not a MARS store"):
        Store(bad)


_CHILD = textwrap.dedent(
    """
    import sys, time
    from mars_core.store.sqlite import Store
    from tests.store.test_sqlite import _epoch, _pairs

    store = Store(sys.argv[1])
    run = store.list_runs()[0].id

    def hang_inside_transaction():
        print("inside", flush=True)
        time.sleep(60)

    store.commit_epoch(run, _epoch(2, _pairs(2)[1]), before_commit=hang_inside_transaction)
    """
)


def test_sigkill_while_writing_an_epoch_keeps_whole_epochs_only(tmp_path):
    path = tmp_path / "crash.db"
    store = Store(path)
    run = store.create_run("demo", {}, "demo", _pairs(4), [])
    store.commit_epoch(run, _epoch(1, _pairs(1)[0]))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)], cwd=root, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": root},
    )
    try:
        assert child.stdout.readline().strip() == "inside"  # epoch 2 is written but not committed
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    reopened = Store(path)
    assert reopened.epochs(run) == [1]
    assert reopened.get_epoch(run, 1).metrics["accuracy"] == pytest.approx(0.6)
    assert {m["epoch"] for m in reopened.margin_rows(run)} == {1}
    assert len(reopened.get_pairs(run, synthetic=True)) == 2  # epoch 1's pairs only
    assert len(reopened.get_paraphrases(run)) == 2
    reopened.commit_epoch(run, _epoch(2, _pairs(2)[1]))  # and the store is writable again
    assert reopened.epochs(run) == [1, 2]


def test_a_run_and_its_epoch_0_are_stored_together_or_not_at_all(store):
    def fail() -> None:
        raise RuntimeError("killed while creating")

    with pytest.raises(RuntimeError, match="killed while creating"):
        store.create_run("half", {}, "demo", _pairs(4), _pairs(1, "t"), epoch0=_epoch(0, _pairs(1)[0]),
                         before_commit=fail)
    assert store.list_runs() == []
    run = store.create_run("whole", {}, "demo", _pairs(4), _pairs(1, "t"), epoch0=_epoch(0, _pairs(1)[0]))
    assert store.epochs(run) == [0] and len(store.get_pairs(run, split="test")) == 1


def test_delete_run_removes_everything_of_that_run_only(store):
    keep = store.create_run("keep", {}, "demo", _pairs(2), [])
    store.commit_epoch(keep, _epoch(1, _pairs(1)[0]))
    gone = store.create_run("gone", {}, "demo", _pairs(4), _pairs(1, "t"))
    store.commit_epoch(gone, _epoch(1, _pairs(1)[0]))
    store.decide(gone, "e1:p0:c0", "accepted", "ana")
    store.put_features({"k": np.ones(3)})
    store.delete_run(gone)
    assert [r.id for r in store.list_runs()] == [keep]
    assert store.get_pairs(gone) == [] and store.margin_rows(gone) == [] and store.get_paraphrases(gone) == []
    assert store.review_log(gone) == [] and store.epochs(gone) == []
    assert store.epochs(keep) == [1] and len(store.get_paraphrases(keep)) == 2, "the other run is untouched"
    assert "k" in store.get_features(["k"]), "shared caches stay"
    with pytest.raises(StoreError, match=f"no run with id {gone}"):
        store.delete_run(gone)


def test_delete_run_waits_for_a_live_step_unless_forced(store):
    run = store.create_run("r", {}, "demo", _pairs(2), [])
    owner = new_owner()
    assert store.acquire_step_lock(run, owner)
    with pytest.raises(StoreError, match=f"run {run} is being stepped by {owner}"):
        store.delete_run(run)
    store.delete_run(run, force=True)
    assert store.list_runs() == []


def test_a_store_under_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=f"cannot create the store {blocker / 'a' / 'm.db'}: {blocker} is a file"):
        Store(blocker / "a" / "m.db")


def test_an_epoch_committed_after_its_run_was_deleted_raises_run_deleted(store):
    run_id = store.create_run("r", {}, "demo", _pairs(4), _pairs(2, "t"), epoch0=EpochRecord(0, {}))
    owner = new_owner()
    assert store.acquire_step_lock(run_id, owner)
    store.delete_run(run_id, force=True)  # what `delete --force` does under a live stepper
    with pytest.raises(RunDeleted, match=f"run {run_id} was deleted from .* while epoch 1 was being computed"):
        store.commit_epoch(run_id, _epoch(1, _pairs(1)[0]))
    assert isinstance(RunDeleted("x"), StoreError)
    store.release_step_lock(run_id, owner)  # a no-op, not an error
    assert store.list_runs() == []


def test_a_stored_config_can_be_updated_and_a_read_only_store_refuses_writes(store):
    run_id = store.create_run("r", {"refine": {"epochs": 1}}, "demo", _pairs(4), [], epoch0=EpochRecord(0, {}))
    store.update_run_config(run_id, {"refine": {"epochs": 3}})
    reader = Store(store.path, read_only=True)
    assert reader.get_run(run_id).config == {"refine": {"epochs": 3}}
    with pytest.raises(Exception, match="readonly"):
        reader.update_run_config(run_id, {})
    with pytest.raises(StoreError, match="no run with id 99"):
        store.update_run_config(99, {})
