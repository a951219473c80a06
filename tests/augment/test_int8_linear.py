"""Int8 linear layers: close to the float layer, and a layer's result for a row never depends on the rows beside it."""

from __future__ import annotations

import torch
from torch import nn

from mars_core.augment.int8_linear import Int8Linear, quantize_linears, quantize_rows, smooth_attention_inputs


def test_each_row_round_trips_within_half_its_step():
    matrix = torch.randn(5, 64) * torch.tensor([1e-3, 1.0, 30.0, 0.0, 5.0])[:, None]
    values, scale = quantize_rows(matrix)
    assert values.dtype == torch.int8 and int(values.abs().max()) == 127
    assert torch.all((values.float() * scale - matrix).abs() <= scale / 2 + 1e-7)
    assert torch.all(values[3] == 0) and 0 < float(scale[3]) < 1e-30  # an all-zero row stays zero, no 0/0
    layer = Int8Linear(nn.Linear(64, 8))
    assert torch.all(layer(torch.zeros(2, 64)) == layer.bias)


def test_joined_layers_give_each_part_its_own_output_bit_for_bit_and_share_its_weights():
    torch.manual_seed(2)
    parts = [Int8Linear(nn.Linear(96, n, bias=b)) for n, b in ((32, True), (16, False), (48, True))]
    x = torch.randn(5, 3, 96) * torch.linspace(0.1, 40, 96)  # outlier-ish channels
    alone = [p(x) for p in parts]
    joined = Int8Linear.joined(parts)
    together = joined(x)
    assert together.shape == (5, 3, 96)
    assert all(torch.equal(a, b) for a, b in zip(alone, together.split([32, 16, 48], dim=-1)))
    assert all(torch.equal(a, p(x)) for a, p in zip(alone, parts))  # the parts still work, on views
    assert parts[1].weight.data_ptr() == joined.weight[32:].data_ptr()


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


def _tiny_llama_with_outlier_channels():  # noqa: ANN202
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:  # two channels 40x the others, as SmolLM2's attention inputs have
            layer.input_layernorm.weight.index_fill_(0, torch.tensor([3, 17]), 40.0)
    return model


def test_smoothing_keeps_the_float_model_and_brings_int8_attention_inputs_closer():
    ids = torch.randint(0, 128, (2, 24), generator=torch.Generator().manual_seed(1))
    plain, smoothed = _tiny_llama_with_outlier_channels(), _tiny_llama_with_outlier_channels()
    assert smooth_attention_inputs(smoothed, ids[:1])
    with torch.inference_mode():
        assert torch.allclose(smoothed(ids).logits, plain(ids).logits, atol=1e-5)  # the same model, rescaled
        hidden = plain.model.embed_tokens(ids)  # the first layer's input
        errors = {}
        for name in ("q_proj", "k_proj", "v_proj"):
            want = getattr(plain.model.layers[0].self_attn, name)(plain.model.layers[0].input_layernorm(hidden))
            errors[name] = [
                float((Int8Linear(getattr(m.model.layers[0].self_attn, name))(m.model.layers[0].input_layernorm(hidden))
                       - want).norm() / want.norm()) for m in (plain, smoothed)]
    assert all(smooth < raw / 2 for raw, smooth in errors.values()), errors


def test_smoothing_leaves_a_model_without_llama_layers_alone():
    model = nn.Sequential(nn.Linear(8, 8))
    before = model[0].weight.detach().clone()
    assert not smooth_attention_inputs(model, torch.zeros(1, 4, dtype=torch.long))
    assert torch.equal(model[0].weight, before)
