"""Shared-prefix ("cascade") attention for decoding many rows that start with the same prompt prefix.

Why (profiled on SmolLM2-135M, batch 16, 353-token few-shot prefix, bench/paraphrase.py): with a
transformers KV cache every row holds its own copy of the prefix, and the cache grows by ``torch.cat``
each step, so a decoding step copied and read the whole prefix once per row: 41 % of a step was
``cat``, 15 % attention, and a row added 7.6 ms per step. Here the prefix's keys and values are
stored once (batch 1) and each row's own tokens go into a preallocated buffer written in place.
Attention scores against the two parts are joined before one softmax, so the result is exact
attention over (prefix + row), not an approximation.

The function is registered with transformers' ``AttentionInterface`` as ``mars_cascade``; it acts only
when a forward pass carries a ``cascade=`` state and is plain SDPA otherwise (``generate`` still works).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "mars_cascade"


@dataclass
class PrefixKV:
    """Keys and values of a token prefix, one (k, v) pair of shape [kv_heads, P, head_dim] per layer."""

    tokens: tuple[int, ...]
    layers: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


@dataclass
class Cascade:
    """The state of a decoding batch: the shared prefix and each row's own keys and values.

    Row b's buffer holds real (not left-padding) positions from ``starts[b]`` on and will need at
    most ``ends[b]`` positions; ``length`` is how many positions every buffer holds now. Rows may
    leave (``keep``) and join (``join``) between steps, which is what lets a finished row's slot go
    to a waiting row at once. ``recording`` marks the forward pass that computes a prefix (batch 1),
    whose keys and values are kept instead of attended in two parts.
    """

    prefix: PrefixKV
    starts: torch.Tensor | None = None
    ends: torch.Tensor | None = None
    length: int = 0
    recording: bool = False
    keys: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [slots >= B, kv_heads, capacity, head_dim]; rows 0..B-1
    values: dict[int, torch.Tensor] = field(default_factory=dict)
    mask: torch.Tensor | None = None  # [B, 1, q, length + q]: this forward's allowed row keys
    _blocked: torch.Tensor | None = field(default=None, repr=False)  # the mask per query head, once per forward

    @property
    def capacity(self) -> int:
        return int(self.ends.max())

    def begin(self, q_len: int) -> None:
        """Before a forward pass of ``q_len`` new tokens per row: which row keys each query may read."""
        keys = torch.arange(self.length + q_len, device=self.starts.device)
        queries = torch.arange(self.length, self.length + q_len, device=self.starts.device)
        causal = keys[None, :] <= queries[:, None]  # [q, S]
        self.mask = (causal[None] & (keys[None, None, :] >= self.starts[:, None, None]))[:, None]

    def blocked(self, groups: int) -> torch.Tensor:
        """[B, 1, groups * q, S]: the row keys each query head may not read, built once per forward pass
        (every layer asks for the same one)."""
        if self._blocked is None:
            batch, _, q_len, keys = self.mask.shape
            self._blocked = ~self.mask.expand(batch, groups, q_len, keys).reshape(batch, 1, groups * q_len, keys)
        return self._blocked

    def advance(self, q_len: int) -> None:
        self.length += q_len
        self.mask = self._blocked = None

    def keep(self, rows: torch.Tensor) -> None:
        """Only these rows go on decoding, row ``rows[i]`` in slot i (finished rows leave; the prefix is
        untouched; a row listed twice is copied). Only rows that change slot are copied, and only the
        positions written so far; the buffers keep their size (slots past the rows are unused). With
        ``compacting_order`` one row moves per finished row: copying every row's whole buffer took 12 ms
        a call in a comparison's decoding, this 4 ms."""
        self.starts, self.ends = self.starts[rows], self.ends[rows]
        if self.keys and len(rows) > next(iter(self.keys.values())).shape[0]:  # more rows than slots
            for store in (self.keys, self.values):
                for layer, buffer in store.items():
                    store[layer] = buffer.index_select(0, rows)
            return
        moved = rows != torch.arange(len(rows), device=rows.device)
        if not self.keys or not bool(moved.any()):
            return
        to, source = moved.nonzero().squeeze(1), rows[moved]
        for store in (self.keys, self.values):
            for buffer in store.values():
                buffer[to, :, :self.length] = buffer[source, :, :self.length]  # read first, then written

    def join(self, other: Cascade) -> None:
        """Append ``other``'s rows (same prefix, just prefilled): both parts are aligned to end at the same
        position, and positions no row reads any more are dropped, so buffers stay as short as the rows.

        (Writing the new rows into the slots finished rows left, without a rebuild, was tried and measured
        slower: the positions no row reads stay in every row's attention, and the demo Step decoded at
        170 instead of 200 tokens/s; docs/results.md, round 12.)"""
        length = max(self.length, other.length)
        # (part, how far it moves right, the first position any of its rows reads, its length)
        parts = [(part, length - part.length, int(part.starts.min()), part.length) for part in (self, other)]
        starts = torch.cat([part.starts + shift for part, shift, _, _ in parts])
        ends = torch.cat([part.ends + shift for part, shift, _, _ in parts])
        low = int(starts.min())
        capacity = int(ends.max()) - low
        merged: dict[str, dict[int, torch.Tensor]] = {"keys": {}, "values": {}}
        for which, layers in merged.items():
            for layer, mine in getattr(self, which).items():
                out = mine.new_zeros((len(starts), mine.shape[1], capacity, mine.shape[3]))
                row = 0
                for part, shift, first, part_length in parts:
                    count = len(part.starts)  # a buffer may hold more slots than rows (``keep``)
                    out[row:row + count, :, first + shift - low:part_length + shift - low] = \
                        getattr(part, which)[layer][:count, :, first:part_length]
                    row += count
                layers[layer] = out
        self.keys, self.values = merged["keys"], merged["values"]
        self.starts, self.ends, self.length = starts - low, ends - low, length - low


def compacting_order(kept: list[int]) -> list[int]:
    """The order for ``Cascade.keep`` that moves fewest rows: a kept row stays in its slot, and the slots
    left by finished rows are filled by the kept rows past the batch's new end."""
    alive, movers = set(kept), iter(j for j in kept if j >= len(kept))
    return [j if j in alive else next(movers) for j in range(len(kept))]


def cascade_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, scaling: float | None = None,
                      cascade: Cascade | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """Attention over (shared prefix + this row's tokens); SDPA when the pass carries no cascade state."""
    if cascade is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    layer = module.layer_idx
    if cascade.recording:
        cascade.prefix.layers[layer] = (key[0].float(), value[0].float())
        return sdpa_attention_forward(module, query, key, value, None, scaling=scaling, is_causal=True, **kwargs)
    batch, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    if layer not in cascade.keys:
        shape = (batch, kv_heads, cascade.capacity, dim)
        # zeros, not empty: a padding position's weight is 0, and 0 x (NaN left in fresh memory) is NaN
        cascade.keys[layer] = torch.zeros(shape, dtype=torch.float32, device=key.device)
        cascade.values[layer] = torch.zeros(shape, dtype=torch.float32, device=key.device)
    end = cascade.length + q_len
    if end > cascade.keys[layer].shape[2]:
        raise RuntimeError(f"cascade buffer of {cascade.keys[layer].shape[2]} positions is full")
    row_k, row_v = cascade.keys[layer][:batch, :, :end], cascade.values[layer][:batch, :, :end]  # the rows' slots
    row_k[:, :, cascade.length:] = key
    row_v[:, :, cascade.length:] = value
    if layer not in cascade.prefix.layers:  # no shared prefix: an empty one
        empty = key.new_zeros((kv_heads, 0, dim), dtype=torch.float32)
        cascade.prefix.layers[layer] = (empty, empty)
    prefix_k, prefix_v = cascade.prefix.layers[layer]  # [kv_heads, P, dim]
    scale = scaling if scaling is not None else dim ** -0.5
    # query heads kv*groups .. kv*groups+groups-1 read kv head kv (transformers' repeat_kv order)
    q = query.float().reshape(batch, kv_heads, groups * q_len, dim)
    rows_q = q.transpose(0, 1).reshape(kv_heads, batch * groups * q_len, dim)
    s_prefix = torch.matmul(rows_q, prefix_k.transpose(1, 2)).view(kv_heads, batch, groups * q_len, -1)
    s_rows = torch.matmul(q, row_k.transpose(-1, -2))  # [B, kv_heads, groups*q, S]
    s_rows = s_rows.masked_fill(cascade.blocked(groups), float("-inf"))
    weights = torch.softmax(torch.cat([s_prefix.transpose(0, 1), s_rows], dim=-1) * scale, dim=-1)
    p_len = prefix_k.shape[1]
    w_prefix = weights[..., :p_len].transpose(0, 1).reshape(kv_heads, batch * groups * q_len, p_len)
    out = torch.matmul(w_prefix, prefix_v).view(kv_heads, batch, groups * q_len, dim).transpose(0, 1)
    out = out + torch.matmul(weights[..., p_len:], row_v)
    out = out.reshape(batch, heads, q_len, dim).transpose(1, 2).contiguous()
    return out.to(query.dtype), None


def install(model: torch.nn.Module) -> None:
    """Route the model's attention through ``cascade_attention`` (SDPA masks when no cascade is passed)."""
    AttentionInterface.register(NAME, cascade_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
