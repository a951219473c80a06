"""One colour per strategy on every page: the Budget page's what-if panels and the Compare page's figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mars_core.augment.allocation import AllocationConfig
from mars_core.present import compare_figures, figures, views
from mars_core.present.palette import STRATEGY_COLOURS, strategy_colour


def test_budget_and_compare_pages_draw_each_strategy_in_the_same_colour():
    margins = np.random.default_rng(0).normal(0.0, 1.0, 60)
    what_if, summary = views.what_if_allocations(margins, 40, AllocationConfig(tau=2.0))
    budget = figures.strategy_comparison_figure(what_if, summary)
    budget_colours = {t.name.split()[0]: t.marker.color for t in budget.data if t.name.endswith("counts")}

    sweep = pd.DataFrame({"strategy": ["mars", "uniform", "won"], "value": [1, 1, 1], "mean": [0.7, 0.6, 0.65],
                          "std": [0.01, 0.02, 0.01]})
    compare = {t.name: t.line.color for t in compare_figures.sweep_figure(sweep, "τ", "accuracy").data}
    seeds = pd.DataFrame({"strategy": ["mars", "uniform", "won"], "value": [0.7, 0.6, 0.65], "seed": [0, 0, 0]})
    boxes = {t.name: t.marker.color for t in compare_figures.distribution_figure(seeds, "accuracy").data}

    assert set(budget_colours) == {"mars", "uniform", "won"}
    assert budget_colours == compare == boxes
    assert budget_colours == {s: STRATEGY_COLOURS[s] for s in ("mars", "uniform", "won")}
    assert len(set(budget_colours.values())) == 3  # three strategies, three different colours
    assert strategy_colour("mars-new-variant") not in STRATEGY_COLOURS.values()
