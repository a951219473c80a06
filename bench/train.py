"""The fine-tuned reward model: throughput against TRL, FLOP rate, accuracy against the linear head, one Step.

Each part is one short process (the machine is shared); every part writes bench/results/train_<part>*.json
and ``--part table`` prints them together.

    .venv/bin/python bench/train.py --part throughput [--pairs 256 --max-length 128 --batch-size 16]
    .venv/bin/python bench/train.py --part accuracy --split 0 [--train 300 --test 0] [--head-init fresh]
    .venv/bin/python bench/train.py --part accuracy --split 10 --test 400 --tag sweep-lr1e-5 --lr 1e-5  # a sweep point
    .venv/bin/python bench/train.py --part step [--pairs 500 --budget 32]
    .venv/bin/python bench/train.py --part table

throughput: training pairs/s and scoring texts/s of FinetuneRewardModel against TRL's RewardTrainer on the
same base (packaged MiniLM), the SAME token ids (ours, prompt cut from the left, fed to TRL pre-tokenised so
its length filter drops nothing), batch size, learning rate, schedule, dropout and machine; plus the forward
FLOP rate of our scoring pass (FLOPs counted by torch's FlopCounterMode) against a float32 matmul peak
measured in the same process. accuracy: held-out pairwise accuracy on real HH-RLHF harmless pairs
(../shared/data/hh_harmless_dev.jsonl) of the fine-tuned MiniLM against the linear head on frozen MiniLM
embeddings (joined prompt+response and response-only features), same split, paired bootstrap 95% CI.
step: one MARS Step on the text demo with the fine-tuned MiniLM (folds 0: in-sample margins).
Requires bench/requirements.txt (trl) for the throughput part only.
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
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mars_core.analysis.bootstrap import paired_bootstrap  # noqa: E402
from mars_core.data.loading import load_pairs, train_test_split  # noqa: E402
from mars_core.model.encoders import TextEncoder  # noqa: E402
from mars_core.model.features import TextFeaturizer  # noqa: E402
from mars_core.model.finetune import FinetuneRewardModel  # noqa: E402
from mars_core.model.reward import LinearRewardModel  # noqa: E402
from mars_core.model.reward_config import RewardModelConfig  # noqa: E402
from mars_core.model.train import TrainConfig  # noqa: E402

# ../shared beside the clone (CI), or beside the folder of worktrees (a checkout under /work/wt/NAME)
HH = next((p for p in (Path(__file__).resolve().parents[i] / "shared" / "data" / "hh_harmless_dev.jsonl"
                       for i in (2, 3)) if p.exists()),
          Path(__file__).resolve().parents[2] / "shared" / "data" / "hh_harmless_dev.jsonl")
RESULTS = Path("bench/results")


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best float32 GFLOP/s of an n×n matmul on this machine, now (the same threads the model uses)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def hh_split(seed: int, n_train: int, n_test: int):
    """Split by prompt (train_test_split); ``n_train`` pairs to train, ``n_test`` to test (0 = all the rest)."""
    pairs, _ = load_pairs(HH)
    train, test = train_test_split(pairs, test_fraction=1 - n_train / len(pairs), seed=seed)
    if n_test:
        test = [test[i] for i in np.sort(np.random.default_rng(seed).permutation(len(test))[:n_test])]
    return train[:n_train], test


def part_throughput(args) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    peak = matmul_peak()
    train, _ = hh_split(0, args.pairs, 100)
    args.max_length, args.batch_size = args.max_length or 128, args.batch_size or 16
    # one plain pass with a new head on both sides: the same work as TRL's one epoch
    cfg = RewardModelConfig(kind="finetune", max_length=args.max_length, batch_size=args.batch_size,
                            learning_rate=5e-5, head_init="fresh", min_steps=1, max_passes=1,
                            validation_fraction=0.0, score_batch_size=2 * args.score_pairs)
    ours = FinetuneRewardModel(cfg)
    prompts = [p.prompt for p in train]
    plus = ours.batcher.encode(prompts, [p.chosen for p in train])  # tokenisation is outside both timings
    minus = ours.batcher.encode(prompts, [p.rejected for p in train])
    start = time.perf_counter()
    report = ours.fit(train)
    ours_train = time.perf_counter() - start

    texts_p = prompts + prompts
    texts_r = [p.chosen for p in train] + [p.rejected for p in train]
    scorer = FinetuneRewardModel(cfg)  # empty score cache
    start = time.perf_counter()
    scorer.rewards(texts_p, texts_r)
    ours_score = time.perf_counter() - start
    flops = count_scoring_flops(FinetuneRewardModel(cfg), texts_p, texts_r)

    data = Dataset.from_dict({"chosen_ids": [list(e.ids) for e in plus], "rejected_ids": [list(e.ids) for e in minus]})
    model = AutoModelForSequenceClassification.from_pretrained(str(ours.source), num_labels=1)
    model.config.pad_token_id = ours.batcher.pad_id
    with tempfile.TemporaryDirectory() as tmp:
        trl_args = RewardConfig(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.score_pairs,
            num_train_epochs=1, learning_rate=5e-5, lr_scheduler_type="linear", warmup_steps=0.1,
            max_length=args.max_length, disable_dropout=False, report_to="none", save_strategy="no",
            logging_strategy="no", use_cpu=True, dataloader_num_workers=0, seed=0, bf16=False, fp16=False,
        )
        trainer = RewardTrainer(model=model, args=trl_args, train_dataset=data, eval_dataset=data,
                                processing_class=ours.tokenizer)
        assert len(trainer.train_dataset) == len(train), "TRL dropped pairs"
        start = time.perf_counter()
        trainer.train()
        trl_train = time.perf_counter() - start
        start = time.perf_counter()
        trainer.predict(trainer.eval_dataset)
        trl_score = time.perf_counter() - start

    n_texts = 2 * len(train)
    out = {
        "pairs": len(train), "max_length": args.max_length, "batch_size": args.batch_size,
        "truncated_pairs": report.details["truncated_pairs"], "threads": torch.get_num_threads(),
        "ours_train_pairs_per_s": len(train) / ours_train, "trl_train_pairs_per_s": len(train) / trl_train,
        "train_speedup_vs_trl": trl_train / ours_train,
        "ours_score_texts_per_s": n_texts / ours_score, "trl_score_texts_per_s": n_texts / trl_score,
        "score_speedup_vs_trl": trl_score / ours_score,
        "matmul_peak_gflops": peak, "forward_gflop": flops["executed"] / 1e9,
        "forward_gflops_rate": flops["executed"] / ours_score / 1e9,
        "forward_fraction_of_peak": flops["executed"] / ours_score / 1e9 / peak,
        "useful_fraction_of_executed_flops": flops["useful"] / flops["executed"],
    }
    _write(out, "train_throughput.json")
    return out


def count_scoring_flops(model: FinetuneRewardModel, prompts, responses) -> dict[str, float]:
    """FLOPs of the scoring pass (as executed, padding included) and the share spent on real tokens."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model.rewards(prompts, responses)
    executed = float(counter.get_total_flops())
    encoded = model.batcher.encode(prompts, responses)
    lengths = np.array([len(e.ids) for e in encoded])
    batch = model.config.score_batch_size
    order = np.sort(lengths)[::-1]
    padded = sum(order[i] * len(order[i:i + batch]) for i in range(0, len(order), batch))
    return {"executed": executed, "useful": executed * lengths.sum() / padded}


def finetune_config(args) -> RewardModelConfig:
    """The defaults, with only the flags given on the command line changed (so "defaults" mean the code's)."""
    given = {"max_length": args.max_length, "batch_size": args.batch_size, "learning_rate": args.lr,
             "min_steps": args.min_steps, "max_passes": args.max_passes, "head_init": args.head_init,
             "validation_fraction": args.validation_fraction, "patience": args.patience, "cpu_bf16": args.cpu_bf16,
             "validation_metric": args.validation_metric, "min_validation_pairs": args.min_validation_pairs}
    return RewardModelConfig(kind="finetune", seed=args.split, **{k: v for k, v in given.items() if v is not None})


def linear_correct(split: int, train, test) -> dict[str, list[int]]:
    """0/1 correctness of the linear heads (joined and response-only features), cached per split and size."""
    name = f"train_linear_n{len(train)}_t{len(test)}_split{split}.json"
    cached = _read(name)
    if cached:
        return cached["correct"]
    encoder = TextEncoder()
    correct = {}
    for mode in ("prompt_response", "response"):
        linear = LinearRewardModel(TextFeaturizer(encoder, mode), TrainConfig())
        linear.fit(train)
        correct[f"linear_{mode}"] = (linear.margins(test) > 0).astype(int).tolist()
    _write({"split": split, "correct": correct}, name)
    return correct


def part_accuracy(args) -> dict:
    """One fine-tuned variant on one split against the linear heads; ``--tag`` names it (sweep-… for the sweep)."""
    train, test = hh_split(args.split, args.train, args.test)
    cfg = finetune_config(args)
    tag = args.tag or cfg.head_init
    name = f"train_accuracy_{tag}_n{len(train)}_split{args.split}.json"
    if _read(name) and not args.force:
        print(f"{name} exists (use --force to redo)")
        return _read(name)
    correct = {k: np.array(v, dtype=float) for k, v in linear_correct(args.split, train, test).items()}
    start = time.perf_counter()
    model = FinetuneRewardModel(cfg)
    report = model.fit(train)
    fit_seconds = time.perf_counter() - start
    correct["finetune"] = (model.margins(test) > 0).astype(float)
    out: dict = {"tag": tag, "split": args.split, "train_pairs": len(train), "test_pairs": len(test),
                 "config": {k: getattr(cfg, k) for k in ("head_init", "learning_rate", "min_steps", "max_passes",
                                                          "max_length", "batch_size", "validation_fraction",
                                                          "patience", "cpu_bf16", "validation_metric",
                                                          "min_validation_pairs")},
                 "fit_seconds": fit_seconds, "score_seconds": time.perf_counter() - start - fit_seconds,
                 "fit_details": report.details}
    for key, c in correct.items():
        out[f"{key}_accuracy"] = float(c.mean())
    out["finetune_minus_linear_prompt_response"] = paired_bootstrap(
        [correct["finetune"]], [correct["linear_prompt_response"]], seed=args.split).to_dict()
    out["correct"] = {k: v.astype(int).tolist() for k, v in correct.items()}
    _write(out, name)
    return out


def part_step(args) -> dict:
    from mars_core.run.components import build_runtime
    from mars_core.run.config import DataConfig, RefineConfig, RunConfig
    from mars_core.run.refine import RefinementRun
    from mars_core.store.sqlite import Store

    config = RunConfig(
        data=DataConfig(source="demo:text", n_pairs=args.pairs),
        refine=RefineConfig(epochs=2, budget_per_epoch=args.budget, cross_fit_folds=0),
        reward=finetune_config(args),
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        start = time.perf_counter()
        runtime = build_runtime(config, store)
        runtime.paraphraser.model()  # load the LM now, not inside the timed Step
        load = time.perf_counter() - start
        start = time.perf_counter()
        run = RefinementRun.create(store, config, runtime=runtime)
        epoch0 = time.perf_counter() - start
        start = time.perf_counter()
        outcome = run.step()
        step = time.perf_counter() - start
    out = {"load_seconds": load, "epoch0_seconds": epoch0, "step_seconds": step,
           "train_pairs": outcome.metrics["pairs_trained"], "pairs_added": outcome.metrics["pairs_added"],
           "stage_seconds": outcome.stage_seconds, "fit_details": outcome.metrics.get("fit_details"),
           "max_length": config.reward.max_length, "budget": args.budget, "target_seconds": 90}
    _write(out, "train_step.json")
    return out


def part_table(_args) -> None:
    lines = []
    tp = _read("train_throughput.json")
    if tp:
        lines += [
            f"training   ours {tp['ours_train_pairs_per_s']:.1f} pairs/s   TRL {tp['trl_train_pairs_per_s']:.1f} pairs/s"
            f"   ratio {tp['train_speedup_vs_trl']:.2f}x (target >= 1.2x)",
            f"scoring    ours {tp['ours_score_texts_per_s']:.1f} texts/s   TRL {tp['trl_score_texts_per_s']:.1f} texts/s"
            f"   ratio {tp['score_speedup_vs_trl']:.2f}x",
            f"forward    {tp['forward_gflops_rate']:.1f} GFLOP/s vs matmul peak {tp['matmul_peak_gflops']:.1f}"
            f" = {100 * tp['forward_fraction_of_peak']:.0f}% (target >= 50%); useful share"
            f" {100 * tp['useful_fraction_of_executed_flops']:.0f}%",
            f"           ({tp['pairs']} HH pairs, max_length {tp['max_length']}, batch {tp['batch_size']},"
            f" {tp['threads']} threads)",
        ]
    lines += accuracy_lines()
    st = _read("train_step.json")
    if st:
        lines.append(f"one Step (text demo, finetune MiniLM, {st['train_pairs']} pairs, max_length {st['max_length']}):"
                     f" {st['step_seconds']:.1f} s (target <= 90 s); stages {st['stage_seconds']}")
    print("\n".join(lines))


def accuracy_lines() -> list[str]:
    """The sweep (one line per setting) and, per tag and training size, the splits and their pooled CI."""
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("train_accuracy_*_split*.json"))]
    lines = []
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["tag"], r["train_pairs"]), []).append(r)
    for (tag, n), rs in sorted(groups.items()):
        c = rs[0]["config"]
        lines.append(f"{tag} (n_train {n}; lr {c['learning_rate']:g}, min_steps {c['min_steps']}, max_passes "
                     f"{c['max_passes']}, max_length {c['max_length']}, batch {c['batch_size']}, head {c['head_init']},"
                     f" val {c['validation_fraction']}, patience {c.get('patience', 3)},"
                     f" cpu_bf16 {c.get('cpu_bf16', False)}, stop on {c.get('validation_metric', 'loss')}):")
        for r in sorted(rs, key=lambda r: r["split"]):
            d, fd = r["finetune_minus_linear_prompt_response"], r["fit_details"]
            ft, lin = 100 * r["finetune_accuracy"], 100 * r["linear_prompt_response_accuracy"]
            lines.append(
                f"  split {r['split']}: finetune {ft:.1f}%  linear {lin:.1f}%  diff {100 * d['estimate']:+.1f} "
                f"[{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]  ({r['test_pairs']} test; "
                f"{fd.get('optimizer_steps')} steps, passes {fd.get('passes')}, best step {fd.get('best_step')}, "
                f"fit {r['fit_seconds']:.0f} s)")
        if len(rs) > 1:
            diff = paired_bootstrap([np.array(r["correct"]["finetune"]) for r in rs],
                                    [np.array(r["correct"]["linear_prompt_response"]) for r in rs], seed=0)
            lines.append(f"  pooled over {len(rs)} splits: finetune − linear = {100 * diff.estimate:+.1f} "
                         f"[{100 * diff.ci_low:+.1f}, {100 * diff.ci_high:+.1f}] points")
            _write({"tag": tag, "train_pairs": n, "splits": [r["split"] for r in rs], **diff.to_dict()},
                   f"train_pooled_{tag}_n{n}.json", quiet=True)
    return lines


def _write(out: dict, name: str, quiet: bool = False) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(json.dumps(out, indent=2))
    if quiet:
        return
    print(json.dumps({k: v for k, v in out.items() if k != "correct"}, indent=2))
    print(f"wrote {RESULTS / name}")


def _read(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", required=True, choices=["throughput", "accuracy", "step", "table"])
    parser.add_argument("--pairs", type=int, default=None, help="throughput: HH pairs (256); step: demo pairs (500)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per text (default: the config's)")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per training batch (default: the config's)")
    parser.add_argument("--score-pairs", type=int, default=64, help="pairs per scoring batch (2x texts)")
    parser.add_argument("--split", type=int, default=0, help="accuracy: split seed (sweep: use splits >= 10)")
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--test", type=int, default=0, help="accuracy: test pairs (0 = every pair not trained on)")
    parser.add_argument("--tag", default=None, help="accuracy: name of this setting (default: its head_init)")
    parser.add_argument("--force", action="store_true", help="accuracy: redo a result that exists")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--min-steps", type=int, default=None)
    parser.add_argument("--max-passes", type=int, default=None)
    parser.add_argument("--head-init", default=None, choices=["linear_probe", "fresh"])
    parser.add_argument("--validation-fraction", type=float, default=None)
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--min-validation-pairs", type=int, default=None)
    parser.add_argument("--validation-metric", default=None, choices=["loss", "scaled_loss"])
    parser.add_argument("--cpu-bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="train in bfloat16 autocast on a CPU that has it (default: the config's)")
    parser.add_argument("--budget", type=int, default=32)
    args = parser.parse_args()
    if args.pairs is None:
        args.pairs = 500 if args.part == "step" else 256
    {"throughput": part_throughput, "accuracy": part_accuracy, "step": part_step, "table": part_table}[args.part](args)


if __name__ == "__main__":
    main()
