"""Stored comparisons as the markdown of docs/results.md: per-experiment tables and verdicts by fixed rules.

The rules are written here, before any number is read, and applied the same way to every claim:
reproduced when the 95 % interval excludes 0 in the claimed direction; refuted when it excludes 0 the other way,
or (accuracy-like metrics) when it lies inside ± the comparison's smallest detectable difference and that is
below one point; otherwise not resolvable, with the sample size that would detect the observed difference.
"Same accuracy at 30 % of the budget" is a non-inferiority claim: reproduced when MARS at 30 % is above uniform at
100 % minus one point (lower bound of the interval), and vacuous when uniform itself gains nothing measurable from
the full budget.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mars_core.compare.results import (
    BASELINES,
    Comparison,
    cross_difference,
    damage_difference,
    fmt_diff,
    load_run_results,
)
from mars_core.present.compare_views import comparison_caption

ACCURACY_LIKE = {"test_accuracy", "test_gold_accuracy", "bon_match_rate"}
ONE_POINT = 0.01


def verdict(diff: dict[str, Any] | None, metric: str, direction: int = 1) -> str:
    """Apply the module's rules to a paired difference (direction +1: the claim says MARS is higher)."""
    if not diff or diff.get("ci_low") is None or diff.get("ci_high") is None:
        return "not resolvable at this size (too few seeds for an interval)"
    low, high, mdd = diff["ci_low"], diff["ci_high"], diff.get("mdd")
    if (direction > 0 and low > 0) or (direction < 0 and high < 0):
        return "**reproduced**"
    if (direction > 0 and high < 0) or (direction < 0 and low > 0):
        return "**refuted** (the opposite holds)"
    if metric in ACCURACY_LIKE and mdd is not None and mdd < ONE_POINT and -mdd <= low and high <= mdd:
        return f"**refuted** (no effect ≥ {mdd:.3f} at this size)"
    return "not resolvable at this size" + _needed(diff)


def _needed(diff: dict[str, Any]) -> str:
    est, mdd, n = abs(diff.get("estimate") or 0.0), diff.get("mdd"), diff.get("n_pairs") or 0
    seeds = diff.get("n_seeds") or 0
    if not mdd or not n:
        return ""
    if est < 1e-9:
        return f" (observed difference 0; an effect of {mdd:.3f} would have been seen)"
    factor = (mdd / est) ** 2
    return (f" (observed {diff['estimate']:+.4f}, smallest detectable {mdd:.4f}: detecting it needs ≈ {factor:.1f}× "
            f"the data, ≈ {math.ceil(factor * n):,} test-pair evaluations, now {n:,} over {seeds} seeds; more "
            "seeds, not only more test pairs, since training subsets vary too)")


def _pm(cell: dict[str, Any] | None, digits: int = 4) -> str:
    if not cell or cell.get("mean") is None:
        return "–"
    mean, std = cell["mean"], cell.get("std")
    if digits >= 3 and 0 < abs(mean) < 10 ** -(digits - 1):  # tiny quantities (eigenvalues) keep their digits
        return f"{mean:.3e} ± {std:.1e}" if std is not None else f"{mean:.3e}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def _diff(point: dict[str, Any], baseline: str, strategy: str, metric: str) -> dict[str, Any] | None:
    return point["vs"].get(baseline, {}).get(strategy, {}).get(metric)


# --------------------------------------------------------------------------------------- sections
def experiment_section(title: str, command: str, comparison: Comparison | None) -> list[str]:
    lines = [f"## {title}", "", "```", command, "```", ""]
    if comparison is None:
        return lines + ["*Not run in this session* (no stored comparison).", ""]
    total = sum(r.get("wall_seconds") or 0.0 for r in {r["run_id"]: r for r in comparison.runs}.values())
    runs = len({r["run_id"] for r in comparison.runs})
    sizes = sorted({(r.get("n_train"), r.get("n_test")) for r in comparison.runs})
    lines.append(f"Settings: {comparison_caption(comparison)}; training / test pairs per seed: "
                 + ", ".join(f"{a} / {b}" for a, b in sizes[:3]) + (" …" if len(sizes) > 3 else "") + ".")
    lines.append("")
    lines.append(f"{runs} runs, {total / 60:.1f} min of run time in all (the runs of a seed stepped together, 2 cores, "
                 "shared machine); "
                 f"LM generation calls actually computed: {comparison.extra.get('lm_generations_computed', '–')} "
                 "(shared through the store's cache).")
    lines.append("")
    for point in comparison.points:
        if comparison.sweep != "none":
            lines += [f"### {comparison.sweep_param} = {point['value']}", ""]
        lines += _point_table(point)
    return lines


def _point_table(point: dict[str, Any]) -> list[str]:
    head = ("| strategy | seeds | test acc | − uniform [95% CI] | − none [95% CI] | − won [95% CI] | "
            "smallest detectable vs uniform | gold acc | − uniform (gold) | SNR | − uniform (SNR) | ECE | "
            "top eig | trace | curvature of added pairs | synthetic pairs | budget units | LM gens | s/run |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for strategy, s in point["strategies"].items():
        mdd = (_diff(point, "uniform", strategy, "test_accuracy") or {}).get("mdd")
        lines.append("| " + " | ".join([
            strategy, str(len(s["seeds"])), _pm(s["test_accuracy"]),
            *(fmt_diff(_diff(point, b, strategy, "test_accuracy")) for b in BASELINES),
            f"{mdd:.4f}" if mdd is not None else "–", _pm(s["test_gold_accuracy"]),
            fmt_diff(_diff(point, "uniform", strategy, "test_gold_accuracy")), _pm(s["test_snr"], 3),
            fmt_diff(_diff(point, "uniform", strategy, "test_snr")), _pm(s["test_ece"], 3),
            _pm(s["top_eigenvalue"], 4), _pm(s["hessian_trace"], 4), _pm(s["added_curvature"], 4),
            _pm(s["synthetic_pairs"], 0), _pm(s["budget_units"], 0), _pm(s["lm_generations"], 0),
            _pm(s["seconds"], 1),
        ]) + " |")
    lines.append("")
    if any(s.get("bon_match_rate", {}).get("mean") is not None for s in point["strategies"].values()):
        lines += ["Best-of-N on the gold suite (each model picks 1 of N candidates per prompt; judged by gold):", "",
                  "| strategy | picks gold's best | regret | − uniform (picks best) | win rate vs none [95% CI] |",
                  "|---|---|---|---|---|"]
        for strategy, s in point["strategies"].items():
            win = point.get("bon_win_vs_none", {}).get(strategy)
            win_text = (f"{win['win_rate']:.3f} [{win['ci_low']:.3f}, {win['ci_high']:.3f}]"
                        if win and win.get("ci_low") is not None else "–")
            lines.append(f"| {strategy} | {_pm(s['bon_match_rate'], 3)} | {_pm(s['bon_regret'], 4)} | "
                         f"{fmt_diff(_diff(point, 'uniform', strategy, 'bon_match_rate'))} | {win_text} |")
        lines.append("")
    return lines


# --------------------------------------------------------------------------------------- claims
def claim_rows(stored: dict[str, Comparison], folders: dict[str, Path] | None = None) -> list[str]:
    """One markdown row per (claim, data) that the stored comparisons can speak to."""
    rows: list[str] = []
    for name, label in (("hh-linear", "HH-RLHF, linear"), ("hh-finetune", "HH-RLHF, fine-tuned"),
                        ("demo", "text demo"), ("toy", "2-D toy")):
        comp = stored.get(name)
        if comp is None:
            continue
        point = comp.points[0]
        if "mars" not in point["strategies"]:
            continue
        metric = "test_gold_accuracy" if name in ("demo", "toy") else "test_accuracy"
        for baseline in ("uniform", "won"):
            if baseline not in point["strategies"]:
                continue
            for m in (metric, "test_snr"):
                d = _diff(point, baseline, "mars", m)
                rows.append(f"| higher {m.replace('test_', '').replace('_', ' ')} than {baseline} | {label} | "
                            f"{fmt_diff(d)} | {verdict(d, m)} |")
        for m in ("top_eigenvalue", "added_curvature"):
            d = _diff(point, "uniform", "mars", m)
            rows.append(f"| larger Hessian {'top eigenvalue' if m == 'top_eigenvalue' else 'curvature of added pairs'}"
                        f" than uniform | {label} | {fmt_diff(d)} | {verdict(d, m)} |")
    for name, label in (("toy-budget", "2-D toy"), ("demo-budget", "text demo")):
        rows += _budget_rows(stored.get(name), name, label, folders)
    for name, label in (("toy-noise", "2-D toy"), ("demo-noise", "text demo")):
        rows += _noise_rows(stored.get(name), name, label, folders)
    return rows


def _folder(name: str, folders: dict[str, Path] | None) -> Path:
    return (folders or {}).get(name, Path("runs") / "results" / name)


def _budget_rows(comp: Comparison | None, name: str, label: str, folders: dict[str, Path] | None) -> list[str]:
    if comp is None:
        return []
    values = [p["value"] for p in comp.points]
    if 0.3 not in values or 1.0 not in values:
        return []
    results = load_run_results(_folder(name, folders))
    metric = "test_gold_accuracy"
    d = cross_difference(comp, results, ("mars", 0.3), ("uniform", 1.0), metric)
    budget_matters = cross_difference(comp, results, ("uniform", 1.0), ("uniform", 0.3), metric)
    text = (f"MARS@30% − uniform@100%: {fmt_diff(d)}; uniform@100% − uniform@30%: {fmt_diff(budget_matters)}")
    if not budget_matters or budget_matters.get("ci_low") is None or budget_matters["ci_low"] <= 0:
        v = "vacuous at this size: more budget does not measurably help uniform, so \"same accuracy\" says nothing"
    elif d and d.get("ci_low") is not None and d["ci_low"] > -ONE_POINT:
        v = "**reproduced** (MARS at 30% is within 1 point of, or above, uniform at 100%)"
    elif d and d.get("ci_high") is not None and d["ci_high"] < -ONE_POINT:
        v = "**refuted** (MARS at 30% is more than 1 point below uniform at 100%)"
    else:
        v = "not resolvable at this size" + _needed(d or {})
    return [f"| same accuracy at ~30% of uniform's budget | {label} | {text} | {v} |"]


def _noise_rows(comp: Comparison | None, name: str, label: str, folders: dict[str, Path] | None) -> list[str]:
    if comp is None:
        return []
    values = [p["value"] for p in comp.points]
    if 0.0 not in values or 0.1 not in values:
        return []
    results = load_run_results(_folder(name, folders))
    d = damage_difference(comp, results, "mars", "uniform", 0.0, 0.1, "test_gold_accuracy")
    text = f"gold-accuracy loss from 10% flips, MARS − uniform: {fmt_diff(d)} (negative = MARS loses less)"
    return [f"| less damage under 10% flipped labels | {label} | {text} | {verdict(d, 'test_gold_accuracy', -1)} |"]


def not_winning_lines(stored: dict[str, Comparison], labels: dict[str, str]) -> list[str]:
    """Every (data, metric, baseline) where MARS is not shown better: the interval does not exclude 0 upwards.

    ECE is better when lower, so there MARS "wins" when the interval lies below 0."""
    lines = []
    for name, label in labels.items():
        comp = stored.get(name)
        if comp is None or "mars" not in comp.points[0]["strategies"]:
            continue
        point = comp.points[0]
        for baseline in ("uniform", "won", "none"):
            for metric in ("test_accuracy", "test_gold_accuracy", "test_snr", "test_ece", "bon_match_rate"):
                d = _diff(point, baseline, "mars", metric)
                if not d or d.get("ci_low") is None:
                    continue
                wins = d["ci_high"] < 0 if metric == "test_ece" else d["ci_low"] > 0
                if not wins:
                    worse = d["ci_low"] > 0 if metric == "test_ece" else d["ci_high"] < 0
                    lines.append(f"- {label}, {metric.replace('test_', '')} vs {baseline}: {fmt_diff(d)}"
                                 + (" — **MARS is worse**" if worse else ""))
    return lines


# ------------------------------------------------------------------------------- carrying an earlier report
CARRIED = ("*Carried over unchanged from the earlier report: this comparison is not stored in this checkout, so "
           "its numbers are those of the command shown; `bench/results_report.py run {name}` runs today's.*")


def old_section(text: str, heading: str) -> list[str] | None:
    """The lines under ``## heading`` in a report, up to the next ``## `` heading (None when absent)."""
    marker = f"## {heading}\n"
    if marker not in text:
        return None
    return text.split(marker, 1)[1].split("\n## ", 1)[0].rstrip("\n").split("\n")


def shows_results(body: list[str] | None) -> bool:
    """Whether a report section holds a comparison's table (not the *Not run* placeholder)."""
    return any(line.startswith("| strategy |") for line in body or [])


def carried_section(text: str, title: str, name: str) -> list[str] | None:
    """An experiment's section from an earlier report, marked as carried (once), or None if it showed no results.

    Why: stored comparisons live in ``runs/`` (not committed); a report written on another machine must be
    able to refresh the sections it reran without silently dropping, or re-deriving, the ones it did not.
    """
    body = old_section(text, title)
    if not shows_results(body):
        return None
    note = CARRIED.format(name=name)
    body = [line for line in body if line != note]
    while body and not body[0].strip():
        body.pop(0)
    return [f"## {title}", "", note, "", *body, ""]


def carried_lines(text: str, heading: str, labels: set[str]) -> list[str]:
    """Verdict rows (``| claim | label | …``) or not-winning bullets (``- label, …``) of ``labels`` under a heading."""
    kept = []
    for line in old_section(text, heading) or []:
        cells = line.split(" | ")
        if (line.startswith("| ") and len(cells) > 1 and cells[1] in labels) or \
                any(line.startswith(f"- {label}, ") for label in labels):
            kept.append(line)
    return kept
