"""What one decoding step of the packaged paraphraser costs, against what this machine can do at best.

    .venv/bin/python bench/decode_floor.py [--real 48] [--rows 1,2,4,16] [--json bench/results/decode_floor.json]

Why: issue 16's remaining targets (>= 250 tokens/s with one candidate per text, the demo Step in <= 30 s)
need a cheaper decoding step. This bench says where a step's time goes and how far it is from the
machine's limits, so that the next try starts from numbers, not from a guess:
  * the memory read bandwidth (a sum over 256 MB of float32, the best of 5);
  * the int8 layer products of one step (the model's own int8 weights, as the lean pass calls them: 121 products
    including the output head) at 1, 4 and 16 rows, and the bandwidth at which they read their weights;
  * a real decoding step at each row count (the cascade path, real HH prompts, weights and keys cold
    as in decoding), and the same step's floor: its weight bytes read at the measured bandwidth.
The "ceiling" columns are what a step at that floor would give: rows x 1000 / floor ms tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.paraphrase import real_texts  # noqa: E402
from mars_core.augment.int8_linear import Int8Linear  # noqa: E402
from mars_core.augment.lm_paraphraser import LMParaphraser  # noqa: E402
from mars_core.augment.paraphraser import ParaphraseConfig  # noqa: E402


def best_ms(run, repeats: int = 5) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return min(times)


def read_bandwidth_gbs() -> float:
    """GB/s of one pass reading 256 MB (too big for any cache)."""
    data = torch.randn(64 * 2**20)
    return data.numel() * 4 / best_ms(data.sum) / 1e6


def product_ms(layers: list[Int8Linear], rows: int) -> float:
    """One step's int8 products at ``rows`` rows: every layer once, as a decoding step calls them."""
    inputs = [torch.randn(rows, layer.in_features) for layer in layers]

    def run() -> None:
        for layer, x in zip(layers, inputs):
            layer(x)

    return best_ms(run)


def step_ms(para: LMParaphraser, prompts: list[list[int]], rows: int, steps: int = 24) -> float:
    """Mean time of a real decoding step with ``rows`` rows in flight (after 3 warm-up steps)."""
    prefix = para._shared_prefix(prompts[:rows], para.template_prefix(para.instruction))
    with torch.inference_mode():
        cascade, logits, pos = para._prefill(prefix, prompts[:rows], [steps + 8] * rows)
        tokens = logits.argmax(-1)
        for _ in range(3):
            para._forward(cascade, tokens[:, None], pos[:, None])
            pos = pos + 1
        start = time.perf_counter()
        for _ in range(steps):
            para._forward(cascade, tokens[:, None], pos[:, None])
            pos = pos + 1
    return (time.perf_counter() - start) * 1000 / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=int, default=48, help="real HH-RLHF responses to take prompts from")
    parser.add_argument("--rows", default="1,2,4,16", help="comma-separated rows in flight")
    parser.add_argument("--json", default="bench/results/decode_floor.json")
    args = parser.parse_args()
    rows_list = [int(r) for r in args.rows.split(",")]

    para = LMParaphraser(ParaphraseConfig())
    if para._lean is not None:  # the products a step makes: joined q/k/v and gate/up, o, down, the output head
        called = [p for layer in para._lean.layers for p in (layer.qkv, layer.o_proj, layer.gate_up, layer.down_proj)]
        called.append(para._lean.head)
    else:
        called = list(para.model.modules())
    layers = [m for m in called if isinstance(m, Int8Linear)]
    if not layers:
        raise SystemExit(f"the paraphraser runs in {para.precision}, not int8: this bench measures the int8 path")
    weight_mb = sum(layer.weight.numel() for layer in layers) / 1e6
    prompts = sorted((para.prompt_ids(t, para.instruction) for t in real_texts(args.real)), key=len)
    bandwidth = read_bandwidth_gbs()
    floor_ms = weight_mb / bandwidth
    print(f"{para.precision}, {torch.get_num_threads()} threads, {len(layers)} int8 products per step reading "
          f"{weight_mb:.1f} MB of weights; memory read bandwidth {bandwidth:.1f} GB/s -> a step's weight floor "
          f"{floor_ms:.1f} ms")
    results = []
    print(f"{'rows':>4} {'step ms':>8} {'products ms':>11} {'products GB/s':>13} {'rest ms':>8} "
          f"{'tokens/s':>8} {'ceiling tokens/s':>16}")
    for rows in rows_list:
        products = product_ms(layers, rows)
        step = step_ms(para, prompts, rows)
        row = {"rows": rows, "step_ms": round(step, 2), "products_ms": round(products, 2),
               "products_gbs": round(weight_mb / products, 1), "rest_ms": round(step - products, 2),
               "tokens_per_s": round(rows * 1000 / step, 1), "ceiling_tokens_per_s": round(rows * 1000 / floor_ms, 1)}
        results.append(row)
        print(f"{rows:>4} {step:>8.1f} {products:>11.1f} {row['products_gbs']:>13.1f} {step - products:>8.1f} "
              f"{row['tokens_per_s']:>8.1f} {row['ceiling_tokens_per_s']:>16.1f}")
    out = {"precision": para.precision, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "weight_mb": round(weight_mb, 1), "read_bandwidth_gbs": round(bandwidth, 1),
           "weight_floor_ms": round(floor_ms, 2), "rows": results}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
