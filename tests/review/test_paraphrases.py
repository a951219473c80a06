"""Review of generated paraphrases on real toy runs in a real SQLite store (milliseconds per step)."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pandas as pd
import pytest

from mars_core.augment.filters import refusal_polarity
from mars_core.data.toy import format_toy_vector, parse_toy_vector
from mars_core.review import paraphrases as review
from mars_core.run.config import DataConfig, RefineConfig, RunConfig
from mars_core.run.refine import RefinementRun
from mars_core.store.sqlite import EpochRecord, ParaphraseRecord, Store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def toy_run(store: Store, policy: str = "auto", budget: int = 48) -> RefinementRun:
    config = RunConfig(
        data=DataConfig(source="demo:toy", n_pairs=100),
        refine=RefineConfig(cross_fit_folds=0, review_policy=policy, budget_per_epoch=budget, epochs=3),
    )
    return RefinementRun.create(store, config)


@pytest.fixture
def stepped(tmp_path):
    """A toy run after one refinement epoch: its paraphrases wait for review."""
    store = Store(tmp_path / "review.db")
    run = toy_run(store)
    run.step()
    return store, run


def moved(text: str, direction: np.ndarray, step: float) -> str:
    return format_toy_vector(parse_toy_vector(text) + step * direction)


# -- reward shift ----------------------------------------------------------------------------------
def test_reward_shift_follows_the_reward_direction_and_the_side(tmp_path):
    store = Store(tmp_path / "r.db")
    run = toy_run(store)
    model = review.load_reward_model(store, run.run_id)
    w = model.weights.astype(float)
    up = w / np.linalg.norm(w)
    pair = store.get_pairs(run.run_id, split="train")[0]
    records = [
        ParaphraseRecord("a", pair.id, "chosen", 1, pair.chosen, moved(pair.chosen, up, 0.3), "m"),
        ParaphraseRecord("b", pair.id, "rejected", 1, pair.rejected, moved(pair.rejected, up, 0.3), "m"),
        ParaphraseRecord("c", pair.id, "chosen", 1, pair.chosen, moved(pair.chosen, up, -0.3), "m"),
    ]
    out = review.reward_shift(model, records, {pair.id: pair.prompt})
    expected = 0.3 * np.linalg.norm(w)  # r = wᵀφ: moving φ by t·w/|w| moves r by t·|w|
    assert out["reward_shift"].tolist() == pytest.approx([expected, expected, -expected], abs=1e-3)
    # a better rejected response shrinks the margin: towards a flipped label
    assert out["margin_shift"].tolist() == pytest.approx([expected, -expected, -expected], abs=1e-3)
    base = model.rewards([pair.prompt], [pair.chosen])[0]
    assert out["reward_original"][0] == pytest.approx(base)
    with pytest.raises(KeyError, match="no prompt"):
        review.reward_shift(model, records, {})


def test_edited_text_is_what_the_shift_measures(tmp_path):
    store = Store(tmp_path / "r.db")
    run = toy_run(store)
    model = review.load_reward_model(store, run.run_id)
    up = model.weights / np.linalg.norm(model.weights)
    pair = store.get_pairs(run.run_id, split="train")[0]
    rec = ParaphraseRecord("a", pair.id, "chosen", 1, pair.chosen, moved(pair.chosen, up, 0.3), "m",
                           status="edited", edited_text=pair.chosen)
    assert review.reward_shift(model, [rec], {pair.id: pair.prompt})["reward_shift"][0] == pytest.approx(0.0)


# -- the queue -------------------------------------------------------------------------------------
def test_queue_joins_each_paraphrase_with_its_pair_and_margin(stepped):
    store, run = stepped
    queue = review.review_queue(store, run.run_id)
    records = store.get_paraphrases(run.run_id, status="pending")
    assert len(queue) == len(records) > 0
    model = review.load_reward_model(store, run.run_id)
    pairs = {p.id: p for p in store.get_pairs(run.run_id, split="train", synthetic=False)}
    for row in queue.itertuples():
        pair = pairs[row.pair_id]
        assert row.prompt == pair.prompt
        assert row.original == (pair.chosen if row.side == "chosen" else pair.rejected)
        assert row.other_response == (pair.rejected if row.side == "chosen" else pair.chosen)
        assert row.margin == pytest.approx(float(model.margins([pair])[0]), abs=1e-6)
        assert row.margin_after == pytest.approx(row.margin + row.margin_shift)
    # the reward model is the last epoch's: the one the next step allocates with
    np.testing.assert_array_equal(model.weights, run.runtime.model.weights)


def test_the_stored_margins_scale_gives_the_queue_that_scoring_every_pair_gives(stepped):
    """The app passes the median |Δ| stored with the model's epoch instead of rescoring every pair."""
    store, run = stepped
    full = review.review_queue(store, run.run_id)
    stored = [r["margin"] for r in store.margin_rows(run.run_id, store.last_epoch(run.run_id), "train")]
    fast = review.review_queue(store, run.run_id, typical_margin=float(np.median(np.abs(stored))))
    assert fast["id"].tolist() == full["id"].tolist()
    for column in ("margin", "margin_after", "shift_score", "suspicion"):
        assert fast[column].tolist() == pytest.approx(full[column].tolist(), abs=1e-5)


def _hand_made_epoch(tmp_path):
    """A toy run plus an epoch of hand-written candidates, each suspicious in one known way."""
    store = Store(tmp_path / "q.db")
    run = toy_run(store)
    model = review.load_reward_model(store, run.run_id)
    w = model.weights.astype(float)
    up, across = w / np.linalg.norm(w), np.array([-w[1], w[0]]) / np.linalg.norm(w)
    pairs = store.get_pairs(run.run_id, split="train")
    specs = [  # (name, similarity, polarity source -> candidate, step along w, side)
        ("copy", 0.99, ("neutral", "neutral"), 0.0, "chosen"),
        ("low_sim", 0.76, ("neutral", "neutral"), 0.0, "chosen"),
        ("flip", 0.95, ("refusal", "compliance"), 0.0, "chosen"),
        ("cue_lost", 0.95, ("refusal", "neutral"), 0.0, "chosen"),
        ("big_shift", 0.97, ("neutral", "neutral"), -0.6, "rejected"),
        ("unmeasured", None, (None, None), 0.0, "chosen"),
        ("sinks", 0.97, ("neutral", "neutral"), None, "chosen"),  # moved just past the decision boundary
    ]
    records = []
    for (name, sim, (pol_s, pol_c), step, side), pair in zip(specs, pairs, strict=False):
        source = pair.chosen if side == "chosen" else pair.rejected
        if step is None:
            margin = float(model.margins([pair])[0])
            step = -np.sign(margin) * (abs(margin) / np.linalg.norm(w) + 0.1)
        text = moved(moved(source, across, 0.01), up, step)  # a small move the reward ignores, plus `step`
        verdicts = {"reasons": [], "polarity_source": pol_s, "polarity_candidate": pol_c} if pol_s else {}
        records.append(ParaphraseRecord(name, pair.id, side, 1, source, text, "hand", sim, verdicts))
    state = store.get_epoch(run.run_id, 0, with_model=True).model_state
    store.commit_epoch(run.run_id, EpochRecord(1, metrics={}, model_state=state, new_paraphrases=records))
    return store, run


def test_suspicious_order_puts_flips_and_big_changes_first(tmp_path):
    store, run = _hand_made_epoch(tmp_path)
    queue = review.review_queue(store, run.run_id, order="suspicious")
    ids = queue["id"].tolist()
    assert ids[0] == "flip"
    assert ids.index("cue_lost") < ids.index("copy")
    assert ids.index("low_sim") < ids.index("copy")
    assert ids.index("big_shift") < ids.index("copy")
    assert set(ids[-2:]) == {"copy", "unmeasured"}
    flips = queue.set_index("id")["flips_margin"]
    assert flips["sinks"] and not flips.drop("sinks").any()
    assert queue["suspicion"].is_monotonic_decreasing
    parts = queue[["polarity_score", "dissimilarity_score", "shift_score"]]
    assert queue["suspicion"].tolist() == pytest.approx(parts.sum(axis=1).tolist())
    assert ((parts >= 0) & (parts <= 1)).all().all()
    row = queue.set_index("id").loc["big_shift"]
    assert row["margin_shift"] > 0  # a worse rejected response widens the margin ...
    assert row["shift_score"] > queue.set_index("id").loc["copy", "shift_score"]  # ... and still counts
    oldest = review.review_queue(store, run.run_id, order="oldest")["id"].tolist()
    assert oldest == ["copy", "low_sim", "flip", "cue_lost", "big_shift", "unmeasured", "sinks"]
    with pytest.raises(ValueError, match="order must be one of"):
        review.review_queue(store, run.run_id, order="random")


def test_polarity_term_reads_the_filter_verdicts_and_counts_negations():
    assert review.polarity_score("refusal", "compliance") == 1.0
    assert review.polarity_score("compliance", "refusal") == 1.0
    assert review.polarity_score("refusal", "neutral") == 0.5
    assert review.polarity_score("neutral", "neutral", "I can't help.", "I cannot help.") == 0.0
    assert review.polarity_score(None, None, "I won't do that.", "I will not do that.") == 0.0
    assert review.polarity_score(None, None, "I don't know.", "I know.") == 0.5
    # found on the text demo: a dropped "not" slipped past the lexicon, which reads both texts alike
    source = "Absolutely not, are you serious? I'm not able to assist with writing a phishing message."
    paraphrase = "Absolutely not, are you serious? I'm able to assist with writing a phishing message."
    verdicts = refusal_polarity(source), refusal_polarity(paraphrase)
    assert review.polarity_score(*verdicts, source, paraphrase) >= 0.5


def test_similarity_and_side_filters(tmp_path):
    store, run = _hand_made_epoch(tmp_path)
    ids = lambda **kw: set(review.review_queue(store, run.run_id, **kw)["id"])  # noqa: E731
    assert ids(min_similarity=0.9) == {"copy", "flip", "cue_lost", "big_shift", "sinks"}  # not "unmeasured"
    assert ids(max_similarity=0.8) == {"low_sim"}
    assert ids(min_similarity=0.9, max_similarity=0.96) == {"flip", "cue_lost"}
    assert ids(side="rejected") == {"big_shift"}
    assert len(ids()) == 7
    assert ids(status=("accepted",)) == set()


def test_status_epoch_and_margin_filters_on_a_stepped_run(stepped):
    store, run = stepped
    run.step()
    first = review.review_queue(store, run.run_id, epoch=1)
    second = review.review_queue(store, run.run_id, epoch=2)
    assert set(first["epoch"]) == {1} and set(second["epoch"]) == {2}
    assert len(review.review_queue(store, run.run_id)) == len(first) + len(second)
    accepted = first["id"].iloc[:3].tolist()
    for pid in accepted:
        assert review.accept(store, run.run_id, pid, "ana").ok
    pending = review.review_queue(store, run.run_id, epoch=1)
    assert not set(accepted) & set(pending["id"])
    assert set(review.review_queue(store, run.run_id, status=("accepted", "edited"))["id"]) == set(accepted)
    everything = review.review_queue(store, run.run_id, status=("pending", "accepted"))
    lo, hi = np.quantile(everything["margin"], [0.25, 0.75])
    within = review.review_queue(store, run.run_id, status=("pending", "accepted"), margin_range=(lo, hi))
    assert 0 < len(within) < len(everything)
    inside = (everything["margin"] >= lo) & (everything["margin"] <= hi)
    assert set(within["id"]) == set(everything["id"][inside])
    assert len(review.review_queue(store, run.run_id, side="rejected")) > 0  # count ≥ 2: y− too


def test_progress_counts(stepped):
    store, run = stepped
    total = len(store.get_paraphrases(run.run_id, status="pending"))
    ids = [p.id for p in store.get_paraphrases(run.run_id, status="pending")]  # filtered ones cannot be decided
    assert review.accept(store, run.run_id, ids[0], "ana").ok
    assert review.reject(store, run.run_id, ids[1], "ana").ok
    counts = review.progress_counts(store, run.run_id)
    assert [counts[s] for s in ("pending", "accepted", "rejected", "edited")] == [total - 2, 1, 1, 0]
    assert counts["reviewable"] == total and counts["decided"] == 2
    assert counts["fraction_decided"] == pytest.approx(2 / total)


# -- decisions -------------------------------------------------------------------------------------
def test_a_decision_needs_a_name_and_an_edit_needs_a_usable_text(stepped):
    store, run = stepped
    pid = store.get_paraphrases(run.run_id, status="pending")[0].id
    nameless = review.accept(store, run.run_id, pid, "  ")
    assert not nameless.ok and "name" in nameless.message
    generated = store.get_paraphrase(run.run_id, pid).text
    same = review.edit(store, run.run_id, pid, "ana", generated + "  ")
    assert not same.ok and "use Accept" in same.message
    prose = review.edit(store, run.run_id, pid, "ana", "a nicer sentence")
    assert not prose.ok and "toy vectors" in prose.message  # it would crash the next step's featurizer
    wrong_dim = review.edit(store, run.run_id, pid, "ana", "φ=[0.1, 0.2, 0.3]")
    assert not wrong_dim.ok and "2-d" in wrong_dim.message
    assert store.get_paraphrase(run.run_id, pid).status == "pending"
    assert store.review_log(run.run_id) == []
    assert review.skip(pid).ok and store.get_paraphrase(run.run_id, pid).status == "pending"


def test_edit_is_stored_beside_the_generated_text_and_trains(stepped):
    store, run = stepped
    rec = store.get_paraphrases(run.run_id, side="chosen")[0]
    new_text = moved(rec.text, np.array([1.0, 0.0]), 0.05)
    outcome = review.edit(store, run.run_id, rec.id, "ana", new_text)
    assert outcome.ok, outcome.message
    stored = store.get_paraphrase(run.run_id, rec.id)
    assert (stored.status, stored.text, stored.edited_text) == ("edited", rec.text, new_text)
    assert stored.reviewer == "ana"
    trained = [p for p in store.training_pairs(run.run_id, "auto") if p.chosen_paraphrase_id == rec.id]
    assert trained and all(p.chosen == new_text for p in trained)


def test_decision_survives_a_new_store_object(stepped, tmp_path):
    store, run = stepped
    pid = store.get_paraphrases(run.run_id, status="pending")[0].id
    assert review.accept(store, run.run_id, pid, "ana").ok
    reopened = Store(tmp_path / "review.db")
    got = reopened.get_paraphrase(run.run_id, pid)
    assert (got.status, got.reviewer) == ("accepted", "ana") and got.reviewed_at is not None
    assert pid not in set(review.review_queue(reopened, run.run_id)["id"])


_DECIDE_THEN_HANG = textwrap.dedent(
    """
    import sys, time
    from mars_core.review import paraphrases as review
    from mars_core.store.sqlite import Store

    outcome = review.reject(Store(sys.argv[1]), int(sys.argv[2]), sys.argv[3], "kim")
    print("decided" if outcome.ok else outcome.message, flush=True)
    time.sleep(60)
    """
)


def test_decision_survives_sigkill_of_the_process_that_made_it(stepped, tmp_path):
    store, run = stepped
    pid = store.get_paraphrases(run.run_id, status="pending")[-1].id  # filtered candidates cannot be decided
    child = subprocess.Popen(
        [sys.executable, "-c", _DECIDE_THEN_HANG, str(tmp_path / "review.db"), str(run.run_id), pid],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ROOT},
    )
    try:
        assert child.stdout.readline().strip() == "decided"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    got = Store(tmp_path / "review.db").get_paraphrase(run.run_id, pid)
    assert (got.status, got.reviewer) == ("rejected", "kim")


def test_two_reviewers_racing_on_one_item_one_wins_the_other_is_told(stepped, tmp_path):
    store, run = stepped
    pid = store.get_paraphrases(run.run_id, status="pending")[0].id
    start = threading.Barrier(2)
    outcomes: dict[str, review.DecisionOutcome] = {}

    def decide(name: str, action) -> None:
        mine = Store(tmp_path / "review.db")  # each reviewer's own app session
        start.wait()
        outcomes[name] = action(mine, run.run_id, pid, name)

    reviewers = (("ana", review.accept), ("bob", review.reject))
    threads = [threading.Thread(target=decide, args=a) for a in reviewers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, o in outcomes.items() if o.ok]
    losers = [n for n, o in outcomes.items() if o.conflict]
    assert len(winners) == 1 and len(losers) == 1
    winner = winners[0]
    assert f"already decided by {winner}" in outcomes[losers[0]].message
    got = store.get_paraphrase(run.run_id, pid)
    assert got.reviewer == winner and got.status == {"ana": "accepted", "bob": "rejected"}[winner]
    assert len(store.review_log(run.run_id)) == 1


# -- the effect on training --------------------------------------------------------------------------
def _built_from(store: Store, run_id: int, paraphrase_ids: set[str]) -> set[str]:
    return {
        p.id for p in store.get_pairs(run_id, synthetic=True)
        if p.chosen_paraphrase_id in paraphrase_ids or p.rejected_paraphrase_id in paraphrase_ids
    }


def test_rejections_change_the_next_training_set_and_model(tmp_path):
    """Twin runs (same seed) differ only in the reviewer rejecting the five most suspicious paraphrases."""
    store = Store(tmp_path / "twins.db")
    kept, reviewed = toy_run(store), toy_run(store)
    kept.step()
    reviewed.step()
    texts = lambda run: [p.text for p in store.get_paraphrases(run.run_id)]  # noqa: E731
    assert texts(kept) == texts(reviewed)
    before = store.training_pairs(reviewed.run_id, "auto")
    rejected = set(review.review_queue(store, reviewed.run_id)["id"].iloc[:5])
    for pid in rejected:
        assert review.reject(store, reviewed.run_id, pid, "ana").ok
    removed = _built_from(store, reviewed.run_id, rejected)
    assert len(removed) >= len(rejected)
    after = store.training_pairs(reviewed.run_id, "auto")
    assert [p.id for p in after] == [p.id for p in before if p.id not in removed]

    out_kept, out_reviewed = kept.step(), reviewed.step()
    assert out_reviewed.metrics["pairs_trained"] == len(after) + out_reviewed.metrics["pairs_added"]
    assert out_kept.metrics["pairs_added"] == out_reviewed.metrics["pairs_added"]  # same allocating model
    assert out_kept.metrics["pairs_trained"] - out_reviewed.metrics["pairs_trained"] == len(removed)
    w_kept = store.get_epoch(kept.run_id, 2, with_model=True).model_state["weights"]
    w_reviewed = store.get_epoch(reviewed.run_id, 2, with_model=True).model_state["weights"]
    assert not np.allclose(w_kept, w_reviewed)
    assert not removed & {p.id for p in store.training_pairs(reviewed.run_id, "auto")}


def test_gated_mode_trains_only_what_a_person_accepted(tmp_path):
    store = Store(tmp_path / "gated.db")
    run = toy_run(store, policy="gated")
    run.step()
    originals = store.get_pairs(run.run_id, split="train", synthetic=False)
    assert len(store.training_pairs(run.run_id, "gated")) == len(originals)
    chosen_only = [p.id for p in store.get_paraphrases(run.run_id, side="chosen", status="pending")][:3]
    for pid in chosen_only:
        assert review.accept(store, run.run_id, pid, "ana").ok
    allowed = {
        p.id for p in store.get_pairs(run.run_id, synthetic=True)
        if {p.chosen_paraphrase_id, p.rejected_paraphrase_id} - {None} <= set(chosen_only)
    }
    assert allowed
    training = store.training_pairs(run.run_id, "gated")
    assert {p.id for p in training if p.is_synthetic} == allowed
    outcome = run.step()
    assert outcome.metrics["pairs_trained"] == len(training)  # gated: this epoch's new pairs wait for review


# -- export ----------------------------------------------------------------------------------------
def test_export_carries_review_state_and_edited_text(stepped):
    store, run = stepped
    chosen = store.get_paraphrases(run.run_id, side="chosen", status="pending")
    accepted, edited, rejected = chosen[0], chosen[1], chosen[2]
    new_text = moved(edited.text, np.array([0.0, 1.0]), 0.05)
    assert review.accept(store, run.run_id, accepted.id, "ana").ok
    assert review.edit(store, run.run_id, edited.id, "bob", new_text).ok
    assert review.reject(store, run.run_id, rejected.id, "ana").ok

    data, n = review.export_bytes(store, run.run_id, "reviewed", "jsonl")
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    assert len(rows) == n > 0
    expected = {
        p.id for p in store.get_pairs(run.run_id, synthetic=True)
        if {p.chosen_paraphrase_id, p.rejected_paraphrase_id} - {None} <= {accepted.id, edited.id}
    }
    assert {r["id"] for r in rows} == expected
    for row in rows:
        assert all(isinstance(row[k], str) and row[k] for k in ("prompt", "chosen", "rejected"))
        assert row["source"] == "synthetic" and row["epoch_added"] == 1 and row["parent_id"]
        assert row["review_status"] in ("accepted", "edited")
        assert row["reviewer"] == ("bob" if row["chosen_paraphrase_id"] == edited.id else "ana")
        assert dt.datetime.fromisoformat(row["reviewed_at"]).tzinfo is not None
        assert row["paraphrase_model"]
    edited_rows = [r for r in rows if r["chosen_paraphrase_id"] == edited.id]
    assert edited_rows and all(r["chosen"] == new_text for r in edited_rows)

    csv_data, n_csv = review.export_bytes(store, run.run_id, "reviewed", "csv")
    frame = pd.read_csv(io.BytesIO(csv_data))
    assert n_csv == n and set(frame["id"]) == expected
    assert list(frame.columns[:3]) == ["prompt", "chosen", "rejected"]
    assert set(frame.loc[frame["chosen_paraphrase_id"] == edited.id, "chosen"]) == {new_text}

    training, n_train = review.export_bytes(store, run.run_id, "training", "jsonl")
    ids = {json.loads(line)["id"] for line in training.decode("utf-8").splitlines()}
    assert n_train == len(store.training_pairs(run.run_id, "auto"))
    assert not ids & _built_from(store, run.run_id, {rejected.id})
    with pytest.raises(ValueError, match="export format must be one of jsonl, csv"):
        review.export_bytes(store, run.run_id, "reviewed", "xlsx")
