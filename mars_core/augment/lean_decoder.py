"""A lean forward pass for Llama-architecture decoders (the packaged SmolLM2) on the cascade path.

Why (profiled on 2 cores, int8 layers, 16 rows, one decoding step of SmolLM2-135M: 41 ms): the matrix
products took a fifth of the step. The rest was hundreds of small tensor operations per layer, each
a few microseconds of dispatch: transformers' layers are written for every device, cache and
attention kind, and the model is small enough (576 wide) that bookkeeping outweighs arithmetic. This
pass computes the same layers with what the cascade path needs and nothing else:
  * q, k and v in one matrix product, gate and up in another (their weights joined once; the model's
    own layers keep working, as views of the joined weights);
  * rotary embeddings from one cos/sin table per pass, RMS norms written out, logits of the last
    position only;
  * attention through ``cascade_attention`` unchanged.
The arithmetic is transformers' own, in the same order, so logits agree to float rounding
(tests/augment/test_lean_decoder.py); models of other architectures use transformers' forward.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from mars_core.augment.cascade_attention import Cascade, cascade_attention
from mars_core.augment.int8_linear import Int8Linear

ARCHITECTURES = {"llama"}


def joined(parts: list[nn.Module]) -> nn.Module | None:
    """One layer computing ``parts`` (same input) at once, or None when they are of different kinds."""
    if all(isinstance(p, Int8Linear) for p in parts):
        return Int8Linear.joined(parts)
    if not all(type(p) is nn.Linear for p in parts):
        return None
    weight = torch.cat([p.weight.detach() for p in parts])
    has_bias = any(p.bias is not None for p in parts)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=has_bias, device=weight.device, dtype=weight.dtype)
    layer.weight = nn.Parameter(weight, requires_grad=False)
    if has_bias:
        layer.bias = nn.Parameter(torch.cat([p.bias.detach() if p.bias is not None else
                                             weight.new_zeros(p.out_features) for p in parts]), requires_grad=False)
    start = 0
    for p in parts:  # the parts read views of the joined weights: one copy in memory
        end = start + p.out_features
        p.weight = nn.Parameter(layer.weight[start:end], requires_grad=False)
        if has_bias:
            p.bias = nn.Parameter(layer.bias[start:end], requires_grad=False)
        start = end
    return layer


def rms_norm(hidden: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """transformers' LlamaRMSNorm, same operations in the same order."""
    dtype = hidden.dtype
    x = hidden.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * x.to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


class LeanLayer:
    """One decoder layer: attention (joined q/k/v) and MLP (joined gate/up)."""

    def __init__(self, layer: nn.Module) -> None:
        self.attn, mlp = layer.self_attn, layer.mlp
        self.norm1, self.norm2 = layer.input_layernorm, layer.post_attention_layernorm
        q, k, v = self.attn.q_proj, self.attn.k_proj, self.attn.v_proj
        self.qkv = joined([q, k, v])
        self.splits = (q.out_features, k.out_features, v.out_features)
        self.separate_qkv = (q, k, v)
        self.gate_up = joined([mlp.gate_proj, mlp.up_proj])
        self.separate_gate_up = (mlp.gate_proj, mlp.up_proj)
        self.o_proj, self.down_proj = self.attn.o_proj, mlp.down_proj
        self.head_dim = self.attn.head_dim

    def __call__(self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cascade: Cascade) -> torch.Tensor:
        batch, q_len, _ = hidden.shape
        x = rms_norm(hidden, self.norm1)
        if self.qkv is not None:
            query, key, value = self.qkv(x).split(self.splits, dim=-1)
        else:
            query, key, value = (p(x) for p in self.separate_qkv)
        query, key, value = (t.view(batch, q_len, -1, self.head_dim).transpose(1, 2) for t in (query, key, value))
        out, _ = cascade_attention(self.attn, rotate(query, cos, sin), rotate(key, cos, sin), value, None,
                                   scaling=self.attn.scaling, cascade=cascade)
        hidden = hidden + self.o_proj(out.reshape(batch, q_len, -1))
        x = rms_norm(hidden, self.norm2)
        if self.gate_up is not None:
            gate, up = self.gate_up(x).chunk(2, dim=-1)
        else:
            gate, up = (p(x) for p in self.separate_gate_up)
        return hidden + self.down_proj(functional.silu(gate) * up)


class LeanDecoder:
    """Logits of each row's last position, for a forward pass that carries a ``Cascade``."""

    def __init__(self, model: nn.Module) -> None:
        inner = model.model
        self.embed, self.rotary, self.norm, self.head = inner.embed_tokens, inner.rotary_emb, inner.norm, model.lm_head
        self.layers = [LeanLayer(layer) for layer in inner.layers]

    @classmethod
    def of(cls, model: nn.Module) -> LeanDecoder | None:
        """The lean pass of ``model``, or None for an architecture it does not cover."""
        config = model.config
        plain = (config.model_type in ARCHITECTURES and getattr(config, "hidden_act", None) == "silu"
                 and hasattr(model, "lm_head"))
        return cls(model) if plain else None

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, cascade: Cascade) -> torch.Tensor:
        hidden = self.embed(ids)
        cos, sin = self.rotary(hidden, positions)
        cos, sin = cos[:, None], sin[:, None]  # broadcast over heads
        for layer in self.layers:
            hidden = layer(hidden, cos, sin, cascade)
        return self.head(rms_norm(hidden[:, -1:], self.norm))[:, -1]
