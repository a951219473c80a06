"""The augmentation half of a Step: row indices across epochs, the epoch's typed metrics record."""

from __future__ import annotations

import math

from mars_core.analysis.margins import summarize_margins
from mars_core.run.config import DataConfig, RefineConfig, RunConfig
from mars_core.run.epoch_metrics import AugmentationMetrics, EpochMetrics
from mars_core.run.refine import STAGES, RefinementRun
from mars_core.run.step_augment import rows_used
from mars_core.store.sqlite import ParaphraseRecord, Store


def record(pair: str, side: str, row: int | None, kind: str = "paraphrase") -> ParaphraseRecord:
    verdicts = {"kind": kind} | ({"row": row} if row is not None else {})
    return ParaphraseRecord(id=f"{pair}{side}{row}", pair_id=pair, side=side, epoch=1, source_text="s", text="t",
                            model="m", verdicts=verdicts)


def test_rows_used_is_one_past_the_highest_row_per_response():
    records = [record("a", "chosen", 0), record("a", "chosen", 3), record("a", "rejected", 1),
               record("b", "chosen", None, kind="contrast_rewrite")]
    assert rows_used(records) == {("a", "chosen"): 4, ("a", "rejected"): 2}


def test_epoch_metrics_flatten_to_the_stored_keys():
    metrics = EpochMetrics(
        epoch=2, test=summarize_margins([0.5, -0.2]), train=summarize_margins([1.0]), pairs_trained=10,
        fit_loss=0.6, fit_iterations=3, augmentation=AugmentationMetrics(paraphrases_requested=4,
                                                                         paraphrases_generated=9, paraphrases_kept=3),
        mean_curvature=math.nan, stage_seconds={"scoring": 0.1},
    ).to_dict()
    assert metrics["test_accuracy"] == 0.5 and metrics["train_n"] == 1 and metrics["epoch"] == 2
    assert (metrics["paraphrases_requested"], metrics["paraphrases_generated"], metrics["paraphrases_kept"]) == (4, 9, 3)
    assert metrics["mean_curvature"] is None and metrics["stage_seconds"] == {"scoring": 0.1}


def test_later_epochs_ask_for_the_rows_after_those_already_used(tmp_path):
    config = RunConfig(data=DataConfig(source="demo:toy", n_pairs=40, seed=0),
                       refine=RefineConfig(epochs=2, budget_per_epoch=30, cross_fit_folds=0))
    store = Store(tmp_path / "toy.db")
    run = RefinementRun.create(store, config)
    first = run.step()
    second = run.step()
    rows: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for rec in store.get_paraphrases(run.run_id):
        rows.setdefault((rec.pair_id, rec.side), []).append((rec.epoch, rec.verdicts["row"]))
    again = [v for v in rows.values() if {e for e, _ in v} == {1, 2}]
    assert again, "some responses were picked in both epochs"
    for v in again:
        assert max(r for e, r in v if e == 1) < min(r for e, r in v if e == 2)
    for outcome in (first, second):
        m = outcome.metrics
        assert m["paraphrases_kept"] <= m["paraphrases_requested"] <= m["paraphrases_generated"]
        assert set(outcome.stage_seconds) <= set(STAGES) and "sharpening" not in outcome.stage_seconds
    assert run.budget_spent() == first.metrics["paraphrases_kept"] + second.metrics["paraphrases_kept"]
