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
attention's input projections stay float (``FLOAT_LAYERS``): with them in int8, demo paraphrases
flipped refusal polarity in 10.3 % of candidates against float32's 6.5 %; kept float, 6.5 %
(bench/paraphrase_quality.py). CPU only: on CUDA, bfloat16 is the fast path and ``torch._int_mm``
has shape limits there.
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
    """(int8 values, float32 scale per row) with ``values * scale ≈ matrix``; an all-zero row gets scale 1."""
    matrix = matrix.float()
    scale = matrix.abs().amax(dim=-1, keepdim=True) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.round(matrix / scale).to(torch.int8), scale


class Int8Linear(nn.Module):
    """A frozen ``nn.Linear`` computed as int8 x int8 -> int32, then rescaled to float32."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        values, scale = quantize_rows(linear.weight.detach())
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_t", values.t().contiguous())  # [in, out]: _int_mm's right-hand layout
        self.register_buffer("weight_scale", scale.reshape(1, -1))
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        values, scale = quantize_rows(x.reshape(-1, self.in_features))
        out = torch._int_mm(values, self.weight_t).float().mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


# SmolLM2's attention inputs carry outlier channels (a token's largest |activation| is 20-65x its mean), which a
# per-token int8 scale crushes: v_proj's output was off by up to 13 %, the other projections by 2-5 %
FLOAT_LAYERS = ("q_proj", "k_proj", "v_proj")


def quantize_linears(model: nn.Module, keep: tuple[str, ...] = FLOAT_LAYERS) -> int:
    """Replace every ``nn.Linear`` of ``model`` (in place) by an ``Int8Linear``, except those named in ``keep``;
    returns how many were replaced.

    A tied output head becomes its own int8 copy; the input embeddings it was tied to stay as they are."""
    targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if isinstance(child, nn.Linear) and name not in keep]
    for parent, name, child in targets:
        setattr(parent, name, Int8Linear(child))
    return len(targets)
