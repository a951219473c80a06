"""A comparison's numbers from its per-run result files: mean ± std per strategy, paired bootstrap CIs against
``uniform`` and ``none``, the smallest detectable difference, Best-of-N win rates; written as JSON and CSV.

No torch and no store here: the Compare page and the report read ``comparison*.json`` through this module, so a
stored comparison shows in well under a second.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mars_core.analysis.best_of_n import win_scores
from mars_core.analysis.bootstrap import (
    PairedDifference,
    mean_and_std,
    paired_bootstrap,
    row_ece,
    row_mean,
    row_snr,
    seed_bootstrap,
)

BASELINES = ("uniform", "none", "won")  # every strategy is compared with each of these that ran
# metric -> (per-test-pair values of one run, row statistic, resamples); None: this run has no such values
PairValues = Callable[[dict[str, Any]], np.ndarray | None]


def _correct(r: dict[str, Any]) -> np.ndarray:
    return (np.asarray(r["test_margins"], dtype=float) > 0).astype(float)


def _margins(r: dict[str, Any]) -> np.ndarray:
    return np.asarray(r["test_margins"], dtype=float)


def _gold_agree(r: dict[str, Any]) -> np.ndarray | None:
    gold = np.array([math.nan if g is None else g for g in r["test_gold"]], dtype=float)
    usable = np.isfinite(gold) & (gold != 0)
    if not usable.any():
        return None
    return (np.sign(_margins(r)[usable]) == np.sign(gold[usable])).astype(float)


def _bon_match(r: dict[str, Any]) -> np.ndarray | None:
    if "bon_picked_gold" not in r:
        return None
    return (np.asarray(r["bon_picked_gold"]) >= np.asarray(r["bon_best_gold"]) - 1e-12).astype(float)


def _bon_regret(r: dict[str, Any]) -> np.ndarray | None:
    if "bon_picked_gold" not in r:
        return None
    return np.asarray(r["bon_best_gold"], dtype=float) - np.asarray(r["bon_picked_gold"], dtype=float)


PAIR_METRICS: dict[str, tuple[PairValues, Callable[[np.ndarray], np.ndarray], int]] = {
    "test_accuracy": (_correct, row_mean, 2000),
    "test_snr": (_margins, row_snr, 1000),
    "test_gold_accuracy": (_gold_agree, row_mean, 2000),
    "test_ece": (_margins, row_ece, 500),
    "bon_match_rate": (_bon_match, row_mean, 1000),
    "bon_regret": (_bon_regret, row_mean, 1000),
}
RUN_METRICS = ("hessian_trace", "top_eigenvalue", "added_curvature", "synthetic_pairs", "lm_generations",
               "budget_units", "paraphrases_kept", "seconds")
METRICS = (*PAIR_METRICS, *RUN_METRICS)
METRIC_LABELS = {
    "test_accuracy": "test accuracy", "test_snr": "margin SNR", "test_gold_accuracy": "gold accuracy",
    "test_ece": "ECE", "bon_match_rate": "Best-of-N: picks gold's best", "bon_regret": "Best-of-N regret",
    "hessian_trace": "Hessian trace", "top_eigenvalue": "top eigenvalue", "added_curvature": "curvature of added pairs",
    "synthetic_pairs": "synthetic pairs used", "lm_generations": "LM generations", "budget_units": "budget units",
    "paraphrases_kept": "paraphrases kept", "seconds": "seconds",
}


@dataclass
class Comparison:
    """What a comparison found, ready for JSON, CSV, plots and the report."""

    spec: dict[str, Any]
    sweep: str
    sweep_param: str
    points: list[dict[str, Any]]  # one per sweep value: strategies' summaries and paired differences
    runs: list[dict[str, Any]]  # one flat row per (sweep value, strategy, seed)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Comparison:
        return cls(d["spec"], d["sweep"], d["sweep_param"], d["points"], d["runs"], d.get("extra", {}))

    def difference(self, strategy: str, baseline: str, metric: str, value: Any = None) -> dict[str, Any] | None:
        """The stored paired difference strategy − baseline at a sweep value (the first point by default)."""
        point = self.points[0] if value is None else next((p for p in self.points if p["value"] == value), None)
        if point is None:
            return None
        return point["vs"].get(baseline, {}).get(strategy, {}).get(metric)


def summarize(spec: dict[str, Any], results: Sequence[tuple[Any, dict[str, Any]]]) -> Comparison:
    """Aggregate per-run results (sweep value, result) into per-point summaries and paired differences."""
    from_sweep = {"none": "", "budget": "budget_fraction", "noise": "noise", "tau": "tau",
                  "margin-mode": "margin_mode", "tau-scale": "tau_scale"}
    sweep = spec.get("sweep", "none")
    values = list(dict.fromkeys(v for v, _ in results))
    points, rows = [], []
    for value in values:
        by_strategy: dict[str, dict[int, dict[str, Any]]] = {}
        for v, r in results:
            if v == value:
                by_strategy.setdefault(r["strategy"], {})[r["seed"]] = r
        point = {"value": value, "strategies": {}, "vs": {b: {} for b in BASELINES}, "bon_win_vs_none": {}}
        for strategy, runs in by_strategy.items():
            point["strategies"][strategy] = _strategy_summary(runs)
            for seed, r in sorted(runs.items()):
                rows.append({"sweep_value": value, "strategy": strategy, "seed": seed, "run_id": r["run_id"],
                             "wall_seconds": r.get("wall_seconds"), "n_train": r.get("n_train"),
                             "n_test": len(r["test_ids"]),
                             **{f"param_{k}": v for k, v in r["params"].items()},
                             **{m: r["metrics"].get(m) for m in METRICS}})
        for baseline in BASELINES:
            if baseline not in by_strategy:
                continue
            for strategy, runs in by_strategy.items():
                if strategy != baseline:
                    point["vs"][baseline][strategy] = _differences(runs, by_strategy[baseline])
        if "none" in by_strategy:
            for strategy, runs in by_strategy.items():
                win = _bon_wins(runs, by_strategy["none"])
                if win is not None and strategy != "none":
                    point["bon_win_vs_none"][strategy] = win
        points.append(point)
    return Comparison(spec, sweep, from_sweep.get(sweep, sweep), points, rows)


def _strategy_summary(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    out = {"seeds": sorted(runs)}
    for metric in METRICS:
        values = [runs[s]["metrics"].get(metric) for s in sorted(runs)]
        mean, std = mean_and_std([v for v in values if v is not None])
        out[metric] = {"mean": mean, "std": std, "values": values}
    return out


def _paired_seeds(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]]) -> list[int]:
    seeds = sorted(set(a) & set(b))
    for s in seeds:
        if a[s]["test_ids"] != b[s]["test_ids"]:
            raise ValueError(f"seed {s}: runs {a[s]['run_id']} and {b[s]['run_id']} were scored on different "
                             "test pairs, so they cannot be paired (was the data changed mid-comparison?)")
    return seeds


def _differences(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]]) -> dict[str, Any]:
    seeds = _paired_seeds(a, b)
    out: dict[str, Any] = {}
    if not seeds:
        return out
    for metric, (values_of, stat, n_boot) in PAIR_METRICS.items():
        xs = [values_of(a[s]) for s in seeds]
        ys = [values_of(b[s]) for s in seeds]
        if any(x is None or x.size == 0 for x in xs) or any(y is None or y.size == 0 for y in ys):
            continue
        out[metric] = paired_bootstrap(xs, ys, stat, n_boot=n_boot, seed=len(seeds)).to_dict()
    for metric in RUN_METRICS:
        xs = [a[s]["metrics"].get(metric) for s in seeds]
        ys = [b[s]["metrics"].get(metric) for s in seeds]
        if any(v is None for v in xs + ys):
            continue
        out[metric] = seed_bootstrap(xs, ys).to_dict()
    return out


def _bon_wins(runs: dict[int, dict[str, Any]], none: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    seeds = sorted(set(runs) & set(none))
    if not seeds or "bon_picked_gold" not in runs[seeds[0]]:
        return None
    wins = [win_scores(runs[s]["bon_picked_gold"], none[s]["bon_picked_gold"]) for s in seeds]
    diff: PairedDifference = paired_bootstrap(wins, [np.full_like(w, 0.5) for w in wins], n_boot=1000)
    return {"win_rate": float(np.mean([w.mean() for w in wins])), "ci_low": diff.ci_low + 0.5,
            "ci_high": diff.ci_high + 0.5, "n_seeds": len(seeds)}


# ------------------------------------------------------------------------------------------- across sweep points
def load_run_results(out: str | Path) -> dict[int, dict[str, Any]]:
    """Every per-run result file of a comparison folder, by run id (for comparisons across sweep points)."""
    found = {}
    for path in sorted((Path(out) / "results").glob("*.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        found[int(result["run_id"])] = result
    return found


def _runs_at(comparison: Comparison, results: dict[int, dict[str, Any]], strategy: str, value: Any) -> dict:
    return {row["seed"]: results[row["run_id"]] for row in comparison.runs
            if row["strategy"] == strategy and row["sweep_value"] == value and row["run_id"] in results}


def cross_difference(comparison: Comparison, results: dict[int, dict[str, Any]], a: tuple[str, Any],
                     b: tuple[str, Any], metric: str = "test_accuracy") -> dict[str, Any] | None:
    """(strategy, sweep value) a minus b, paired by seed and test pair: e.g. MARS at 30 % vs uniform at 100 %."""
    runs_a, runs_b = _runs_at(comparison, results, *a), _runs_at(comparison, results, *b)
    seeds = _paired_seeds(runs_a, runs_b)
    values_of, stat, n_boot = PAIR_METRICS[metric]
    xs, ys = [values_of(runs_a[s]) for s in seeds], [values_of(runs_b[s]) for s in seeds]
    if not seeds or any(v is None or v.size == 0 for v in xs + ys):
        return None
    return paired_bootstrap(xs, ys, stat, n_boot=n_boot).to_dict()


def damage_difference(comparison: Comparison, results: dict[int, dict[str, Any]], a: str, b: str, clean: Any,
                      noisy: Any, metric: str = "test_gold_accuracy") -> dict[str, Any] | None:
    """[a(clean) − a(noisy)] − [b(clean) − b(noisy)], per test pair and seed: how much more a loses to noise.

    Negative means a is damaged less. Needs a per-pair mean metric (accuracy-like).
    """
    values_of = PAIR_METRICS[metric][0]
    runs = {key: _runs_at(comparison, results, s, v) for key, (s, v) in
            {"ac": (a, clean), "an": (a, noisy), "bc": (b, clean), "bn": (b, noisy)}.items()}
    seeds = sorted(set.intersection(*(set(r) for r in runs.values())))
    for s in seeds:
        if len({tuple(r[s]["test_ids"]) for r in runs.values()}) != 1:
            raise ValueError(f"seed {s}: the noise levels were scored on different test pairs")
    if not seeds:
        return None
    loss_a = [values_of(runs["ac"][s]) - values_of(runs["an"][s]) for s in seeds]
    loss_b = [values_of(runs["bc"][s]) - values_of(runs["bn"][s]) for s in seeds]
    return paired_bootstrap(loss_a, loss_b).to_dict()


# ------------------------------------------------------------------------------------------- files
def summary_name(sweep: str) -> str:
    """File stem of a comparison's summary: one folder (one store, one LM cache) can hold a plain comparison and
    its sweeps, e.g. comparison.json, comparison-budget.json, comparison-noise.json."""
    return "comparison" if sweep in ("", "none") else f"comparison-{sweep}"


def write_summary(out: str | Path, comparison: Comparison) -> Path:
    """DIR/<name>.json (everything), DIR/<name>-runs.csv (one row per run), DIR/<name>-summary.csv (per point)."""
    out = Path(out)
    stem = summary_name(comparison.sweep)
    _atomic(out / f"{stem}.json", json.dumps(comparison.to_dict(), indent=1))
    _write_csv(out / f"{stem}-runs.csv", comparison.runs)
    _write_csv(out / f"{stem}-summary.csv", summary_rows(comparison))
    return out / f"{stem}.json"


def load_comparison(path: str | Path, sweep: str = "none") -> Comparison:
    """A stored comparison: a summary file, or a folder and which sweep (default: the plain comparison)."""
    path = Path(path)
    if path.is_dir():
        path = path / f"{summary_name(sweep)}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `python -m mars_core compare --out {path.parent}` first")
    return Comparison.from_dict(json.loads(path.read_text(encoding="utf-8")))


def list_comparisons(root: str | Path) -> list[Path]:
    """Summary files (comparison*.json) in ``root`` and its sub-folders, newest first."""
    root = Path(root).resolve()
    if not root.exists():
        return []
    found = [*root.glob("comparison*.json"), *root.glob("*/comparison*.json")]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def comparison_title(path: Path) -> str:
    """'demo' or 'demo · budget sweep' for DIR/comparison.json or DIR/comparison-budget.json."""
    sweep = path.stem.removeprefix("comparison").lstrip("-")
    return path.parent.name + (f" · {sweep} sweep" if sweep else "")


def summary_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """Per (sweep value, strategy, metric): mean, std, and the difference to each baseline with its CI."""
    rows = []
    for point in comparison.points:
        for strategy, summary in point["strategies"].items():
            for metric in METRICS:
                cell = summary.get(metric) or {}
                row = {"sweep_value": point["value"], "strategy": strategy, "metric": metric,
                       "mean": cell.get("mean"), "std": cell.get("std"), "n_seeds": len(summary["seeds"])}
                for baseline in BASELINES:
                    diff = point["vs"].get(baseline, {}).get(strategy, {}).get(metric) or {}
                    for key in ("estimate", "ci_low", "ci_high", "mdd"):
                        row[f"vs_{baseline}_{key}"] = diff.get(key)
                rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows([{k: _json_safe(v) for k, v in row.items()} for row in rows])
    os.replace(tmp, path)


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fmt_diff(diff: dict[str, Any] | None) -> str:
    """"+0.0123 [-0.0040, +0.0290]" for a paired difference; tiny quantities (eigenvalues) keep their digits."""
    if not diff or diff.get("estimate") is None:
        return "–"
    values = [diff["estimate"], diff.get("ci_low"), diff.get("ci_high")]
    scale = max(abs(v) for v in values if v is not None)
    fmt = "{:+.4f}" if scale >= 0.001 or scale == 0 else "{:+.2e}"  # tiny quantities (eigenvalues) keep digits
    if diff.get("ci_low") is None:
        return fmt.format(diff["estimate"] + 0.0)
    return f"{fmt.format(diff['estimate'] + 0.0)} [{fmt.format(diff['ci_low'] + 0.0)}, {fmt.format(diff['ci_high'] + 0.0)}]"
