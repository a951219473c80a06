"""A stored comparison as frames for the Compare page and the report: tables, sweep curves, distributions.

Everything reads ``Comparison`` (comparison.json); nothing here touches the store or a model.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mars_core.compare.results import BASELINES, METRIC_LABELS, Comparison

SWEEP_LABELS = {"budget_fraction": "budget (fraction of the full budget)", "noise": "label-flip rate",
                "tau": "τ", "margin_mode": "margin mode", "tau_scale": "τ scale", "": ""}
PERCENT_METRICS = {"test_accuracy", "test_gold_accuracy", "bon_match_rate"}


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def available_metrics(comparison: Comparison) -> list[str]:
    """Metrics with at least one finite value in this comparison, in the report's order."""
    found = []
    for metric in METRIC_LABELS:
        values = [r.get(metric) for r in comparison.runs]
        if any(isinstance(v, int | float) and math.isfinite(v) for v in values):
            found.append(metric)
    return found


def _point(comparison: Comparison, value: Any) -> dict[str, Any]:
    if value is None:
        return comparison.points[0]
    for point in comparison.points:
        if point["value"] == value:
            return point
    raise KeyError(f"no sweep point {value!r} in this comparison")


def strategy_table(comparison: Comparison, metric: str = "test_accuracy", value: Any = None) -> pd.DataFrame:
    """Per strategy at one sweep point: mean ± std over seeds and the paired differences to uniform and none."""
    point = _point(comparison, value)
    rows = []
    for strategy, summary in point["strategies"].items():
        cell = summary.get(metric) or {}
        row: dict[str, Any] = {"strategy": strategy, "seeds": len(summary["seeds"]), "mean": cell.get("mean"),
                               "std": cell.get("std")}
        for baseline in BASELINES:
            diff = point["vs"].get(baseline, {}).get(strategy, {}).get(metric) or {}
            row[f"− {baseline}"] = diff.get("estimate")
            row[f"− {baseline} CI"] = _ci_text(diff)
            if baseline == "uniform":
                row["smallest detectable (vs uniform)"] = diff.get("mdd")
        win = point.get("bon_win_vs_none", {}).get(strategy)
        if win and metric.startswith("bon_"):
            row["Best-of-N win rate vs none"] = win["win_rate"]
        rows.append(row)
    return pd.DataFrame(rows)


def _ci_text(diff: dict[str, Any]) -> str:
    if diff.get("ci_low") is None or diff.get("ci_high") is None:
        return "-"
    return f"[{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]"


def sweep_frame(comparison: Comparison, metric: str = "test_accuracy") -> pd.DataFrame:
    """value, strategy, mean, std, seeds: one row per (sweep point, strategy), for curves with error bars."""
    rows = []
    for point in comparison.points:
        for strategy, summary in point["strategies"].items():
            cell = summary.get(metric) or {}
            rows.append({"value": point["value"], "strategy": strategy, "mean": cell.get("mean"),
                         "std": cell.get("std"), "seeds": len(summary["seeds"])})
    return pd.DataFrame(rows, columns=["value", "strategy", "mean", "std", "seeds"])


def distribution_frame(comparison: Comparison, metric: str = "test_accuracy", value: Any = None) -> pd.DataFrame:
    """strategy, seed, value of the metric: one row per run at one sweep point."""
    wanted = comparison.points[0]["value"] if value is None else value
    rows = [{"strategy": r["strategy"], "seed": r["seed"], "value": r.get(metric)}
            for r in comparison.runs if r["sweep_value"] == wanted]
    return pd.DataFrame(rows, columns=["strategy", "seed", "value"])


def difference_frame(comparison: Comparison, metric: str = "test_accuracy", baseline: str = "uniform",
                     value: Any = None) -> pd.DataFrame:
    """strategy, estimate, ci_low, ci_high, mdd: each strategy minus the baseline, paired over pairs and seeds."""
    point = _point(comparison, value)
    rows = [{"strategy": s, "estimate": d[metric]["estimate"], "ci_low": d[metric]["ci_low"],
             "ci_high": d[metric]["ci_high"], "mdd": d[metric]["mdd"]}
            for s, d in point["vs"].get(baseline, {}).items() if metric in d]
    return pd.DataFrame(rows, columns=["strategy", "estimate", "ci_low", "ci_high", "mdd"])


def comparison_caption(comparison: Comparison) -> str:
    """One line: data, strategies, seeds, budget, epochs, reward model, paraphraser, sweep."""
    spec = comparison.spec
    base = spec["base"]
    parts = [
        f"data {base['data']['source']}", f"strategies {', '.join(spec['strategies'])}", f"{spec['seeds']} seeds",
        f"budget {base['refine']['budget_per_epoch']} per epoch × {base['refine']['epochs']} epochs",
    ]
    reward = base.get("reward") if isinstance(base.get("reward"), dict) else {}
    parts.append(f"reward model {reward.get('kind', 'linear')}")
    parts.append(f"features {base['refine'].get('feature_mode', '?')}")
    parts.append(f"paraphraser {base.get('paraphrase', {}).get('model', '?')}")
    if spec.get("train_pairs"):
        parts.append(f"{spec['train_pairs']} training pairs per seed")
    if comparison.sweep != "none":
        values = ", ".join(str(p["value"]) for p in comparison.points)
        parts.append(f"sweep {comparison.sweep}: {values}")
    return " · ".join(parts)


def sweep_axis_label(comparison: Comparison) -> str:
    return SWEEP_LABELS.get(comparison.sweep_param, comparison.sweep_param)
