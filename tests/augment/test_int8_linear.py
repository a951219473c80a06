"""Int8 linear layers: close to the float layer, and a layer's result for a row never depends on the rows beside it."""

from __future__ import annotations

import torch
from torch import nn

from mars_core.augment.int8_linear import Int8Linear, quantize_linears, quantize_rows


def test_each_row_round_trips_within_half_its_step():
    matrix = torch.randn(5, 64) * torch.tensor([1e-3, 1.0, 30.0, 0.0, 5.0])[:, None]
    values, scale = quantize_rows(matrix)
    assert values.dtype == torch.int8 and int(values.abs().max()) == 127
    assert torch.all((values.float() * scale - matrix).abs() <= scale / 2 + 1e-7)
    assert torch.all(values[3] == 0) and float(scale[3]) == 1.0  # an all-zero row stays zero


def test_an_int8_layer_is_close_to_the_float_layer():
    torch.manual_seed(0)
    linear = nn.Linear(576, 192)
    x = torch.randn(3, 7, 576)
    with torch.no_grad():
        got, want = Int8Linear(linear)(x), linear(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert float((got - want).norm() / want.norm()) < 0.02


def test_a_rows_result_is_exactly_the_same_alone_and_beside_a_huge_row():
    """Per-token scales and exact int32 sums: what per-tensor dynamic quantization cannot promise."""
    torch.manual_seed(1)
    layer = Int8Linear(nn.Linear(64, 32))
    row = torch.randn(1, 64)
    batch = torch.cat([torch.randn(1, 64) * 1000.0, row, torch.randn(4, 64)])
    assert torch.equal(layer(row)[0], layer(batch)[1])  # one scale for the batch would have crushed this row


def test_linear_layers_are_replaced_but_attention_inputs_and_tied_embeddings_stay_float():
    embed = nn.Embedding(50, 16)
    head = nn.Linear(16, 50, bias=False)
    head.weight = embed.weight  # tied, as in SmolLM2
    attention = nn.ModuleDict({"v_proj": nn.Linear(16, 16), "o_proj": nn.Linear(16, 16)})
    model = nn.ModuleDict({"embed": embed, "attn": attention, "mlp": nn.Sequential(nn.Linear(16, 16), nn.ReLU()),
                           "head": head})
    before = embed.weight.detach().clone()
    assert quantize_linears(model) == 3
    assert all(isinstance(m, Int8Linear) for m in (model["head"], model["mlp"][0], attention["o_proj"]))
    assert type(attention["v_proj"]) is nn.Linear  # its input's outlier channels would not survive int8
    assert torch.equal(model["embed"].weight, before)
    assert quantize_linears(model, keep=()) == 1 and isinstance(attention["v_proj"], Int8Linear)
