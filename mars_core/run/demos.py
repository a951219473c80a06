"""The runs a fresh store gets, so the app (and `make run`) needs nothing configured."""

from __future__ import annotations

from mars_core.run.config import DataConfig, RefineConfig, RunConfig

TEXT_DEMO_NAME = "MARS on the text demo"
TOY_DEMO_NAME = "2-D toy (Teach page)"


def demo_configs() -> list[tuple[str, RunConfig]]:
    """MARS on the text demo (all defaults) and the 2-D toy for the Teach page (no model to load)."""
    toy = RunConfig(
        data=DataConfig(source="demo:toy"),
        refine=RefineConfig(epochs=6, budget_per_epoch=40, cross_fit_folds=0),
    )
    return [(TEXT_DEMO_NAME, RunConfig()), (TOY_DEMO_NAME, toy)]
