"""The sentence encoder: cutting long prompts on purpose, without transformers' length warning."""

from __future__ import annotations

import pytest

_WARNING_KEY = "sequence-length-is-longer-than-the-specified-maximum"



@pytest.mark.slow
def test_truncating_a_long_prompt_keeps_its_end_and_the_log_clean(text_encoder, transformers_warnings):
    words = " ".join(f"word{i}" for i in range(400))  # well over MiniLM's 256 word pieces
    text_encoder.tokenizer.deprecation_warnings.pop(_WARNING_KEY, None)  # it warns once per tokenizer
    cut = text_encoder.truncate_left(words, 96)
    text_encoder.encode([words])
    assert not [m for m in transformers_warnings if "sequence length" in m], "no 'indexing errors' warning"
    text_encoder.tokenizer(words, add_special_tokens=False)  # control: the same text untruncated warns
    assert [m for m in transformers_warnings if "sequence length" in m]
    assert cut.endswith("word399") and "word0 " not in cut
    assert len(text_encoder.tokenizer(cut, add_special_tokens=False)["input_ids"]) <= 96
    assert text_encoder.truncate_left("short text", 96) == "short text"
