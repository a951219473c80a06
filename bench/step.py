"""Time one MARS Step on the text demo, stage by stage, with the real packaged models.

    .venv/bin/python bench/step.py [--pairs 500] [--budget 32] [--json bench/results/step.json]

Reports: model load times, epoch 0 (encode + fit), each stage of one Step (≈400 train pairs,
budget 32), margin rescoring throughput with cached features, and the paraphraser's generated
tokens/s inside the Step. Targets (this 2-core machine): a Step ≤ 30 s; paraphrasing ≥ 100 tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mars_core.run.components import build_runtime  # noqa: E402
from mars_core.run.config import DataConfig, RefineConfig, RunConfig, with_overrides  # noqa: E402
from mars_core.run.refine import RefinementRun  # noqa: E402
from mars_core.store.sqlite import Store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=500, help="demo pairs (80%% train)")
    parser.add_argument("--budget", type=int, default=32)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None, help="paraphraser texts per generate call")
    parser.add_argument("--engine", default=None, choices=("auto", "ct2", "transformers"),
                        help="paraphrase engine (default: the config's)")
    parser.add_argument("--json", default=None, help="default bench/results/step[-ENGINE].json")
    args = parser.parse_args()

    rows: list[tuple[str, float, str]] = []
    config = RunConfig(
        data=DataConfig(source="demo:text", n_pairs=args.pairs),
        refine=RefineConfig(epochs=2, budget_per_epoch=args.budget, cross_fit_folds=args.folds),
    )
    if args.batch_size:
        config = with_overrides(config, paraphrase={"batch_size": args.batch_size})
    if args.engine:
        config = with_overrides(config, paraphrase={"engine": args.engine})
    args.json = args.json or f"bench/results/step{'-' + args.engine if args.engine else ''}.json"
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        start = time.perf_counter()
        runtime = build_runtime(config, store)
        rows.append(("load encoder + paraphraser", time.perf_counter() - start, "once per process"))

        start = time.perf_counter()
        run = RefinementRun.create(store, config, runtime=runtime)
        n_train = len(store.get_pairs(run.run_id, split="train"))
        rows.append(("epoch 0 (encode all texts, fit)", time.perf_counter() - start, f"{n_train} train pairs"))

        start = time.perf_counter()
        outcome = run.step()
        step_seconds = time.perf_counter() - start
        for stage, seconds in outcome.stage_seconds.items():
            rows.append((f"  step: {stage}", seconds, ""))
        rows.append(("one Step, total", step_seconds, f"budget {args.budget}, {outcome.metrics['pairs_added']} pairs added"))

        tokens = outcome.metrics["paraphrase_tokens"]
        gen_seconds = outcome.stage_seconds["generating"]
        tok_s = tokens / gen_seconds if gen_seconds else float("nan")
        rows.append(("paraphrase generation", gen_seconds, f"{tokens} tokens, {tok_s:.1f} tokens/s, "
                     f"{outcome.metrics['paraphrases_kept']} kept of {outcome.metrics['paraphrases_generated']}"))

        train = store.training_pairs(run.run_id, "auto")
        runtime.model.margins(train)  # warm the cache
        start = time.perf_counter()
        repeats = 5
        for _ in range(repeats):
            runtime.model.margins(train)
        per = (time.perf_counter() - start) / repeats
        rows.append(("rescore margins (cached features)", per, f"{len(train) / per:,.0f} pairs/s"))

    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'seconds':>9}  note")
    for name, seconds, note in rows:
        print(f"{name:<{width}}  {seconds:9.3f}  {note}")
    print(f"\ntargets: Step <= 30 s -> {step_seconds:.1f} s; paraphrasing >= 100 tokens/s -> {tok_s:.1f}")
    out = {
        "rows": [{"what": n.strip(), "seconds": s, "note": note} for n, s, note in rows],
        "step_seconds": step_seconds, "paraphrase_tokens_per_s": tok_s, "train_pairs": n_train,
        "budget": args.budget, "batch_size": config.paraphrase.batch_size, "cpu_count": os.cpu_count(),
        "engine": config.paraphrase.engine, "paraphraser": runtime.paraphraser.name,
        "load_average": os.getloadavg()[0],
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
