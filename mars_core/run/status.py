"""Where a stored run stands: its epoch, the budget spent and left, and why it will not step again.

One pure rule (`RunStatus.of`) used by both `RefinementRun` (before it steps) and the app's sidebar
(which must not load a model just to say "finished"), so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mars_core.run.config import RunConfig
from mars_core.run.epoch_metrics import AllocationSummary, EpochMetrics
from mars_core.store.sqlite import Store


def budget_units_spent(epoch_row: Mapping[str, Any]) -> int:
    """Kept paraphrases of one stored epoch (store.epoch_table row): the budget unit (augment/selection.py).
    Epochs stored before units were kept paraphrases count what they allocated."""
    units = EpochMetrics.from_dict(epoch_row["metrics"]).budget_units
    if units is not None:
        return int(units)
    allocation = AllocationSummary.from_dict(epoch_row["allocation"])
    return 0 if allocation is None else int(allocation.total)


@dataclass(frozen=True)
class RunStatus:
    config: RunConfig
    epoch: int  # last finished epoch; -1 when the run has none (creation was interrupted)
    budget_spent: int  # budget units (kept paraphrases) of all stored epochs
    budget_left: int
    stop_reason: str | None  # why the run will not step again, or None if it can

    @classmethod
    def of(cls, config: RunConfig, epoch: int, epoch_table: Sequence[Mapping[str, Any]]) -> RunStatus:
        """The status from the run's config, its current epoch and its stored epochs (store.epoch_table rows)."""
        refine = config.refine
        spent = sum(budget_units_spent(row) for row in epoch_table)
        left = max(0, refine.budget_total - spent)
        reason = None
        if epoch < 0:
            reason = "the run has no epoch 0"
        elif epoch >= refine.epochs:
            reason = f"reached the last epoch ({refine.epochs})"
        elif config.allocation.strategy != "none" and left == 0:
            reason = f"augmentation budget spent ({refine.budget_total} kept paraphrases)"
        elif refine.ks_threshold > 0 and epoch >= 1:
            last = next((row for row in epoch_table if row["epoch"] == epoch), None)
            ks = None if last is None else EpochMetrics.from_dict(last["metrics"]).ks_vs_previous
            if ks is not None and ks < refine.ks_threshold:
                reason = f"margins settled (KS {ks:.3f} < {refine.ks_threshold})"
        return cls(config, epoch, spent, left, reason)

    @classmethod
    def read(cls, store: Store, run_id: int) -> RunStatus:
        """A stored run's status, without loading any model."""
        config = RunConfig.from_dict(store.get_run(run_id).config)
        table = store.epoch_table(run_id)
        return cls.of(config, table[-1]["epoch"] if table else -1, table)
