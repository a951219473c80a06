"""RunStatus: one rule for the epoch, budget and stop reason, read from the store without a model."""

from __future__ import annotations

from mars_core.run.config import DataConfig, RefineConfig, RunConfig, with_overrides
from mars_core.run.refine import RefinementRun
from mars_core.run.status import RunStatus
from mars_core.store.sqlite import Store

CONFIG = RunConfig(data=DataConfig(source="demo:toy", n_pairs=60),
                   refine=RefineConfig(cross_fit_folds=0, budget_per_epoch=10, epochs=3))


def rows(*totals: int, ks: float | None = None) -> list[dict]:
    return [{"epoch": e, "allocation": {"total": t} if e else {}, "metrics": {"ks_vs_previous": ks if e else None}}
            for e, t in enumerate((0, *totals))]


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


def test_stop_rules_in_their_order():
    assert RunStatus.of(CONFIG, -1, []).stop_reason == "the run has no epoch 0"
    assert RunStatus.of(CONFIG, 1, rows(10)).stop_reason is None
    capped = with_overrides(CONFIG, refine={"total_budget": 15})
    spent = RunStatus.of(capped, 2, rows(10, 5))
    assert (spent.budget_spent, spent.budget_left) == (15, 0)
    assert spent.stop_reason == "augmentation budget spent (15 kept paraphrases)"
    none = with_overrides(capped, allocation={"strategy": "none"})
    assert RunStatus.of(none, 2, rows(10, 5)).stop_reason is None, "strategy none needs no budget"
    settled = with_overrides(CONFIG, refine={"ks_threshold": 0.1})
    assert RunStatus.of(settled, 1, rows(10, ks=0.05)).stop_reason == "margins settled (KS 0.050 < 0.1)"
    assert RunStatus.of(settled, 1, rows(10, ks=0.2)).stop_reason is None
