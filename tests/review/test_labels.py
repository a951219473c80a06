"""Label review on real toy runs in a real SQLite store: scores from stored out-of-fold margins, decisions,
and what the next Step trains on afterwards."""

from __future__ import annotations

import numpy as np
import pytest

from mars_core.analysis.label_errors import apply_label_decisions, label_error_scores
from mars_core.augment.allocation import AllocationConfig
from mars_core.cli.main import main as cli
from mars_core.review import labels
from mars_core.run.components import build_reward_model
from mars_core.run.config import DataConfig, RefineConfig, RunConfig
from mars_core.run.refine import RefinementRun
from mars_core.store.sqlite import Store


def toy_run(store: Store, folds: int = 5, strategy: str = "none", noise: float = 0.2) -> RefinementRun:
    config = RunConfig(
        data=DataConfig(source="demo:toy", n_pairs=120, noise=noise),
        refine=RefineConfig(cross_fit_folds=folds, epochs=3, budget_per_epoch=16),
        allocation=AllocationConfig(strategy=strategy),
    )
    return RefinementRun.create(store, config)


@pytest.fixture
def noisy(tmp_path):
    store = Store(tmp_path / "labels.db")
    return store, toy_run(store)


def test_epoch0_scores_come_from_out_of_fold_margins_and_find_flipped_labels(noisy):
    store, run = noisy
    scores = labels.label_scores(store, run.run_id)
    assert scores is not None and scores.epoch == 0 and "5-fold" in scores.folds
    rows = store.margin_rows(run.run_id, 0, "train")
    oof = {r["pair_id"]: r["alloc_margin"] for r in rows}
    in_sample = {r["pair_id"]: r["margin"] for r in rows}
    frame = scores.frame
    assert len(frame) == len(rows) and frame["rank"].tolist() == list(range(1, len(rows) + 1))
    np.testing.assert_allclose(frame["score"], label_error_scores([oof[i] for i in frame["pair_id"]]))
    assert np.all(np.diff(frame["score"]) <= 0)
    assert any(oof[i] != pytest.approx(in_sample[i]) for i in oof)  # really a different model per fold
    gold = {p.id: p.gold_margin for p in store.get_pairs(run.run_id, split="train")}
    top = frame["pair_id"].head(10)
    assert np.mean([gold[i] < 0 for i in top]) >= 0.8  # the toy's flipped labels rise to the top
    assert 0 < scores.n_flagged < len(frame)


def test_no_scores_without_cross_fitting_and_the_reason_says_so(tmp_path):
    store = Store(tmp_path / "insample.db")
    run = toy_run(store, folds=0)
    assert labels.label_scores(store, run.run_id) is None
    assert labels.suspects(store, run.run_id, top=5).empty
    assert "--folds" in labels.why_no_scores(store, run.run_id)


def test_later_epochs_score_from_their_own_cross_fitted_allocation(tmp_path):
    store = Store(tmp_path / "mars.db")
    run = toy_run(store, strategy="mars")
    run.step()
    assert labels.scored_epochs(store, run.run_id) == [0, 1]
    assert labels.label_scores(store, run.run_id).epoch == 1
    assert labels.label_scores(store, run.run_id, epoch=0).epoch == 0
    none_run = toy_run(store)
    none_run.step()  # strategy none does not cross-fit its (absent) allocation: epoch 0 stays the source
    assert labels.scored_epochs(store, none_run.run_id) == [0]


def test_decisions_are_signed_conflicts_reported_and_decided_pairs_leave_the_queue(noisy):
    store, run = noisy
    queue = labels.suspects(store, run.run_id, top=3, undecided_only=True)
    first, second = queue["pair_id"].iloc[0], queue["pair_id"].iloc[1]
    assert not labels.decide(store, run.run_id, first, "swap", "").ok
    ok = labels.decide(store, run.run_id, first, "swap", "ana", score=float(queue["score"].iloc[0]))
    assert ok.ok and ok.message == f"Swapped the label of {first}."
    late = labels.decide(store, run.run_id, first, "keep", "bob")  # bob still saw it undecided
    assert late.conflict and "already decided by ana (swap)" in late.message
    assert labels.decide(store, run.run_id, second, "unsure", "bob").ok
    assert first not in set(labels.suspects(store, run.run_id, undecided_only=True)["pair_id"])
    shown = labels.suspects(store, run.run_id, top=3)
    assert shown.set_index("pair_id").loc[first, "decision"] == "swap"
    counts = labels.progress(store, run.run_id)
    assert (counts["swap"], counts["unsure"], counts["decided"]) == (1, 1, 2)
    assert [r["reviewer"] for r in store.label_log(run.run_id)] == ["ana", "bob"]


def test_the_next_step_trains_on_the_corrected_labels(tmp_path):
    """Twin runs (same seed): the reviewer swaps the top suspect and drops the second in one of them."""
    store = Store(tmp_path / "twins.db")
    plain, corrected = toy_run(store), toy_run(store)
    top = labels.suspects(store, corrected.run_id, top=2)["pair_id"].tolist()
    assert labels.decide(store, corrected.run_id, top[0], "swap", "ana").ok
    assert labels.decide(store, corrected.run_id, top[1], "drop", "ana").ok
    out_plain, out_corrected = plain.step(), corrected.step()
    assert out_plain.metrics["pairs_trained"] - out_corrected.metrics["pairs_trained"] == 1

    # the stored epoch-1 model is exactly a fit, from epoch 0's weights, on the corrected pairs
    config = RunConfig.from_dict(store.get_run(corrected.run_id).config)
    model = build_reward_model(config, store)
    model.load_state(store.get_epoch(corrected.run_id, 0, with_model=True).model_state)
    originals = store.get_pairs(corrected.run_id, split="train")
    model.fit(apply_label_decisions(originals, {top[0]: "swap", top[1]: "drop"}))
    stored = store.get_epoch(corrected.run_id, 1, with_model=True).model_state["weights"]
    np.testing.assert_allclose(stored, model.weights, rtol=1e-5, atol=1e-6)
    assert not np.allclose(stored, store.get_epoch(plain.run_id, 1, with_model=True).model_state["weights"])

    rows = {r["pair_id"]: r["margin"] for r in store.margin_rows(corrected.run_id, 1, "train")}
    assert top[1] not in rows  # dropped: neither trained nor scored
    swapped = next(p for p in store.training_pairs(corrected.run_id, "auto") if p.id == top[0])
    assert rows[top[0]] == pytest.approx(float(model.margins([swapped])[0]), abs=1e-5)  # scored as corrected


def test_suspects_cli_prints_pair_id_then_score_and_writes_csv(noisy, tmp_path, capsys):
    store, run = noisy
    out = tmp_path / "suspects.csv"
    assert cli(["suspects", "--db", str(store.path), "--run", str(run.run_id), "--top", "4", "--csv", str(out)]) == 0
    captured = capsys.readouterr()
    lines = [line.split("\t") for line in captured.out.strip().splitlines()]
    expected = labels.suspects(store, run.run_id, top=4)
    assert [p for p, _ in lines] == expected["pair_id"].tolist()
    assert [float(s) for _, s in lines] == pytest.approx(expected["score"].tolist(), abs=1e-4)
    assert "flagged" in captured.err
    assert out.read_text().splitlines()[0].startswith("rank,pair_id,score")
    assert cli(["suspects", "--db", str(tmp_path / "missing.db"), "--run", "1"]) == 2
    assert not (tmp_path / "missing.db").exists()  # reading never creates a store
    assert cli(["suspects", "--db", str(store.path), "--run", str(run.run_id), "--top", "0"]) == 2
