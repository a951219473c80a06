"""`python -m mars_core suspects`: a run's likeliest label errors, one pair id and its score per line.

Read-only on the store. Stdout carries only "pair_id<TAB>score" lines (for scripts); where the scores come
from (epoch, folds) and how many pairs confident learning flags go to stderr. ``--csv`` writes the full
ranking (rank, pair_id, score, out-of-fold margin, confidence, flagged, decision, reviewer).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mars_core.review.labels import SCORE_COLUMNS, label_scores, suspects, why_no_scores
from mars_core.store.sqlite import Store

DEFAULT_DB = "runs/mars.db"


def add_suspects_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, help=f"SQLite store file (default: {DEFAULT_DB})")
    parser.add_argument("--run", type=int, required=True, help="the run whose training labels to score")
    parser.add_argument("--top", type=int, default=20, help="how many pairs to list, most suspicious first")
    parser.add_argument("--epoch", type=int, default=None,
                        help="read the scores of the latest out-of-fold epoch at or before this one (default: latest)")
    parser.add_argument("--csv", default=None, help="also write the listed pairs' full rows to this CSV file")


def run_suspects(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    store = Store(args.db, read_only=True)  # never creates or changes a store
    store.get_run(args.run)  # a clear error for a wrong id
    scores = label_scores(store, args.run, args.epoch)
    if scores is None:
        raise ValueError(why_no_scores(store, args.run))
    table = suspects(store, args.run, args.top, args.epoch)
    print(f"run {args.run}: σ(−Δ) from {scores.folds}; {scores.n_flagged} of {len(scores.frame)} pairs flagged "
          f"(score ≥ {scores.threshold:.3f}, confident learning)", file=sys.stderr)
    for pair_id, score in zip(table["pair_id"], table["score"]):
        print(f"{pair_id}\t{score:.4f}")
    if args.csv:
        out = Path(args.csv)
        out.parent.mkdir(parents=True, exist_ok=True)
        table[[*SCORE_COLUMNS, "decision", "reviewer"]].to_csv(out, index=False)
        print(f"wrote {len(table)} rows to {out}", file=sys.stderr)
    return 0
