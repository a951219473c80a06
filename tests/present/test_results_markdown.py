"""Verdict rules of docs/results.md, and the report's tables read from a real (toy) comparison."""

from __future__ import annotations

from mars_core.compare.comparison import CompareSpec, run_comparison
from mars_core.present import compare_figures as cf
from mars_core.present import compare_views as cv
from mars_core.present.results_markdown import claim_rows, experiment_section, verdict
from mars_core.run.config import DataConfig, RefineConfig, RunConfig


def _d(est, low, high, mdd=0.02, n=1000, seeds=5):
    return {"estimate": est, "ci_low": low, "ci_high": high, "mdd": mdd, "n_pairs": n, "n_seeds": seeds}


def test_verdict_rules():
    assert verdict(_d(0.02, 0.005, 0.035), "test_accuracy") == "**reproduced**"
    assert verdict(_d(-0.02, -0.035, -0.005), "test_accuracy").startswith("**refuted** (the opposite")
    assert verdict(_d(0.02, 0.005, 0.035), "test_accuracy", direction=-1).startswith("**refuted**")
    # inside ± a small detectable difference: no effect of a useful size
    assert verdict(_d(0.001, -0.004, 0.006, mdd=0.007), "test_accuracy").startswith("**refuted** (no effect")
    # the same interval with a detectable difference above one point says nothing
    wide = verdict(_d(0.004, -0.01, 0.018, mdd=0.02), "test_accuracy")
    assert wide.startswith("not resolvable") and "25.0× the data" in wide
    # non-accuracy metrics never use the one-point rule
    assert verdict(_d(0.001, -0.004, 0.006, mdd=0.007), "top_eigenvalue").startswith("not resolvable")
    assert verdict(None, "test_accuracy").startswith("not resolvable")


def test_report_and_views_read_a_stored_comparison(tmp_path):
    base = RunConfig(data=DataConfig(source="demo:toy", n_pairs=300), refine=RefineConfig(epochs=1, budget_per_epoch=20))
    spec = CompareSpec(base=base, strategies=("none", "uniform", "won", "mars"), seeds=3, sweep="noise",
                       sweep_values=(0.0, 0.1), best_of_n=4)
    comparison = run_comparison(spec, tmp_path / "toy-noise")
    section = "\n".join(experiment_section("Toy noise", "python -m mars_core compare ...", comparison))
    assert "### noise = 0.1" in section and "| mars | 3 |" in section and "Best-of-N" in section
    rows = claim_rows({"toy-noise": comparison}, {"toy-noise": tmp_path / "toy-noise"})
    assert len(rows) == 1 and rows[0].startswith("| less damage under 10% flipped labels | 2-D toy |")
    table = cv.strategy_table(comparison, "test_accuracy", 0.1)
    assert list(table["strategy"]) == ["none", "uniform", "won", "mars"]
    frame = cv.sweep_frame(comparison)
    assert len(frame) == 2 * 4
    fig = cf.sweep_figure(frame, cv.sweep_axis_label(comparison), "test accuracy")
    assert [t.name for t in fig.data] == ["none", "uniform", "won", "mars"]
    diff = cv.difference_frame(comparison, "test_accuracy", "uniform", 0.0)
    assert set(diff["strategy"]) == {"none", "won", "mars"}
    assert (diff["ci_low"] <= diff["estimate"]).all() and (diff["estimate"] <= diff["ci_high"]).all()
    assert "test_gold_accuracy" in cv.available_metrics(comparison)
