"""The fine-tuned reward model: throughput against TRL, FLOP rate, accuracy against the linear head, one Step.

Each part is one short process (the machine is shared); every part writes bench/results/train_<part>*.json
and ``--part table`` prints them together.

    .venv/bin/python bench/train.py --part throughput [--pairs 256 --max-length 128 --batch-size 16]
    .venv/bin/python bench/train.py --part accuracy --split 0 [--train 300 --test 1000 --max-length 256]
    .venv/bin/python bench/train.py --part step [--pairs 500 --budget 32 --max-length 128]
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

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh_harmless_dev.jsonl"
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
    pairs, _ = load_pairs(HH)
    train, test = train_test_split(pairs, test_fraction=n_test / len(pairs), seed=seed)
    order = np.random.default_rng(seed).permutation(len(train))
    return [train[i] for i in order[:n_train]], test[:n_test]


def part_throughput(args) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    peak = matmul_peak()
    train, _ = hh_split(0, args.pairs, 100)
    cfg = RewardModelConfig(kind="finetune", max_length=args.max_length, batch_size=args.batch_size,
                            learning_rate=5e-5, epochs_per_step=1, score_batch_size=2 * args.score_pairs)
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


def part_accuracy(args) -> dict:
    train, test = hh_split(args.split, args.train, args.test)
    out: dict = {"split": args.split, "train_pairs": len(train), "test_pairs": len(test),
                 "max_length": args.max_length, "train_epochs": args.train_epochs}
    correct = {}
    encoder = TextEncoder()
    for mode in ("prompt_response", "response"):
        start = time.perf_counter()
        linear = LinearRewardModel(TextFeaturizer(encoder, mode), TrainConfig())
        linear.fit(train)
        correct[f"linear_{mode}"] = (linear.margins(test) > 0).astype(float)
        out[f"linear_{mode}_seconds"] = time.perf_counter() - start
    cfg = RewardModelConfig(kind="finetune", max_length=args.max_length, batch_size=16, learning_rate=5e-5,
                            epochs_per_step=args.train_epochs, seed=args.split)
    start = time.perf_counter()
    model = FinetuneRewardModel(cfg)
    report = model.fit(train)
    out["finetune_fit_seconds"] = time.perf_counter() - start
    out["finetune_truncated_train_pairs"] = report.details["truncated_pairs"]
    out["finetune_response_cut_train_pairs"] = report.details["response_cut_pairs"]
    start = time.perf_counter()
    correct["finetune"] = (model.margins(test) > 0).astype(float)
    out["finetune_score_seconds"] = time.perf_counter() - start
    for name, c in correct.items():
        out[f"{name}_accuracy"] = float(c.mean())
    for a, b in (("finetune", "linear_prompt_response"), ("finetune", "linear_response"),
                 ("linear_response", "linear_prompt_response")):
        out[f"{a}_minus_{b}"] = paired_bootstrap([correct[a]], [correct[b]], seed=args.split).to_dict()
    out["correct"] = {k: v.astype(int).tolist() for k, v in correct.items()}
    _write(out, f"train_accuracy_split{args.split}.json")
    return out


def part_step(args) -> dict:
    from mars_core.run.components import build_runtime
    from mars_core.run.config import DataConfig, RefineConfig, RunConfig
    from mars_core.run.refine import RefinementRun
    from mars_core.store.sqlite import Store

    config = RunConfig(
        data=DataConfig(source="demo:text", n_pairs=args.pairs),
        refine=RefineConfig(epochs=2, budget_per_epoch=args.budget, cross_fit_folds=0),
        reward=RewardModelConfig(kind="finetune", max_length=args.max_length),
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
           "max_length": args.max_length, "budget": args.budget, "target_seconds": 90}
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
    splits = [s for s in (_read(f"train_accuracy_split{i}.json") for i in range(10)) if s]
    for s in splits:
        d = s["finetune_minus_linear_prompt_response"]
        r = s["linear_response_minus_linear_prompt_response"]
        lines.append(
            f"split {s['split']}: finetune {100 * s['finetune_accuracy']:.1f}%  linear joined "
            f"{100 * s['linear_prompt_response_accuracy']:.1f}%  linear response "
            f"{100 * s['linear_response_accuracy']:.1f}%   finetune−joined {100 * d['estimate']:+.1f} "
            f"[{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]   response−joined {100 * r['estimate']:+.1f} "
            f"[{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]")
    if len(splits) > 1:
        pooled = {}
        for a, b in (("finetune", "linear_prompt_response"), ("finetune", "linear_response"),
                     ("linear_response", "linear_prompt_response")):
            diff = paired_bootstrap([np.array(s["correct"][a]) for s in splits],
                                    [np.array(s["correct"][b]) for s in splits], seed=0)
            pooled[f"{a}_minus_{b}"] = diff.to_dict()
            lines.append(f"pooled over {len(splits)} splits: {a} − {b} = {100 * diff.estimate:+.1f} "
                         f"[{100 * diff.ci_low:+.1f}, {100 * diff.ci_high:+.1f}] points")
        _write(pooled, "train_accuracy_pooled.json")
    st = _read("train_step.json")
    if st:
        lines.append(f"one Step (text demo, finetune MiniLM, {st['train_pairs']} pairs, max_length {st['max_length']}):"
                     f" {st['step_seconds']:.1f} s (target <= 90 s); stages {st['stage_seconds']}")
    print("\n".join(lines))


def _write(out: dict, name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "correct"}, indent=2))
    print(f"wrote {RESULTS / name}")


def _read(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", required=True, choices=["throughput", "accuracy", "step", "table"])
    parser.add_argument("--pairs", type=int, default=None, help="throughput: HH pairs (256); step: demo pairs (500)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per text (128; accuracy: 256)")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per training batch (both trainers)")
    parser.add_argument("--score-pairs", type=int, default=64, help="pairs per scoring batch (2x texts)")
    parser.add_argument("--split", type=int, default=0, help="accuracy: split seed")
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--train-epochs", type=int, default=2, help="accuracy: passes over the 300 pairs")
    parser.add_argument("--budget", type=int, default=32)
    args = parser.parse_args()
    if args.pairs is None:
        args.pairs = 500 if args.part == "step" else 256
    if args.max_length is None:
        args.max_length = 256 if args.part == "accuracy" else 128
    {"throughput": part_throughput, "accuracy": part_accuracy, "step": part_step, "table": part_table}[args.part](args)


if __name__ == "__main__":
    main()
