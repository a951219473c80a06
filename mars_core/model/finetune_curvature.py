"""Curvature of the BT loss for a fine-tuned transformer, on the same HVP estimators as any torch model.

What is computed, so the Curvature page and "curvature of added pairs" mean the same for both models:
the Gauss-Newton (Fisher) term G = mean_i σ'(Δ_i) ∇θΔ_i ∇θΔ_iᵀ of the BT loss, whose trace is the mean of
the per-pair contributions σ'(Δ_i)·‖∇θΔ_i‖². For the linear model G is the exact Hessian; for the score
layer of a transformer it is too (Δ is linear in that layer's weights); deeper, G is the PSD part of the
Hessian that the paper's σ' argument is about (the rest is weighted by the residual (σ(Δ) − 1) and by the
second derivative of the network, and is indefinite).

θ is a chosen subset, not every weight: ``head`` (the score layer, cheap and exact per pair) or
``last_block`` (head + pooler + the last transformer block). The spectrum runs on a seeded subsample of
pairs whose size the method string reports.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from mars_core.analysis.curvature import SpectrumSummary, sigmoid_prime
from mars_core.analysis.hvp import HVPOperator, bt_hvp_operator, iterative_curvature_summary
from mars_core.data.pairs import PreferencePair
from mars_core.model.batching import PairTokenizer, pad_batch
from mars_core.model.pooled_head import score_layer  # noqa: F401  (re-exported: callers import it from here)

DEEP_BATCH = 8  # pairs per forward pass in curvature products (activations are kept for double backward)
_BLOCK = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")


def last_block_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """Parameters from the first one of the last numbered block to the end (pooler, final norms, head)."""
    named = list(model.named_parameters())
    indices = [int(m.group(1)) for name, _ in named if (m := _BLOCK.search(f".{name}"))]
    if not indices:
        raise ValueError(f"cannot find numbered transformer blocks in {type(model).__name__}; use curvature_params=head")
    last = max(indices)
    first = next(i for i, (name, _) in enumerate(named) if (m := _BLOCK.search(f".{name}")) and int(m.group(1)) == last)
    return [(name, p) for name, p in named[first:] if p.requires_grad]  # the frozen score bias stays out


def head_spectrum(dh: np.ndarray, margins: np.ndarray, k: int, total_pairs: int, seed: int) -> SpectrumSummary:
    """Lanczos + Hutch++ on the score layer's weight: Δ = wᵀΔh is linear in w, so G is the exact Hessian there."""
    x = torch.as_tensor(dh, dtype=torch.float64)
    weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)  # the operator does not depend on w
    delta = torch.as_tensor(margins, dtype=torch.float64)

    def margin_fn(rows: torch.Tensor) -> torch.Tensor:
        # value = the model's current margins, gradient = Δh: the σ' weights come from the real margins
        return x[rows] @ weight + delta[rows]

    batches = [torch.arange(i, min(i + 512, len(x))) for i in range(0, len(x), 512)]
    op = bt_hvp_operator(margin_fn, [weight], batches, kind="gauss_newton")
    return _summary(op, k, seed, f"head weight ({op.dim} params)", len(x), total_pairs)


def _summary(op: HVPOperator, k: int, seed: int, params: str, used: int, total: int) -> SpectrumSummary:
    summary = iterative_curvature_summary(op, k=min(k, op.dim), iters=min(100, op.dim), trace_hvp=60, seed=seed)
    method = f"{summary.method}, BT gauss-newton on {params}, {used}/{total} pairs"
    return SpectrumSummary(**{**summary.__dict__, "method": method})


@contextlib.contextmanager
def only_trainable(model: torch.nn.Module, chosen: Sequence[torch.nn.Parameter]) -> Iterator[None]:
    """Make only ``chosen`` require gradients (so autograd records no graph below them), then restore."""
    before = {p: p.requires_grad for p in model.parameters()}
    keep = {id(p) for p in chosen}
    attn = getattr(model.config, "_attn_implementation", None)
    try:
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
        if attn not in (None, "eager") and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("eager")  # fused attention has no second derivative
        model.eval()  # dropout would make every product a different matrix
        yield
    finally:
        for p, flag in before.items():
            p.requires_grad_(flag)
        if attn not in (None, "eager") and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(attn)


def _pair_batches(batcher: PairTokenizer, pairs: Sequence[PreferencePair], device) -> list[dict[str, torch.Tensor]]:
    out = []
    for i in range(0, len(pairs), DEEP_BATCH):
        chunk = pairs[i:i + DEEP_BATCH]
        prompts = [p.prompt for p in chunk]
        enc = batcher.encode(prompts * 2, [p.chosen for p in chunk] + [p.rejected for p in chunk])
        out.append({k: v.to(device) for k, v in pad_batch([e.ids for e in enc], batcher.pad_id).items()})
    return out


def _margins(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    r = model(**batch).logits[:, 0].to(torch.float64)
    half = r.shape[0] // 2
    return r[:half] - r[half:]


def deep_pair_curvature(model, batcher: PairTokenizer, pairs: Sequence[PreferencePair], device) -> np.ndarray:
    """σ'(Δ_i)·‖∇θΔ_i‖² on head + last block: one forward per batch, one backward per pair."""
    params = [p for _, p in last_block_parameters(model)]
    out: list[float] = []
    with only_trainable(model, params):
        for batch in _pair_batches(batcher, pairs, device):
            margins = _margins(model, batch)
            for i in range(len(margins)):
                grads = torch.autograd.grad(margins[i], params, retain_graph=True, allow_unused=True)
                sq = sum(float((g.double() ** 2).sum()) for g in grads if g is not None)
                out.append(float(sigmoid_prime(float(margins[i].detach()))) * sq)
    return np.asarray(out)


def deep_spectrum(model, batcher, pairs, device, k: int, total_pairs: int, seed: int) -> SpectrumSummary:
    """Lanczos + Hutch++ on the Gauss-Newton operator of head + last block, products by double back-prop."""
    named = last_block_parameters(model)
    params = [p for _, p in named]
    with only_trainable(model, params):
        op = bt_hvp_operator(lambda b: _margins(model, b), params, _pair_batches(batcher, pairs, device),
                             kind="gauss_newton")
        # every product re-runs the model on the subsample: fewer iterations than for the head
        summary = iterative_curvature_summary(op, k=min(k, op.dim), iters=max(2 * k, 30), trace_hvp=30, seed=seed)
    method = f"{summary.method}, BT gauss-newton on last block + head ({op.dim} params), {len(pairs)}/{total_pairs} pairs"
    return SpectrumSummary(**{**summary.__dict__, "method": method})
