"""Curvature benchmark: exact linear spectra, one HVP through MiniLM, and how many HVPs Lanczos needs.

    .venv/bin/python bench/curvature.py [--quick] [--json PATH] [--threads N]

Why these numbers: the app shows the exact spectrum of the linear head every epoch (must be instant),
and the iterative estimators' cost is (HVPs) × (seconds per HVP), so we measure both factors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mars_core.analysis.curvature import curvature_contributions, linear_curvature_summary  # noqa: E402
from mars_core.analysis.hvp import (  # noqa: E402
    bt_hvp_operator,
    dense_hessian,
    hutchinson_trace,
    hutchpp_trace,
    lanczos_top_k,
)
from mars_core.model.encoders import pick_device, resolve_model  # noqa: E402

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "curvature.json"
PROMPTS = [
    (
        "How do I boil an egg?",
        "Simmer it for nine minutes, then cool it in cold water.",
        "Microwave it whole.",
    ),
    ("What is the capital of Australia?", "Canberra.", "Sydney, obviously."),
    (
        "Is it safe to mix bleach and ammonia?",
        "No: it releases toxic chloramine gas.",
        "Yes, it cleans better.",
    ),
    ("Translate 'thank you' to French.", "Merci.", "Gracias."),
    (
        "Give me a tip for sleeping better.",
        "Keep a regular schedule and a dark, cool room.",
        "Drink coffee late.",
    ),
    (
        "What does HTTP 404 mean?",
        "The server could not find the requested resource.",
        "The server is on fire.",
    ),
    (
        "Summarise photosynthesis.",
        "Plants turn light, water and CO2 into sugar and oxygen.",
        "Plants eat soil.",
    ),
    ("How many legs does a spider have?", "Eight.", "Six, like all insects."),
]


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pair_features(n: int, d: int, rng: np.random.Generator, decay: float) -> np.ndarray:
    """Δφ of unit-norm 'embeddings'; decay > 0 gives a power-law covariance, as real sentence embeddings have."""
    scales = np.arange(1, d + 1) ** (-decay / 2)
    emb = rng.normal(size=(2 * n, d)) * scales
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb[:n] - emb[n:]


def hvps_to_relative_accuracy(result, truth: np.ndarray, k: int, rel: float) -> int | None:
    """First step at which all top-k Ritz values are within ``rel`` of the true top-k."""
    for steps in range(k, result.iterations + 1):
        ritz = result.ritz_values_after(steps)[:k]
        if np.all(np.abs(ritz - truth[:k]) <= rel * np.abs(truth[:k])):
            return steps
    return None


def bench_exact_linear(repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for n in (100, 500, 5000):
        dphi = pair_features(n, 384, rng, decay=1.0)
        margins = dphi @ rng.normal(size=384) * 3
        seconds = timed(
            lambda dphi=dphi, margins=margins: linear_curvature_summary(dphi, margins, 1e-3), repeats
        )
        contrib = timed(lambda dphi=dphi, margins=margins: curvature_contributions(dphi, margins), repeats)
        method = linear_curvature_summary(dphi, margins, 1e-3).method
        rows.append(
            {"d": 384, "n_pairs": n, "method": method, "seconds": seconds, "contributions_seconds": contrib}
        )
    return rows


def bench_lanczos_linear(k: int, rel: float, iters: int) -> list[dict]:
    rows = []
    for label, decay in (("power-law features", 1.0), ("isotropic features", 0.0)):
        rng = np.random.default_rng(1)
        dphi = pair_features(5000, 384, rng, decay=decay)
        theta = torch.tensor(rng.normal(size=384) * 3, dtype=torch.float64, requires_grad=True)
        feats = torch.as_tensor(dphi)
        margins = (feats @ theta).detach().numpy()
        truth = np.asarray(linear_curvature_summary(dphi, margins, 1e-3, k=k).eigenvalues)
        op = bt_hvp_operator(lambda f, theta=theta: f @ theta, [theta], list(feats.split(1000)), l2=1e-3)
        rows.append(lanczos_row(f"linear d=384, N=5000, {label}", op, truth, k, rel, iters))
    return rows


def lanczos_row(name: str, op, truth: np.ndarray, k: int, rel: float, iters: int) -> dict:
    full = lanczos_top_k(op, k=k, iters=iters, tol=0.0, seed=0)  # run to the end to read off the history
    stopped = lanczos_top_k(op, k=k, iters=iters, tol=rel, seed=0)  # the built-in residual stopping rule
    return {
        "problem": name,
        "dim": op.dim,
        "k": k,
        "hvps_to_rel_accuracy": hvps_to_relative_accuracy(full, truth, k, rel),
        "stopping_rule_hvps": stopped.n_hvp,
        "stopping_rule_converged": stopped.converged,
        "stopping_rule_max_rel_error": float(
            np.max(np.abs(stopped.eigenvalues - truth[:k]) / np.abs(truth[:k]))
        ),
        "top_k_true": truth[:k].tolist(),
        "gap_ratio_k": float(truth[k - 1] / truth[k]) if len(truth) > k else None,
    }


def small_mlp(n_pairs: int, width: int):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    xp = torch.randn(n_pairs, 32, generator=gen, dtype=torch.float64)
    xn = torch.randn(n_pairs, 32, generator=gen, dtype=torch.float64)
    gold = torch.randn(32, generator=gen, dtype=torch.float64)
    swap = ((xp - xn) @ gold < 0)[:, None]  # orient pairs by a gold linear rule so training has signal
    xp, xn = torch.where(swap, xn, xp), torch.where(swap, xp, xn)
    model = torch.nn.Sequential(
        torch.nn.Linear(32, width), torch.nn.Tanh(), torch.nn.Linear(width, 1)
    ).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        (-torch.nn.functional.logsigmoid((model(xp) - model(xn)).squeeze(-1)).mean()).backward()
        opt.step()
    batches = list(zip(xp.split(256), xn.split(256), strict=True))
    return model, batches


def bench_mlp(k: int, rel: float, iters: int, n_pairs: int, width: int) -> tuple[list[dict], list[dict]]:
    model, batches = small_mlp(n_pairs, width)

    def margin_fn(b):
        return (model(b[0]) - model(b[1])).squeeze(-1)

    lanczos_rows, trace_rows = [], []
    for kind in ("hessian", "gauss_newton"):
        op = bt_hvp_operator(margin_fn, model.parameters(), batches, l2=1e-3, kind=kind)
        dense = dense_hessian(op).numpy()
        truth = np.linalg.eigvalsh(dense)[::-1]
        name = f"MLP 32-{width}-1 tanh, N={n_pairs}, {kind}"
        lanczos_rows.append(lanczos_row(name, op, truth, k, rel, iters))
        exact_trace = float(np.trace(dense))
        for est in (hutchinson_trace(op, probes=60, seed=0), hutchpp_trace(op, n_hvp=60, seed=0)):
            trace_rows.append(
                {
                    "problem": name,
                    "method": est.method,
                    "n_hvp": est.n_hvp,
                    "true_trace": exact_trace,
                    "estimate": est.estimate,
                    "std_error": est.std_error,
                    "abs_error_in_se": abs(est.estimate - exact_trace) / est.std_error
                    if est.std_error
                    else None,
                }
            )
    return lanczos_rows, trace_rows


def bench_minilm_hvp(repeats: int, device: str) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the new regression head's "newly initialized" notice is expected
    path = str(resolve_model("packaged:minilm"))
    # eager attention: the fused SDPA kernels have no second derivative
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, attn_implementation="eager"
    )
    model = model.to(device).eval()
    tok = AutoTokenizer.from_pretrained(path)
    prompts = [p for p, _, _ in PROMPTS]

    def encode(responses: list[str]):
        enc = tok(prompts, responses, truncation=True, max_length=64, padding=True, return_tensors="pt")
        return {key: val.to(device) for key, val in enc.items()}

    chosen, rejected = encode([c for _, c, _ in PROMPTS]), encode([r for _, _, r in PROMPTS])

    def margin_fn(batch):
        return (model(**batch[0]).logits - model(**batch[1]).logits).squeeze(-1)

    params = [p for p in model.parameters() if p.requires_grad]
    batches = [(chosen, rejected)]
    hessian = bt_hvp_operator(margin_fn, params, batches, kind="hessian")
    gauss_newton = bt_hvp_operator(margin_fn, params, batches, kind="gauss_newton")
    v = torch.randn(hessian.dim, generator=torch.Generator().manual_seed(0)).to(device)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def forward():
        with torch.no_grad():
            margin_fn(batches[0])
        sync()

    def gradient():
        loss = -torch.nn.functional.logsigmoid(margin_fn(batches[0])).mean()
        torch.autograd.grad(loss, params)
        sync()

    return {
        "model": "packaged:minilm (AutoModelForSequenceClassification, num_labels=1, eager attention)",
        "device": device,
        "n_params": hessian.dim,
        "pairs": len(PROMPTS),
        "tokens_per_sequence": int(chosen["input_ids"].shape[1]),
        "forward_seconds": timed(forward, repeats),
        "gradient_seconds": timed(gradient, repeats),
        "hvp_seconds": timed(lambda: (hessian.matvec(v), sync()), repeats),
        "gauss_newton_matvec_seconds": timed(lambda: (gauss_newton.matvec(v), sync()), repeats),
    }


def print_table(title: str, rows: list[dict], columns: list[str]) -> None:
    print(f"\n## {title}")
    print(" | ".join(columns))
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col)
            cells.append(f"{value:.4g}" if isinstance(value, float) else str(value))
        print(" | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a smaller MLP")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default=None, help="device for the MiniLM HVP (default: best available)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else 3
    k, rel, iters = 5, 1e-2, 150
    started = time.perf_counter()

    exact = bench_exact_linear(repeats=3 if args.quick else 7)
    print_table(
        "exact linear spectrum (numpy)", exact, ["d", "n_pairs", "method", "seconds", "contributions_seconds"]
    )

    minilm = bench_minilm_hvp(repeats, pick_device(args.device))
    print_table(
        "one BT-loss HVP through MiniLM (8 pairs)",
        [minilm],
        ["device", "n_params", "tokens_per_sequence", "forward_seconds", "gradient_seconds", "hvp_seconds"]
        + ["gauss_newton_matvec_seconds"],
    )

    lanczos = bench_lanczos_linear(k, rel, iters)
    mlp_rows, trace_rows = bench_mlp(
        k, rel, iters, n_pairs=256 if args.quick else 1024, width=16 if args.quick else 32
    )
    lanczos += mlp_rows
    print_table(
        f"Lanczos HVPs for the top-{k} eigenvalues within {rel:.0%}",
        lanczos,
        [
            "problem",
            "dim",
            "hvps_to_rel_accuracy",
            "stopping_rule_hvps",
            "stopping_rule_max_rel_error",
            "gap_ratio_k",
        ],
    )
    print_table(
        "trace estimators on the MLP (60 HVPs)",
        trace_rows,
        ["problem", "method", "n_hvp", "true_trace", "estimate", "std_error", "abs_error_in_se"],
    )

    report = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "quick": args.quick,
        "exact_linear": exact,
        "minilm_hvp": minilm,
        "lanczos": lanczos,
        "trace": trace_rows,
        "total_seconds": time.perf_counter() - started,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json} in {report['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
