"""`python -m mars_core compare`: flags, progress bars and the printed table of a comparison.

    python -m mars_core compare --data demo --strategies none,uniform,won,mars --seeds 5 --budget 32 \\
        --epochs 2 --out runs/compare-demo
    python -m mars_core compare --data toy --sweep noise --sweep-values 0,0.1,0.2 --out runs/compare-toy-noise
    python -m mars_core compare --data ../shared/data/hh_harmless_dev.jsonl --train-pairs 300 --seeds 5 ...

Every run setting of `run` is accepted (from the config dataclasses) except --strategy and --seed, which the
comparison sets per run. Rerunning the same command continues a killed comparison.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from tqdm import tqdm

from mars_core.augment.selection import ParaphraserFailed
from mars_core.compare.comparison import (
    DEFAULT_STRATEGIES,
    STRATEGY_SETTINGS,
    SWEEPS,
    CompareSpec,
    run_comparison,
)
from mars_core.compare.results import Comparison, fmt_diff
from mars_core.redaction import redact
from mars_core.run.config import settle_flags
from mars_core.run.settings import add_config_flags, config_from_args, given_flags, settings
from mars_core.store.sqlite import RunDeleted

_SET_PER_RUN = ("--strategy", "--seed")


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, [s for s in settings() if s.flag not in _SET_PER_RUN])
    parser.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES),
                        help=f"comma-separated strategies: {', '.join(STRATEGY_SETTINGS)}")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per strategy (each varies split and selection)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, first-seed + 1, ...")
    parser.add_argument("--sweep", default="none", choices=tuple(SWEEPS),
                        help="budget: fractions of --budget; noise: label-flip rates (demo suites); tau; "
                             "margin-mode; tau-scale")
    parser.add_argument("--sweep-values", default=None,
                        help="comma-separated values (default: " + "; ".join(
                            f"{k}: {','.join(map(str, v[1]))}" for k, v in SWEEPS.items() if v[1]) + ")")
    parser.add_argument("--train-pairs", type=int, default=None,
                        help="data files: train on this many pairs per seed, hold out all the others")
    parser.add_argument("--best-of-n", type=int, default=8, help="Best-of-N candidates on the gold suites (0: off)")
    parser.add_argument("--out", required=True, help="folder of the comparison (store, results, CSV, JSON)")


def spec_from_args(args: argparse.Namespace) -> CompareSpec:
    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    values: tuple[Any, ...] = ()
    if args.sweep_values:
        raw = [v.strip() for v in args.sweep_values.split(",") if v.strip()]
        values = tuple(raw) if args.sweep in ("margin-mode", "tau-scale") else tuple(_number(v) for v in raw)
    given = {s.flag for s in given_flags(args)}
    base, notes = settle_flags(config_from_args(args), given, resolve_auto=False)  # every flag checked up front
    for note in notes:
        print(note, file=sys.stderr)
    return CompareSpec(base=base, strategies=strategies, seeds=args.seeds,
                       first_seed=args.first_seed, sweep=args.sweep, sweep_values=values,
                       train_pairs=args.train_pairs, best_of_n=args.best_of_n)


def run_compare(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int, detail: str = "") -> None:
        if stage == "runs":  # the comparison's own bar; a new run starts a fresh per-run bar
            bar = bars.get("runs") or bars.setdefault(
                "runs", tqdm(total=total, desc="runs", position=0, file=sys.stderr))
            bar.n = done
            bar.set_postfix_str(detail[:70], refresh=True)
            if "stage" in bars:
                bars.pop("stage").close()
            return
        bar = bars.get("stage")
        if bar is None or bar.desc.strip() != stage:
            if bar is not None:
                bar.close()
            bar = bars["stage"] = tqdm(total=max(total, 1), desc=f"{stage:>12}", position=1, leave=False,
                                       file=sys.stderr)
        bar.total = max(total, 1)
        bar.n = min(done, bar.total)
        if detail:
            bar.set_postfix_str(redact(detail), refresh=False)
        bar.refresh()

    try:
        comparison = run_comparison(spec, args.out, progress)
    except (ParaphraserFailed, RunDeleted) as exc:
        print(f"comparison stopped, its current run not stored as a result: {redact(exc)}\n"
              "rerun the same command to continue it (finished runs are kept, the failed one is redone)",
              file=sys.stderr)
        return 3
    finally:
        for bar in bars.values():
            bar.close()
    print(format_table(comparison))
    stem = comparison.extra["summary_file"].removesuffix(".json")
    print(f"wrote {stem}.json, {stem}-runs.csv, {stem}-summary.csv (runs in {args.out}/runs.db)")
    return 0


def format_table(comparison: Comparison, metric: str = "test_accuracy") -> str:
    """Per sweep point: each strategy's mean ± std and its difference to uniform and none with the 95% CI."""
    lines = []
    for point in comparison.points:
        if comparison.sweep != "none":
            lines.append(f"{comparison.sweep_param} = {point['value']}")
        lines.append(f"{'strategy':<14}{metric:>18}{'− uniform [95% CI]':>30}{'− none [95% CI]':>30}  gens")
        for strategy, summary in point["strategies"].items():
            cell = summary[metric]
            row = f"{strategy:<14}{_pm(cell['mean'], cell['std']):>18}"
            for baseline in ("uniform", "none"):
                diff = point["vs"].get(baseline, {}).get(strategy, {}).get(metric)
                row += f"{fmt_diff(diff):>30}"
            gens = summary["lm_generations"]["mean"]
            lines.append(row + f"  {gens:5.0f}" if gens == gens else row)
        lines.append("")
    extra = {k: v for k, v in comparison.extra.items() if k != "summary_file"}
    if extra:
        lines.append(", ".join(f"{k} {v}" for k, v in extra.items()))
    return "\n".join(lines)


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None or not math.isfinite(mean):
        return "-"
    return f"{mean:.4f} ± {std:.4f}" if std is not None and math.isfinite(std) else f"{mean:.4f}"


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--sweep-values: {text!r} is not a number") from None
