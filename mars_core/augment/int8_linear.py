"""Int8 weights with per-token int8 activations for a causal LM's linear layers (``--paraphrase-dtype int8``).

Why (profiled on SmolLM2-135M, 32 rows in flight, float32): 75 % of a decoding step was the linear
layers' matrix products, and they are bound by reading the weights (540 MB of float32 per step), not
by arithmetic. Int8 weights are a quarter of that. Each token's activations get their own scale and
the products accumulate in int32, which is exact, so a layer's result for a row does not depend on
the rows beside it (torch's ``quantize_dynamic`` scales the whole batch at once). The model as a whole
is another matter: attention over rows padded to different lengths differs in the last bits, and
int8 rounding turns such differences into other samples (11 of 12 rows differed between a batch and
alone). So with int8 layers, row k of a text is fixed by the store's cache and by replaying the same
calls, not by the engine alone, as with CTranslate2.

Weights get one scale per output channel (symmetric, ±127); activations one scale per token. The
attention's input projections (q/k/v) read activations with outlier channels, which per-token int8
crushes (round 6: all-int8 demo paraphrases flipped refusal polarity in 10.3 % of candidates against
float32's 6.5 %). So, on Llama-style models, their outlier range is first moved into the weights
(``smooth_attention_inputs``, SmoothQuant): the float model is unchanged, and q/k/v go int8 too, so a
decoding step reads about a quarter fewer weight bytes (134 MB instead of 184; quality in
bench/paraphrase_quality.py and docs/results.md, round 7).
Other architectures keep q/k/v float (``FLOAT_LAYERS``). CPU only: on CUDA, bfloat16 is the fast path
and ``torch._int_mm`` has shape limits there.
"""

from __future__ import annotations

import functools

import torch
from torch import nn


@functools.cache
def int8_matmul_works() -> bool:
    """Whether this torch computes int8 x int8 -> int32 products on the CPU, and exactly."""
    a = torch.arange(-64, 64, dtype=torch.int8).reshape(2, 64)
    b = torch.arange(64 * 8, dtype=torch.int32).remainder(255).sub(127).to(torch.int8).reshape(64, 8)
    try:
        return torch.equal(torch._int_mm(a, b), a.int() @ b.int())
    except (RuntimeError, AttributeError):  # an old torch, or a build without the CPU kernel
        return False


def quantize_rows(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values, float32 scale per row) with ``values * scale ≈ matrix``; an all-zero row gets a tiny
    scale (its values are 0 either way). Written in few tensor operations: it runs on every layer's input."""
    matrix = matrix.float()
    scale = matrix.abs().amax(dim=-1, keepdim=True).div_(127.0).clamp_min_(torch.finfo(torch.float32).tiny)
    return matrix.div(scale).round_().to(torch.int8), scale


class Int8Linear(nn.Module):
    """A frozen ``nn.Linear`` computed as int8 x int8 -> int32, then rescaled to float32."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        values, scale = quantize_rows(linear.weight.detach())
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self._set(values, scale.reshape(1, -1), bias)

    def _set(self, values: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.out_features, self.in_features = values.shape
        self.register_buffer("weight", values)  # [out, in]; _int_mm reads its transpose as fast as a copy
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", bias)

    @classmethod
    def joined(cls, parts: list[Int8Linear]) -> Int8Linear:
        """One layer computing ``parts`` (which read the same input) at once, their outputs side by side.

        Each output channel keeps its own weight scale and the sums are exact, so every part's slice of
        the result equals that part's own output, bit for bit; the parts' buffers become views of the
        joined ones (no second copy of the weights)."""
        joined = cls.__new__(cls)
        nn.Module.__init__(joined)
        biases = [p.bias for p in parts]
        bias = None if all(b is None for b in biases) else torch.cat(
            [b if b is not None else torch.zeros(p.out_features) for b, p in zip(biases, parts)])
        joined._set(torch.cat([p.weight for p in parts]), torch.cat([p.weight_scale for p in parts], dim=1), bias)
        start = 0
        for p in parts:
            end = start + p.out_features
            p._set(joined.weight[start:end], joined.weight_scale[:, start:end],
                   None if bias is None else joined.bias[start:end])
            start = end
        return joined

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        values, scale = quantize_rows(x.reshape(-1, self.in_features))
        out = torch._int_mm(values, self.weight.t()).float().mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


# SmolLM2's attention inputs carry outlier channels (a token's largest |activation| is 20-65x its mean), which a
# per-token int8 scale crushes: v_proj's output was off by up to 13 %, the other projections by 2-5 %. Where they
# cannot be smoothed first (``smooth_attention_inputs``), these stay float.
FLOAT_LAYERS = ("q_proj", "k_proj", "v_proj")
SMOOTHING_ALPHA = 0.5


def quantize_linears(model: nn.Module, keep: tuple[str, ...] = FLOAT_LAYERS) -> int:
    """Replace every ``nn.Linear`` of ``model`` (in place) by an ``Int8Linear``, except those named in ``keep``;
    returns how many were replaced.

    A tied output head becomes its own int8 copy; the input embeddings it was tied to stay as they are."""
    targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if isinstance(child, nn.Linear) and name not in keep]
    for parent, name, child in targets:
        setattr(parent, name, Int8Linear(child))
    return len(targets)


def smoothing_scales(activation_absmax: torch.Tensor, weights: list[torch.Tensor],
                     alpha: float = SMOOTHING_ALPHA) -> torch.Tensor:
    """Per-input-channel factors s with (x / s) @ (W * s)ᵀ = x @ Wᵀ (SmoothQuant, Xiao et al. 2023).

    s_j = a_j^alpha / w_j^(1 - alpha), a_j the channel's largest |activation| seen, w_j its largest |weight|
    in any of ``weights`` (layers reading the same input): an outlier channel hands part of its range to
    the weights, whose int8 scale is per output channel and so barely notices one large column."""
    weight_absmax = torch.cat([w.detach().float() for w in weights]).abs().amax(dim=0)
    tiny = 1e-5
    return activation_absmax.float().clamp_min(tiny).pow(alpha) / weight_absmax.clamp_min(tiny).pow(1 - alpha)


def smooth_attention_inputs(model: nn.Module, calibration_ids: torch.Tensor, alpha: float = SMOOTHING_ALPHA) -> bool:
    """Fold smoothing scales into each decoder layer's input norm and its q/k/v weights (in place), so those
    layers can go int8 too; the float model's output is unchanged up to rounding. Returns False (and changes
    nothing) for a model without Llama-style layers (``input_layernorm`` feeding ``self_attn.q_proj/k_proj/v_proj``).

    The activation ranges come from one float pass over ``calibration_ids`` (lm_paraphraser's calibration
    prompt: the same text on every load, so the same scales)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    parts = [(layer.input_layernorm, [getattr(layer.self_attn, n) for n in FLOAT_LAYERS]) for layer in layers or []
             if hasattr(layer, "input_layernorm") and all(hasattr(getattr(layer, "self_attn", None), n)
                                                           for n in FLOAT_LAYERS)]
    if not parts or len(parts) != len(layers) or not all(
            isinstance(norm.weight, nn.Parameter) and all(type(x) is nn.Linear for x in linears)
            for norm, linears in parts):
        return False
    seen: dict[int, torch.Tensor] = {}

    def record(index: int):  # noqa: ANN202
        def hook(_module, _inputs, output) -> None:  # noqa: ANN001
            seen[index] = output.detach().reshape(-1, output.shape[-1]).abs().amax(dim=0).float()
        return hook

    handles = [norm.register_forward_hook(record(i)) for i, (norm, _) in enumerate(parts)]
    try:
        with torch.inference_mode():
            model(input_ids=calibration_ids, use_cache=False, logits_to_keep=1)
    finally:
        for handle in handles:
            handle.remove()
    with torch.no_grad():
        for i, (norm, linears) in enumerate(parts):
            scales = smoothing_scales(seen[i], [x.weight for x in linears], alpha).to(norm.weight.dtype)
            norm.weight.div_(scales)
            for linear in linears:
                linear.weight.mul_(scales)
    return True
