"""RunStatus: one rule for the epoch, budget and stop reason, read from the store without a model."""

from __future__ import annotations

import copy

import pytest

from mars_core.run.config import DataConfig, RefineConfig, RunConfig, with_overrides
from mars_core.run.epoch_metrics import AllocationSummary, EpochMetrics, StoredRecordError
from mars_core.run.refine import RefinementRun
from mars_core.run.status import RunStatus, budget_units_spent
from mars_core.store.sqlite import Store

CONFIG = RunConfig(data=DataConfig(source="demo:toy", n_pairs=60),
                   refine=RefineConfig(cross_fit_folds=0, budget_per_epoch=10, epochs=3))


def test_the_stored_status_agrees_with_the_live_run(tmp_path):
    store = Store(tmp_path / "s.db")
    run = RefinementRun.create(store, CONFIG)
    for _ in range(3):
        stored = RunStatus.read(store, run.run_id)
        assert (stored.epoch, stored.budget_spent, stored.budget_left, stored.stop_reason) == (
            run.epoch, run.budget_spent(), run.budget_left(), run.stop_reason())
        run.step()
    stored = RunStatus.read(store, run.run_id)
    assert stored.epoch == 3 and stored.budget_spent == 30 and stored.budget_left == 0
    assert stored.stop_reason == run.stop_reason() == "reached the last epoch (3)"


@pytest.fixture(scope="module")
def stored_epochs(tmp_path_factory) -> list[dict]:
    """Three real stored epochs (0, 1, 2) of a toy run that kept 10 paraphrases per Step."""
    store = Store(tmp_path_factory.mktemp("status") / "s.db")
    run = RefinementRun.create(store, CONFIG)
    run.step()
    run.step()
    return store.epoch_table(run.run_id)


def test_stop_rules_in_their_order_on_real_stored_epochs(stored_epochs):
    table = stored_epochs
    kept = [row["metrics"]["paraphrases_kept"] for row in table]
    assert kept == [0, 10, 10]
    assert RunStatus.of(CONFIG, -1, []).stop_reason == "the run has no epoch 0"
    assert RunStatus.of(CONFIG, 1, table[:2]).stop_reason is None
    assert RunStatus.of(CONFIG, 2, table).stop_reason is None, "epoch 2 of 3, 20 of 30 units spent"
    assert RunStatus.of(CONFIG, 3, table).stop_reason == "reached the last epoch (3)"
    capped = with_overrides(CONFIG, refine={"total_budget": 20})
    spent = RunStatus.of(capped, 2, table)
    assert (spent.budget_spent, spent.budget_left) == (20, 0)
    assert spent.stop_reason == "augmentation budget spent (20 kept paraphrases)"
    none = with_overrides(capped, allocation={"strategy": "none"})
    assert RunStatus.of(none, 2, table).stop_reason is None, "strategy none needs no budget"
    ks = table[2]["metrics"]["ks_vs_previous"]
    assert 0 < ks < 1
    settled = with_overrides(CONFIG, refine={"ks_threshold": ks + 1e-6})
    assert RunStatus.of(settled, 2, table).stop_reason == f"margins settled (KS {ks:.3f} < {ks + 1e-6})"
    assert RunStatus.of(with_overrides(CONFIG, refine={"ks_threshold": ks}), 2, table).stop_reason is None


def test_epochs_stored_before_units_were_kept_paraphrases_count_what_they_allocated(stored_epochs):
    legacy = copy.deepcopy(stored_epochs)
    for row in legacy:
        del row["metrics"]["paraphrases_kept"]
        if row["allocation"]:
            row["allocation"]["total"] = 12  # allocated 12, kept 10
    assert [budget_units_spent(row) for row in legacy] == [0, 12, 12]
    assert RunStatus.of(CONFIG, 2, legacy).budget_spent == 24


def test_a_renamed_or_missing_metric_key_fails_loudly(stored_epochs):
    renamed = copy.deepcopy(stored_epochs[1])
    renamed["metrics"]["kept_paraphrases"] = renamed["metrics"].pop("paraphrases_kept")
    with pytest.raises(StoredRecordError, match="does not know: kept_paraphrases"):
        RunStatus.of(CONFIG, 1, [stored_epochs[0], renamed])
    lost = copy.deepcopy(stored_epochs[1])
    del lost["metrics"]["fit_loss"]
    with pytest.raises(StoredRecordError, match="lack fit_loss"):
        EpochMetrics.from_dict(lost["metrics"])
    odd = copy.deepcopy(stored_epochs[1])
    odd["allocation"]["budget_total"] = odd["allocation"].pop("total")
    with pytest.raises(StoredRecordError, match="budget_total"):
        AllocationSummary.from_dict(odd["allocation"])


def test_stored_records_read_back_as_they_were_written(stored_epochs):
    for row in stored_epochs:
        metrics = EpochMetrics.from_dict(row["metrics"])
        assert metrics.to_dict() == row["metrics"] and metrics.absent == frozenset()
        allocation = AllocationSummary.from_dict(row["allocation"])
        assert (allocation is None) == (row["epoch"] == 0)
        if allocation is not None:
            assert allocation.to_dict() == row["allocation"] and allocation.total == 10
