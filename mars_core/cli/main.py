"""Headless CLI: `python -m mars_core run|export|runs|delete`.

    python -m mars_core run --data demo --strategy mars --epochs 3 --budget 32 --tau 1 --db runs/mars.db
    python -m mars_core run --resume 1 --db runs/mars.db --epochs 2
    python -m mars_core export --db runs/mars.db --run 1 --out augmented.jsonl
    python -m mars_core delete --db runs/mars.db --run 1

The run flags (help, choices, defaults) come from the config dataclasses: see mars_core/run/settings.py;
`compare` lives in mars_core/cli/compare.py.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from tqdm import tqdm  # noqa: E402

from mars_core.augment.selection import ParaphraserFailed  # noqa: E402
from mars_core.cli.compare import add_compare_arguments, run_compare  # noqa: E402
from mars_core.cli.suspects import add_suspects_arguments, run_suspects  # noqa: E402
from mars_core.redaction import install_log_filter, redact  # noqa: E402
from mars_core.run.config import RefineConfig, settle_flags, with_overrides  # noqa: E402
from mars_core.run.distributed import is_main, store_path_for_this_process  # noqa: E402
from mars_core.run.refine import RefinementRun, RunFinished  # noqa: E402
from mars_core.run.settings import add_config_flags, config_from_args, given_flags  # noqa: E402
from mars_core.run.sources import SourceData, load_source, write_problems  # noqa: E402
from mars_core.store.export import SELECTIONS, export_run  # noqa: E402
from mars_core.store.sqlite import RunDeleted, Store  # noqa: E402

DEFAULT_DB = "runs/mars.db"
REASONS_SHOWN = 5  # skipped rows printed on load; the full list goes to a CSV next to the store

Command = Callable[[argparse.Namespace], int]


EXIT_ERROR = 2  # bad input or a refused action
EXIT_NOT_STORED = 3  # the epoch failed (paraphraser errors, the run deleted meanwhile): nothing of it was stored
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: every epoch stored before stays


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C (locks released, transactions rolled back)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mars_core", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    handlers: dict[str, Command] = {}
    for name, (add_arguments, handler, help_text) in SUBCOMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text))
        handlers[name] = handler
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    install_log_filter()  # whatever a remote server echoes, no key reaches stderr
    previous = _on_sigterm()
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt as exc:
        print(f"\n{'terminated' if isinstance(exc, Terminated) else 'interrupted'}: nothing half-done was stored "
              "(every finished epoch is kept; `run --resume N` continues a run)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError, RuntimeError) as exc:  # bad input or a refused action: a message, not a traceback
        print(f"error: {redact(exc)}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _on_sigterm() -> Any:
    """Turn SIGTERM into Terminated in the main thread (the previous handler is returned, to be restored)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    return signal.signal(signal.SIGTERM, terminate)


# -- run -----------------------------------------------------------------------------------------------
RESUME_MAY_CHANGE = ("--epochs", "--remote-deadline", "--max-paraphrase-failures")  # how to go on, not what to run


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser)
    parser.add_argument("--db", default=DEFAULT_DB, help=f"SQLite store file (default: {DEFAULT_DB})")
    parser.add_argument("--name", default=None, help="a name for the new run")
    parser.add_argument("--resume", type=int, default=None,
                        help="continue this stored run id instead (it keeps its settings; --epochs says how many more, "
                             "raising the run's epoch cap when needed)")


def _run(args: argparse.Namespace) -> int:
    given = {s.flag for s in given_flags(args)}
    epochs_now = getattr(args, "epochs", RefineConfig().epochs)
    if epochs_now < 1:
        raise ValueError(f"--epochs must be at least 1, got {epochs_now}")
    if args.resume is not None:
        if args.name is not None:
            raise ValueError(f"--name names a new run; --resume {args.resume} keeps the run's name")
        ignored = sorted(given - set(RESUME_MAY_CHANGE))
        if ignored:
            raise ValueError(f"{', '.join(ignored)} cannot change a stored run (--resume {args.resume} keeps its "
                             "settings); start a new run instead")
        if is_main():
            Store(args.db, create=False)  # a missing or foreign store is an error here, never created
        store = Store(store_path_for_this_process(args.db), create=False)
    else:
        config, notes = settle_flags(config_from_args(args), given)  # every flag checked before the store is touched
        for note in notes if is_main() else ():
            print(note, file=sys.stderr)
        store = Store(store_path_for_this_process(args.db))  # several processes: only the main one writes args.db
    progress, close_bar = _progress_bars() if is_main() else (lambda *a, **k: None, lambda: None)
    if not is_main():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (one table, from the main process; errors still show)

    if args.resume is not None:
        run = RefinementRun.open(store, args.resume)
        target = run.epoch + epochs_now
        _resume_settings(store, run, args, target)
    else:
        data = load_source(config.data)
        if is_main():
            _report_load(data, Path(args.db))
        config.check_training_size(len(data.train))
        if is_main():
            print(f"loading models; fitting epoch 0 ({data.description}) ...", file=sys.stderr)
        try:
            run = RefinementRun.create(store, config, name=args.name, progress=progress, data=data)
        finally:
            close_bar()
        target = epochs_now
    print(f"run {run.run_id} in {args.db}: {store.get_run(run.run_id).data_source}")
    print(_table_header())
    epoch = store.get_epoch(run.run_id, run.epoch)
    print(_table_row(epoch.metrics, epoch.seconds))
    try:
        while run.epoch < target:
            try:
                outcome = run.step(progress=progress)
            except RunFinished as exc:
                print(f"stopped: {exc}")
                break
            finally:
                close_bar()
            print(_table_row(outcome.metrics, sum(outcome.stage_seconds.values())))
    except (ParaphraserFailed, RunDeleted) as exc:
        print(f"epoch {run.epoch + 1} not stored: {redact(exc)}", file=sys.stderr)
        if isinstance(exc, ParaphraserFailed):
            print(f"run {run.run_id} stays at epoch {run.epoch}; retry with `python -m mars_core run --db {args.db} "
                  f"--resume {run.run_id} --epochs {target - run.epoch}`", file=sys.stderr)
        return EXIT_NOT_STORED
    except KeyboardInterrupt:
        print(f"\ninterrupted: run {run.run_id} keeps epochs 0 to {run.epoch}; epoch {run.epoch + 1} was not stored "
              f"(`--resume {run.run_id}` continues)", file=sys.stderr)
        return EXIT_INTERRUPTED
    reason = run.stop_reason()
    print(f"epochs done: {run.epoch}; budget spent {run.budget_spent()} of {run.config.refine.budget_total}"
          + (f"; {reason}" if reason else ""))
    return 0


def _resume_settings(store: Store, run: RefinementRun, args: argparse.Namespace, target: int) -> None:
    """Apply what --resume may change: a higher epoch cap (--epochs says how many MORE), deadline, failure limit."""
    refine: dict[str, Any] = {}
    if run.config.refine.epochs < target:
        refine["epochs"] = target
        print(f"extending run {run.run_id}: its epoch cap goes from {run.config.refine.epochs} to {target} "
              f"({target - run.epoch} more from epoch {run.epoch})", file=sys.stderr)
    for flag, name in (("--remote-deadline", "remote_deadline_s"), ("--max-paraphrase-failures", "max_failed_share")):
        dest = flag.lstrip("-").replace("-", "_")
        if hasattr(args, dest) and getattr(args, dest) != getattr(run.config.refine, name):
            refine[name] = getattr(args, dest)
            print(f"run {run.run_id}: {flag} is now {getattr(args, dest)}", file=sys.stderr)
    if refine:
        run.config = with_overrides(run.config, refine=refine)
        store.update_run_config(run.run_id, run.config.to_dict())


def _report_load(data: SourceData, db: Path) -> None:
    """Per file: the first skipped and duplicate rows (row, field, why) and where the full list is; the split."""
    for report in data.reports:
        if not report.skipped and not report.duplicates:
            continue
        name = Path(report.path).name
        print(f"{name}: {report.rows_read} rows read, {len(report.skipped)} skipped, "
              f"{len(report.duplicates)} exact duplicates dropped", file=sys.stderr)
        for line in report.skip_lines(REASONS_SHOWN) + report.duplicate_lines(REASONS_SHOWN):
            print(f"  {line}", file=sys.stderr)
        full = write_problems(report, db.parent)
        print(f"  every skipped and duplicate row: {full}"
              + ("  (--strict stops at the first bad row instead)" if report.skipped else ""), file=sys.stderr)
    if data.split is not None:
        print(data.split.summary(), file=sys.stderr)
    if data.test_prompts_in_train:
        print(f"warning: {data.test_prompts_in_train} prompts of the held-out file also occur in training",
              file=sys.stderr)


def _progress_bars() -> tuple[Callable[..., None], Callable[[], None]]:
    """progress(stage, done, total, detail) as one tqdm bar per stage, and a function closing the open bar."""
    current: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int, detail: str = "") -> None:
        bar = current.get("bar")
        if bar is None or bar.desc.strip() != stage:
            if bar is not None:
                bar.close()
            bar = current["bar"] = tqdm(total=max(total, 1), desc=f"{stage:>12}", leave=False, file=sys.stderr)
        if bar.total != max(total, 1):  # a stage learns its size after its first call (e.g. training batches)
            bar.total = max(total, 1)
        bar.n = min(done, bar.total)
        if detail:
            bar.set_postfix_str(redact(detail), refresh=False)
        bar.refresh()

    def close() -> None:
        if "bar" in current:
            current.pop("bar").close()

    return progress, close


# -- export, runs, delete ---------------------------------------------------------------------------------
def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--out", required=True, help="file.jsonl or file.csv")
    parser.add_argument("--selection", default="training", choices=SELECTIONS)


def _export(args: argparse.Namespace) -> int:
    n = export_run(_existing_store(args.db), args.run, args.out, args.selection)
    print(f"wrote {n} pairs to {args.out}")
    return 0


def _runs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB)


def _runs(args: argparse.Namespace) -> int:
    store = _existing_store(args.db)
    for rec in store.list_runs():
        strategy = rec.config.get("allocation", {}).get("strategy", "?")
        last = store.last_epoch(rec.id)
        state = f"epoch {last:>3}" if last is not None else "incomplete (no epoch 0)"
        print(f"{rec.id:>4}  {state}  {strategy:<8} {rec.name}")
        if last is None:
            print(f"      its creation was interrupted: python -m mars_core delete --db {args.db} --run {rec.id}")
        lock = store.step_lock(rec.id)
        if lock is not None:
            print(f"      {lock.describe()}")
    return 0


def _delete_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--force", action="store_true", help="delete even while a step lock is held")


def _delete(args: argparse.Namespace) -> int:
    store = Store(args.db, create=False)  # must already be one of our stores; nothing is created
    name = store.get_run(args.run).name
    removed = store.delete_run(args.run, force=args.force)
    print(f"deleted run {args.run} ({name}) from {args.db}"
          + (f", and its checkpoints: {', '.join(str(f) for f in removed)}" if removed else ""))
    return 0


def _existing_store(db: str) -> Store:
    """A store opened read-only: a command that only reads never creates or changes a file."""
    return Store(db, read_only=True)


# name -> (add its arguments, run it, help). A new subcommand is one entry here.
SUBCOMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command, str]] = {
    "run": (_run_arguments, _run, "create (or resume) a run and step it epoch by epoch"),
    "export": (_export_arguments, _export, "write a run's augmented data as JSONL or CSV (TRL-readable)"),
    "runs": (_runs_arguments, _runs, "list the runs in a store, with who holds a step lock"),
    "delete": (_delete_arguments, _delete, "delete a run and everything stored for it"),
    "compare": (add_compare_arguments, run_compare, "compare strategies at equal budget over seeds (and sweeps)"),
    "suspects": (add_suspects_arguments, run_suspects, "list a run's likeliest label errors (pair id, score)"),
}


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
