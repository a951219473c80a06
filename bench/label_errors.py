"""How well σ(−Δ_oof) finds label errors on the gold suites, and what correcting them buys.

For each suite (text demo, 2-D toy) × noise × seed: create a linear run with 5-fold cross-fitting and
strategy none (epoch 0 stores out-of-fold margins), read the label-error scores from the store the way the
app and `suspects` do, then
  * precision at k and ROC-AUC of the score against "label disagrees with the gold reward" (gold Δ < 0)
    and against "flipped by the noise step";
  * gold accuracy on the held-out pairs after a fresh fit on labels corrected by a simulated reviewer who
    answers with the gold (swap where gold Δ < 0, keep otherwise) for the top k, vs k random pairs
    (mean over --random-draws draws), k = 1 %, 5 %, 10 % of the training pairs; paired-bootstrap CIs
    over seeds and test pairs (analysis.bootstrap);
  * where MARS would spend its budget: the share of q (and of the integer counts) on flipped and on
    gold-disagreeing pairs under mars (abs), mars (signed, the authors' code) and uniform, allocating on
    the in-sample margins (the paper, --folds 0) and on the out-of-fold ones (our default).

Resumable: each (suite, noise, seed) piece is one JSON under bench/results/label_errors/; `--report` only
aggregates. Run pieces under `cpuq`:
    cpuq .venv/bin/python bench/label_errors.py --suites toy --noise 0.1 0.2 --seeds 0 1 2 3 4
    cpuq .venv/bin/python bench/label_errors.py --suites text --noise 0.1 --seeds 0 1 2 3 4
    .venv/bin/python bench/label_errors.py --report
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mars_core.analysis.bootstrap import paired_bootstrap  # noqa: E402
from mars_core.analysis.label_errors import apply_label_decisions, precision_at_k, roc_auc  # noqa: E402
from mars_core.augment.allocation import AllocationConfig, allocate  # noqa: E402
from mars_core.data.text_suite import text_suite_with_info  # noqa: E402
from mars_core.data.toy import toy_suite_with_info  # noqa: E402
from mars_core.review.labels import label_scores  # noqa: E402
from mars_core.run.config import DataConfig, RefineConfig, RunConfig  # noqa: E402
from mars_core.run.refine import RefinementRun  # noqa: E402
from mars_core.run.sources import DEMO_DEFAULT_SIZES  # noqa: E402
from mars_core.store.sqlite import Store  # noqa: E402

SUITES = {"text": "demo:text", "toy": "demo:toy"}
K_SHARES = (0.01, 0.05, 0.10)
OUT = Path("bench/results/label_errors")
ALLOCATIONS = {
    "mars_abs": AllocationConfig(strategy="mars", margin_mode="abs"),
    "mars_signed": AllocationConfig(strategy="mars", margin_mode="signed"),
    "uniform": AllocationConfig(strategy="uniform"),
}


def piece_path(suite: str, noise: float, seed: int, pairs: int) -> Path:
    return OUT / f"{suite}-n{pairs}-noise{noise:g}-seed{seed}.json"


def run_piece(suite: str, noise: float, seed: int, pairs: int, draws: int, db: Path) -> dict:
    start = time.perf_counter()
    config = RunConfig(
        data=DataConfig(source=SUITES[suite], noise=noise, seed=seed, n_pairs=pairs),
        refine=RefineConfig(cross_fit_folds=5, seed=seed, epochs=1),
        allocation=AllocationConfig(strategy="none"),
    )
    store = Store(db)
    run = RefinementRun.create(store, config, name=f"label-errors {suite} noise {noise:g} seed {seed}")
    scores = label_scores(store, run.run_id)
    assert scores is not None and scores.epoch == 0
    train = store.get_pairs(run.run_id, split="train")
    test = store.get_pairs(run.run_id, split="test")
    by_id = {p.id: p for p in train}
    info = (text_suite_with_info(pairs, noise, seed) if suite == "text"
            else toy_suite_with_info(pairs, noise=noise, seed=seed))
    flipped_by_id = {p.id: bool(f) for p, f in zip(info.pairs, info.flipped)}

    order = scores.frame["pair_id"].tolist()  # most suspicious first
    score = scores.frame["score"].to_numpy(float)
    gold_wrong = np.array([by_id[i].gold_margin < 0 for i in order])
    flipped = np.array([flipped_by_id[i] for i in order])
    n = len(order)
    ks = {f"{share:g}": max(1, round(share * n)) for share in K_SHARES}

    test_gold = np.array([p.gold_margin for p in test], dtype=float)

    def gold_correct(decisions: dict[str, str]) -> np.ndarray:
        model = run.components.model.fresh()
        model.fit(apply_label_decisions(train, decisions))
        return (np.sign(model.margins(test)) == np.sign(test_gold)).astype(float)

    def reviewer(ids: list[str]) -> dict[str, str]:  # answers with the gold reward
        return {i: "swap" if by_id[i].gold_margin < 0 else "keep" for i in ids}

    rng = np.random.default_rng(10_000 + seed)
    base = gold_correct({})
    corrections = {}
    for label, k in ks.items():
        top = gold_correct(reviewer(order[:k]))
        rand = np.mean([gold_correct(reviewer(list(rng.choice(order, k, replace=False)))) for _ in range(draws)],
                       axis=0)
        corrections[label] = {
            "k": k, "top": top.tolist(), "random": rand.tolist(),
            "top_fixed": int(gold_wrong[:k].sum()),
        }

    # the allocation sees the pairs in stored order, as a Step does (uniform's rounding ties go by index)
    rows = store.margin_rows(run.run_id, 0, "train")
    flipped_stored = np.array([flipped_by_id[r["pair_id"]] for r in rows])
    gold_wrong_stored = np.array([by_id[r["pair_id"]].gold_margin < 0 for r in rows])
    sources = {
        "in_sample": np.array([r["margin"] for r in rows]),
        "out_of_fold": np.array([r["alloc_margin"] for r in rows]),
    }
    budget = RefineConfig().budget_per_epoch
    spend = {}
    for source, margins in sources.items():
        for name, alloc_config in ALLOCATIONS.items():
            alloc = allocate(margins, budget, alloc_config, seed=seed)
            q, counts = np.asarray(alloc.q), np.asarray(alloc.counts, float)
            spend[f"{name}/{source}"] = {
                "q_on_flipped": float(q[flipped_stored].sum()), "q_on_gold_wrong": float(q[gold_wrong_stored].sum()),
                "units_on_flipped": float(counts[flipped_stored].sum() / max(counts.sum(), 1)),
                "units_on_gold_wrong": float(counts[gold_wrong_stored].sum() / max(counts.sum(), 1)),
            }
    return {
        "suite": suite, "noise": noise, "seed": seed, "pairs": pairs, "n_train": n, "n_test": len(test),
        "threshold": scores.threshold, "n_flagged": scores.n_flagged,
        "rate_flipped": float(flipped.mean()), "rate_gold_wrong": float(gold_wrong.mean()),
        "auc_gold_wrong": roc_auc(score, gold_wrong), "auc_flipped": roc_auc(score, flipped),
        "precision_gold_wrong": {lbl: precision_at_k(score, gold_wrong, k) for lbl, k in ks.items()},
        "precision_flipped": {lbl: precision_at_k(score, flipped, k) for lbl, k in ks.items()},
        "flagged_precision_gold_wrong": float(gold_wrong[scores.frame["flagged"].to_numpy()].mean())
        if scores.n_flagged else None,
        "base_gold_accuracy": float(base.mean()), "base": base.tolist(), "corrections": corrections,
        "spend": spend, "budget": budget, "seconds": time.perf_counter() - start,
    }


def _ci(d) -> str:
    return f"{d.estimate:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]"


def report(pairs_by_suite: dict[str, int]) -> dict:
    pieces = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    summary: dict = {}
    for suite in SUITES:
        for noise in sorted({p["noise"] for p in pieces if p["suite"] == suite}):
            group = [p for p in pieces if p["suite"] == suite and p["noise"] == noise
                     and p["pairs"] == pairs_by_suite[suite]]
            if not group:
                continue
            key = f"{suite} noise {noise:g}"
            row: dict = {
                "seeds": len(group), "n_train": group[0]["n_train"], "n_test": group[0]["n_test"],
                "rate_gold_wrong": np.mean([p["rate_gold_wrong"] for p in group]),
                "rate_flipped": np.mean([p["rate_flipped"] for p in group]),
                "auc_gold_wrong": np.mean([p["auc_gold_wrong"] for p in group]),
                "auc_flipped": np.mean([p["auc_flipped"] for p in group]),
                "n_flagged": np.mean([p["n_flagged"] for p in group]),
                "flagged_precision": np.mean([p["flagged_precision_gold_wrong"] or np.nan for p in group]),
                "base_gold_accuracy": np.mean([p["base_gold_accuracy"] for p in group]),
                "k": {},
                "spend": {name: {m: float(np.mean([p["spend"][name][m] for p in group]))
                                 for m in group[0]["spend"][name]} for name in group[0]["spend"]},
            }
            for label in group[0]["corrections"]:
                top = [np.array(p["corrections"][label]["top"]) for p in group]
                rand = [np.array(p["corrections"][label]["random"]) for p in group]
                base = [np.array(p["base"]) for p in group]
                row["k"][label] = {
                    "k": group[0]["corrections"][label]["k"],
                    "precision_gold_wrong": np.mean([p["precision_gold_wrong"][label] for p in group]),
                    "precision_flipped": np.mean([p["precision_flipped"][label] for p in group]),
                    "gain_top": paired_bootstrap(top, base).__dict__,
                    "gain_random": paired_bootstrap(rand, base).__dict__,
                    "top_minus_random": paired_bootstrap(top, rand).__dict__,
                }
            summary[key] = row
    return summary


def print_report(summary: dict) -> None:
    print("| suite, noise | seeds | train/test | gold-wrong rate | flipped rate | AUC gold-wrong | AUC flipped | "
          "flagged (precision) | base gold acc |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key, r in summary.items():
        print(f"| {key} | {r['seeds']} | {r['n_train']}/{r['n_test']} | {r['rate_gold_wrong']:.3f} | "
              f"{r['rate_flipped']:.3f} | {r['auc_gold_wrong']:.3f} | {r['auc_flipped']:.3f} | "
              f"{r['n_flagged']:.1f} ({r['flagged_precision']:.2f}) | {r['base_gold_accuracy']:.3f} |")
    print()
    print("| suite, noise | k (share) | P@k gold-wrong | P@k flipped | gain top-k | gain random-k | top − random |")
    print("|---|---|---|---|---|---|---|")
    for key, r in summary.items():
        for label, c in r["k"].items():
            f = {name: f"{c[name]['estimate']:+.3f} [{c[name]['ci_low']:+.3f}, {c[name]['ci_high']:+.3f}]"
                 for name in ("gain_top", "gain_random", "top_minus_random")}
            print(f"| {key} | {c['k']} ({float(label):.0%}) | {c['precision_gold_wrong']:.2f} | "
                  f"{c['precision_flipped']:.2f} | {f['gain_top']} | {f['gain_random']} | {f['top_minus_random']} |")
    print()
    print("| suite, noise | margins | share of q on flipped: mars abs / mars signed / uniform | "
          "on gold-wrong: abs / signed / uniform | budget units on flipped: abs / signed / uniform | "
          "units on gold-wrong: abs / signed / uniform |")
    print("|---|---|---|---|---|---|")
    for key, r in summary.items():
        for source in ("in_sample", "out_of_fold"):
            s = {n: r["spend"][f"{n}/{source}"] for n in ALLOCATIONS}
            cells = [" / ".join(f"{s[n][m]:.3f}" for n in ALLOCATIONS)
                     for m in ("q_on_flipped", "q_on_gold_wrong", "units_on_flipped", "units_on_gold_wrong")]
            print(f"| {key} | {source.replace('_', '-')} | {' | '.join(cells)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suites", nargs="+", choices=list(SUITES), default=list(SUITES))
    parser.add_argument("--noise", nargs="+", type=float, default=[0.1, 0.2])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--text-pairs", type=int, default=DEMO_DEFAULT_SIZES["demo:text"])
    parser.add_argument("--toy-pairs", type=int, default=DEMO_DEFAULT_SIZES["demo:toy"])
    parser.add_argument("--random-draws", type=int, default=5, help="random-k corrections averaged per seed")
    parser.add_argument("--db", default="runs/bench-label-errors.db", help="scratch store (features cached there)")
    parser.add_argument("--report", action="store_true", help="only aggregate the stored pieces")
    args = parser.parse_args(argv)
    sizes = {"text": args.text_pairs, "toy": args.toy_pairs}
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.report:
        for suite in args.suites:
            for noise in args.noise:
                for seed in args.seeds:
                    path = piece_path(suite, noise, seed, sizes[suite])
                    if path.exists():
                        continue
                    piece = run_piece(suite, noise, seed, sizes[suite], args.random_draws, Path(args.db))
                    path.write_text(json.dumps(piece))
                    print(f"{path.name}: AUC {piece['auc_gold_wrong']:.3f}, {piece['seconds']:.1f}s", file=sys.stderr)
    summary = report(sizes)
    (OUT.parent / "label_errors.json").write_text(json.dumps(summary, indent=1, default=float))
    print_report(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
