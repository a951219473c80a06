"""Verdict rules of docs/results.md, and the report's tables read from a real (toy) comparison."""

from __future__ import annotations

from mars_core.compare.comparison import CompareSpec, run_comparison
from mars_core.present import compare_figures as cf
from mars_core.present import compare_views as cv
from mars_core.present.results_markdown import (
    CARRIED,
    carried_lines,
    carried_section,
    claim_rows,
    experiment_section,
    verdict,
)
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


EARLIER = """# Results

## Verdicts on the paper's claims

| claim | data | evidence (MARS − baseline, 95% CI) | verdict |
|---|---|---|---|
| higher accuracy than uniform | HH-RLHF, linear | +0.0053 [-0.0038, +0.0132] | not resolvable at this size |
| higher gold accuracy than uniform | 2-D toy | -0.0040 [-0.0105, +0.0020] | not resolvable at this size |
| less damage under 10% flipped labels | 2-D toy | -0.0030 [-0.0165, +0.0105] | not resolvable at this size |

## Where MARS does not win

- HH-RLHF, linear, accuracy vs uniform: +0.0053 [-0.0038, +0.0132]
- 2-D toy, snr vs none: -0.0018 [-0.0056, +0.0013]

## 2-D toy: all strategies

```
python -m mars_core compare --data toy --seeds 10 --out runs/results/toy
```

| strategy | seeds | test acc |
|---|---|---|
| mars | 10 | 0.81 |

## Text demo: all strategies

```
python -m mars_core compare --data demo --out runs/results/demo
```

*Not run in this session* (no stored comparison).
"""


def test_an_earlier_reports_unstored_sections_and_rows_are_carried_verbatim_and_marked_once():
    rows = carried_lines(EARLIER, "Verdicts on the paper's claims", {"2-D toy"})
    assert rows == [line for line in EARLIER.splitlines() if line.startswith("| ") and "| 2-D toy |" in line]
    assert len(rows) == 2
    assert carried_lines(EARLIER, "Where MARS does not win", {"2-D toy"}) == [
        "- 2-D toy, snr vs none: -0.0018 [-0.0056, +0.0013]"]
    assert carried_lines(EARLIER, "Where MARS does not win", set()) == []

    section = carried_section(EARLIER, "2-D toy: all strategies", "toy")
    note = CARRIED.format(name="toy")
    assert section[:4] == ["## 2-D toy: all strategies", "", note, ""]
    assert "| mars | 10 | 0.81 |" in section and "python -m mars_core compare --data toy --seeds 10 --out " \
        "runs/results/toy" in section
    # carrying a carried section again does not stack notes
    again = carried_section("\n".join(section) + "\n## next\n", "2-D toy: all strategies", "toy")
    assert again == section
    # a section that showed no results has nothing to carry; an absent one neither
    assert carried_section(EARLIER, "Text demo: all strategies", "demo") is None
    assert carried_section(EARLIER, "Real HH-RLHF harmless pairs, linear reward model", "hh-linear") is None
