"""The small 2-D toy run the UI tests open (real runs: the toy needs no model)."""

from __future__ import annotations

from mars_core.run.config import DataConfig, RefineConfig, RunConfig

TOY_BUDGET = 40  # per epoch


def toy_config(epochs: int = 4) -> RunConfig:
    return RunConfig(data=DataConfig(source="demo:toy", n_pairs=120),
                     refine=RefineConfig(cross_fit_folds=0, budget_per_epoch=TOY_BUDGET, epochs=epochs))
