"""Headless CLI: `python -m mars_core run|export|runs`.

    python -m mars_core run --data demo --strategy mars --epochs 3 --budget 32 --tau 1 --db runs/mars.db
    python -m mars_core run --resume 1 --db runs/mars.db --epochs 2
    python -m mars_core export --db runs/mars.db --run 1 --out augmented.jsonl
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_DB = "runs/mars.db"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mars_core", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="create (or resume) a run and step it epoch by epoch")
    run.add_argument("--data", default="demo", help="demo (text suite), toy (2-D), or a data file path")
    run.add_argument("--format", default="auto", help="data schema: auto, generic, hh-rlhf, pku-saferlhf, ...")
    run.add_argument("--axis", default="helpful", help="PKU-SafeRLHF axis: helpful or harmless")
    run.add_argument("--pairs", type=int, default=None, help="demo size, or use only the first N pairs of a file")
    run.add_argument("--noise", type=float, default=0.0, help="demo suites: label flip probability")
    run.add_argument("--strategy", default="mars", choices=["mars", "uniform", "won", "none"])
    run.add_argument("--epochs", type=int, default=3, help="refinement epochs to run now (and the run's cap)")
    run.add_argument("--budget", type=int, default=32, help="paraphrase generations per epoch")
    run.add_argument("--tau", type=float, default=1.0)
    run.add_argument("--tau-scale", default="raw", choices=["raw", "std"])
    run.add_argument("--margin-mode", default="abs", choices=["abs", "signed"])
    run.add_argument("--folds", type=int, default=5, help="cross-fitting folds for allocation margins; 0 = in-sample")
    run.add_argument("--review", default="auto", choices=["auto", "gated"])
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--paraphraser", default=None, help="packaged:smollm2 (default), a local path or a hub id")
    run.add_argument("--db", default=DEFAULT_DB, help="SQLite store file")
    run.add_argument("--name", default=None, help="a name for the new run")
    run.add_argument("--resume", type=int, default=None, help="continue this stored run id instead")

    export = sub.add_parser("export", help="write a run's augmented data as JSONL or CSV (TRL-readable)")
    export.add_argument("--db", default=DEFAULT_DB)
    export.add_argument("--run", type=int, required=True)
    export.add_argument("--out", required=True, help="file.jsonl or file.csv")
    export.add_argument("--selection", default="training", choices=["training", "all", "reviewed"])

    runs = sub.add_parser("runs", help="list the runs in a store")
    runs.add_argument("--db", default=DEFAULT_DB)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return {"run": _run, "export": _export, "runs": _runs}[args.command](args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mars_core.run.config import DataConfig, RefineConfig, RunConfig, with_overrides
    from mars_core.run.refine import RefinementRun, RunFinished
    from mars_core.run.store import Store

    store = Store(args.db)
    current: dict[str, tqdm] = {}  # one bar at a time: the stage in progress

    def progress(stage: str, done: int, total: int, detail: str = "") -> None:
        bar = current.get("bar")
        if bar is None or bar.desc.strip() != stage:
            if bar is not None:
                bar.close()
            bar = current["bar"] = tqdm(total=max(total, 1), desc=f"{stage:>12}", leave=False, file=sys.stderr)
        bar.n = min(done, bar.total)
        bar.refresh()

    def close_bar() -> None:
        if "bar" in current:
            current.pop("bar").close()

    if args.resume is not None:
        run = RefinementRun.open(store, args.resume)
        target = run.epoch + args.epochs
        if run.config.refine.epochs < target:
            print(f"note: run {args.resume} was created with a cap of {run.config.refine.epochs} epochs", file=sys.stderr)
    else:
        source = {"demo": "demo:text", "toy": "demo:toy"}.get(args.data, args.data)
        config = RunConfig(
            data=DataConfig(source=source, format=args.format, axis=args.axis, n_pairs=args.pairs, noise=args.noise,
                             seed=args.seed),
            refine=RefineConfig(epochs=args.epochs, budget_per_epoch=args.budget, cross_fit_folds=args.folds,
                                review_policy=args.review, seed=args.seed),
        )
        config = with_overrides(config, allocation={"strategy": args.strategy, "tau": args.tau,
                                                    "tau_scale": args.tau_scale, "margin_mode": args.margin_mode})
        if args.paraphraser:
            config = with_overrides(config, paraphrase={"model": args.paraphraser})
        print(f"loading data and models; fitting epoch 0 ({config.data.source}) ...", file=sys.stderr)
        run = RefinementRun.create(store, config, name=args.name, progress=progress)
        close_bar()
        target = args.epochs
    print(f"run {run.run_id} in {args.db}: {store.get_run(run.run_id).data_source}")
    print(_table_header())
    print(_table_row(store.get_epoch(run.run_id, run.epoch).metrics, store.get_epoch(run.run_id, run.epoch).seconds))
    while run.epoch < target:
        try:
            outcome = run.step(progress=progress)
        except RunFinished as exc:
            print(f"stopped: {exc}")
            break
        finally:
            close_bar()
        print(_table_row(outcome.metrics, sum(outcome.stage_seconds.values())))
    reason = run.stop_reason()
    print(f"epochs done: {run.epoch}; budget spent {run.budget_spent()} of {run.config.refine.budget_total}"
          + (f"; {reason}" if reason else ""))
    return 0


def _export(args: argparse.Namespace) -> int:
    from mars_core.run.export import export_run
    from mars_core.run.store import Store

    if not Path(args.db).exists():
        raise FileNotFoundError(f"store {args.db} does not exist")
    n = export_run(Store(args.db), args.run, args.out, args.selection)
    print(f"wrote {n} pairs to {args.out}")
    return 0


def _runs(args: argparse.Namespace) -> int:
    from mars_core.run.store import Store

    if not Path(args.db).exists():
        raise FileNotFoundError(f"store {args.db} does not exist")
    store = Store(args.db)
    for rec in store.list_runs():
        strategy = rec.config.get("allocation", {}).get("strategy")
        print(f"{rec.id:>4}  epoch {store.last_epoch(rec.id)!s:>3}  {strategy:<8} {rec.name}")
    return 0


_COLUMNS = [("epoch", "epoch", "{:>5}"), ("test_accuracy", "acc", "{:>6.3f}"), ("test_snr", "SNR", "{:>6.2f}"),
            ("test_gold_accuracy", "gold", "{:>6.3f}"), ("pairs_added", "added", "{:>6}"),
            ("paraphrases_kept", "kept", "{:>5}"), ("picked_curvature", "curv", "{:>7.4f}")]


def _table_header() -> str:
    return " ".join(f"{title:>{len(fmt.format(0) if 'f' not in fmt else fmt.format(0.0))}}" for _, title, fmt in _COLUMNS) + "     secs"


def _table_row(metrics: dict, seconds: float) -> str:
    cells = []
    for key, _, fmt in _COLUMNS:
        value = metrics.get(key)
        width = len(fmt.format(0.0 if "f" in fmt else 0))
        if value is None or (isinstance(value, float) and math.isnan(value)):
            cells.append(f"{'-':>{width}}")
        else:
            cells.append(fmt.format(value))
    return " ".join(cells) + f" {seconds:8.1f}"


if __name__ == "__main__":
    sys.exit(main())
