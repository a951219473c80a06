"""Paraphraser: extraction of the paraphrase from raw outputs, config checks, and the real packaged model."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from mars_core.augment.paraphrase import (
    LMParaphraser,
    ParaphraseConfig,
    Paraphraser,
    extract_paraphrase,
    trim_unfinished,
)
from mars_core.model.encoders import ModelNotFoundError

# ---------------------------------------------------------------------------------------------
# extract_paraphrase: realistic raw outputs of small instruct models
# ---------------------------------------------------------------------------------------------

SRC_FACT = "Paris is the capital of France."
PARA_FACT = "France's capital city is Paris."
SRC_REFUSAL = "I'm sorry, but I can't help with that request."
SRC_HOWTO = (
    "To boil an egg, place it in a pot of cold water, bring the water to a boil, then let it simmer for "
    "about nine minutes before cooling it in ice water."
)
PARA_HOWTO = (
    "Put the egg in a pot of cold water and heat it until it boils. Let it simmer for roughly nine minutes, "
    "then cool it in ice water."
)

CASES = [
    # (raw output, source, expected extraction)
    (PARA_FACT, SRC_FACT, PARA_FACT),
    (f"Here is the paraphrase:\n\n{PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"Here's a paraphrased version of the text:\n{PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"Sure! Here's a rephrased version:\n\n\"{PARA_FACT}\"", SRC_FACT, PARA_FACT),
    (f"Certainly! Here is the rewritten text: {PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"Sure! {PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"Paraphrase: {PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"Rewritten: {PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"**Paraphrased text:** {PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"**Rephrased version:**\n\n{PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"The paraphrased sentence would be: {PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"Original text: {SRC_FACT}\nParaphrase: {PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"Original: \"{SRC_FACT}\"\n\nRewritten: \"{PARA_FACT}\"", SRC_FACT, PARA_FACT),
    (f"**Original text:**\n{SRC_FACT}\n\n**Paraphrased text:**\n{PARA_FACT}", SRC_FACT, PARA_FACT),
    (f"{SRC_FACT}\n\n{PARA_FACT}", SRC_FACT, PARA_FACT),  # echoed source block, then the paraphrase
    (f"{PARA_FACT}\n\nThis version keeps the meaning but changes the word order.", SRC_FACT, PARA_FACT),
    (f"{PARA_FACT}\n\nI changed \"capital\" to \"capital city\" to vary the wording.", SRC_FACT, PARA_FACT),
    (f"{PARA_FACT}\n\nLet me know if you'd like another version!", SRC_FACT, PARA_FACT),
    (f"{PARA_FACT}\nNote: the meaning is unchanged.", SRC_FACT, PARA_FACT),
    (f"\"{PARA_FACT}\"", SRC_FACT, PARA_FACT),
    (f"“{PARA_FACT}”", SRC_FACT, PARA_FACT),
    (f"'{PARA_FACT}'", SRC_FACT, PARA_FACT),
    (f"{PARA_FACT}\"", SRC_FACT, PARA_FACT),  # a lone closing quote from a quoted prompt
    (f"```\n{PARA_FACT}\n```", SRC_FACT, PARA_FACT),
    ("France's **capital city** is Paris.", SRC_FACT, PARA_FACT),
    (f"Sure, here's a paraphrase:\n\n{PARA_HOWTO}\n\nThe paraphrase keeps every step.", SRC_HOWTO, PARA_HOWTO),
    (f"Here is the rewritten text:\n\n\"{PARA_HOWTO}\"\n\nIn this version, I simplified the sentences.",
     SRC_HOWTO, PARA_HOWTO),
    (f"{PARA_HOWTO}\n\nAlternatively: Boil water, add the egg, wait nine minutes.", SRC_HOWTO, PARA_HOWTO),
    ("I'm afraid I can't assist with that request.", SRC_REFUSAL, "I'm afraid I can't assist with that request."),
    # nothing usable left
    ("", SRC_FACT, ""),
    ("   \n\n  ", SRC_FACT, ""),
    ("Here is the paraphrase:", SRC_FACT, ""),
    ("Sure!", SRC_FACT, ""),
    ("**Paraphrase:**\n\n\"\"", SRC_FACT, ""),
]


@pytest.mark.parametrize(("raw", "source", "expected"), CASES)
def test_extract_paraphrase_realistic_outputs(raw: str, source: str, expected: str) -> None:
    assert extract_paraphrase(raw, source) == expected


def test_extract_keeps_what_the_source_itself_says() -> None:
    """An opening "Sure," or a "Here are some ideas:" that the source has is content, not preamble."""
    src = "Sure, I can help with that. What kind of cake would you like to bake?"
    raw = "Sure, I'd be glad to help. Which cake are you hoping to bake?"
    assert extract_paraphrase(raw, src) == raw
    src = "Here are some ideas: a picnic in the park, a cooking class together, or a visit to a museum."
    raw = "Here are a few ideas: a park picnic, a cooking class for two, or a trip to a museum."
    assert extract_paraphrase(raw, src) == raw


def test_extract_keeps_every_paragraph_of_a_multi_paragraph_source() -> None:
    src = (
        "First, preheat the oven to 180 degrees and grease the tin.\n\n"
        "Then mix the flour, sugar and eggs, pour the batter in and bake for 30 minutes."
    )
    para = (
        "Start by heating the oven to 180 degrees and greasing the tin.\n\n"
        "Next, combine flour, sugar and eggs, pour in the batter and bake it for half an hour."
    )
    assert extract_paraphrase(para, src) == para
    assert extract_paraphrase(para + "\n\nThis version uses simpler words.", src) == para


def test_extract_stops_after_a_whole_paraphrase_even_without_commentary_words() -> None:
    """A second block after a full-length single-paragraph paraphrase is a second attempt or chatter."""
    raw = f"{PARA_HOWTO}\n\nEggs are a great source of protein and easy to cook."
    assert extract_paraphrase(raw, SRC_HOWTO) == PARA_HOWTO


def test_extract_keeps_a_short_first_block_when_the_source_is_long() -> None:
    """A first block far shorter than the source is not yet a whole paraphrase: the next block belongs to it."""
    raw = "Put the egg in cold water.\n\nBring it to a boil, simmer nine minutes, then cool it in ice water."
    assert extract_paraphrase(raw, SRC_HOWTO) == raw


def test_extract_is_idempotent_on_its_own_output() -> None:
    for raw, source, _ in CASES:
        once = extract_paraphrase(raw, source)
        assert extract_paraphrase(once, source) == once


# ---------------------------------------------------------------------------------------------
# Config validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_new_tokens_factor": 0}, "max_new_tokens_factor"),
        ({"min_new_tokens": 0}, "min_new_tokens"),
        ({"min_new_tokens": 64, "max_new_tokens": 32}, "max_new_tokens"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"num_threads": 0}, "num_threads"),
        ({"model": " "}, "model"),
        ({"instruction": ""}, "instruction"),
        ({"prompt_template": (("user", "Rewrite this."),)}, "{text}"),
        ({"prompt_template": (("assistant", "{text}"),)}, "roles"),
        ({"prompt_template": (("user", "{text} {source}"),)}, "{instruction}"),
        ({"prompt_template": (("user", "{text}"), ("system", "Be brief."))}, "end with a user"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        ParaphraseConfig(**kwargs)


def test_new_token_budget_scales_with_the_source_and_is_clamped() -> None:
    cfg = ParaphraseConfig(max_new_tokens_factor=2.0, min_new_tokens=10, max_new_tokens=100)
    assert cfg.new_token_budget(1) == 10
    assert cfg.new_token_budget(20) == 40
    assert cfg.new_token_budget(500) == 100


def test_nonexistent_model_path_raises_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model.gguf"
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        LMParaphraser(ParaphraseConfig(model=str(missing)))


def test_directory_without_a_model_raises_an_error_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty-model-dir"
    empty.mkdir()
    with pytest.raises((ModelNotFoundError, ValueError), match="empty-model-dir"):
        LMParaphraser(ParaphraseConfig(model=str(empty)))


# ---------------------------------------------------------------------------------------------
# The real packaged SmolLM2 model (loaded once)
# ---------------------------------------------------------------------------------------------

RESPONSES = [
    "I'm sorry, but I can't help with that request.",
    "The Great Wall of China is over 13,000 miles long and was built to protect Chinese states from invasions.",
    "To boil an egg, put it in cold water, bring it to a boil, and let it simmer for about nine minutes.",
    "No, dogs should not eat chocolate. It contains theobromine, which is toxic to them.",
]
SMALL = ParaphraseConfig(max_new_tokens=40, batch_size=4)


class DictCache:
    """The cache protocol over a dict, counting hits."""

    def __init__(self) -> None:
        self.data: dict[str, list[str]] = {}

    def get(self, key: str) -> list[str] | None:
        return self.data.get(key)

    def put(self, key: str, texts: list[str]) -> None:
        self.data[key] = list(texts)


@pytest.fixture(scope="module")
def paraphraser() -> LMParaphraser:
    return LMParaphraser(SMALL)


@pytest.fixture(scope="module")
def first_run(paraphraser: LMParaphraser) -> list[list[str]]:
    return paraphraser.paraphrase(RESPONSES, n=2, seed=0)


def test_paraphraser_satisfies_the_protocol(paraphraser: LMParaphraser) -> None:
    assert isinstance(paraphraser, Paraphraser)
    assert "packaged:smollm2" in paraphraser.name


def test_real_paraphrases_are_nonempty_different_and_close(first_run: list[list[str]], text_encoder) -> None:
    assert len(first_run) == len(RESPONSES)
    sources, candidates = [], []
    for source, outputs in zip(RESPONSES, first_run):
        assert 1 <= len(outputs) <= 2
        assert all(o.strip() for o in outputs)
        sources += [source] * len(outputs)
        candidates += outputs
    different = [c for s, c in zip(sources, candidates) if c.strip() != s.strip()]
    assert len(different) >= 0.75 * len(candidates)
    cosine = text_encoder.cosine(sources, candidates)
    print(f"MiniLM cosine source vs paraphrase: mean {cosine.mean():.3f}, min {cosine.min():.3f}")
    assert cosine.mean() > 0.6


def test_same_seed_same_outputs_other_seed_other_outputs(paraphraser: LMParaphraser) -> None:
    texts = RESPONSES[1:3]
    first = paraphraser.generate_raw(texts, paraphraser.config.instruction, n=2, seed=5)
    again = paraphraser.generate_raw(texts, paraphraser.config.instruction, n=2, seed=5)  # no cache: regenerated
    assert again == first
    other = paraphraser.generate_raw(texts, paraphraser.config.instruction, n=2, seed=6)
    assert other != first


def test_cache_hit_generates_no_tokens(paraphraser: LMParaphraser) -> None:
    cache = DictCache()
    paraphraser.cache = cache
    try:
        texts = RESPONSES[:2]
        first = paraphraser.paraphrase(texts, n=1, seed=7)
        assert len(cache.data) == 2
        tokens = paraphraser.tokens_generated
        second = paraphraser.paraphrase(texts, n=1, seed=7)
        assert second == first
        assert paraphraser.tokens_generated == tokens  # nothing regenerated
        paraphraser.paraphrase(texts, n=1, seed=8)  # another seed is another key
        assert paraphraser.tokens_generated > tokens
        assert len(cache.data) == 4
    finally:
        paraphraser.cache = None


def test_other_instruction_goes_through_the_same_machinery(paraphraser: LMParaphraser) -> None:
    out = paraphraser.generate(RESPONSES[:1], "Rewrite this response to be rude and unhelpful.", n=1, seed=0)
    assert len(out) == 1 and len(out[0]) <= 1
    assert paraphraser.cache_key(RESPONSES[0], "a", 1, 0) != paraphraser.cache_key(RESPONSES[0], "b", 1, 0)


def test_a_failing_batch_loses_only_its_own_texts(paraphraser: LMParaphraser, monkeypatch, caplog) -> None:
    """batch_size 2 over 4 texts: the first generate call raises, the second succeeds."""
    real_generate = paraphraser.model.generate
    calls = {"n": 0}

    def flaky_generate(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated out of memory")
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(paraphraser.model, "generate", flaky_generate)
    monkeypatch.setattr(paraphraser, "config", ParaphraseConfig(max_new_tokens=32, batch_size=2))
    monkeypatch.setattr(paraphraser, "failures", [])
    with caplog.at_level(logging.WARNING, logger="mars_core.augment.paraphrase"):
        out = paraphraser.paraphrase(RESPONSES, n=1, seed=3)
    assert calls["n"] == 2
    empty = [text for text, outputs in zip(RESPONSES, out) if not outputs]
    assert len(empty) == 2
    assert sorted(t for t, _ in paraphraser.failures) == sorted(empty)
    assert all("simulated out of memory" in err for _, err in paraphraser.failures)
    assert sum(len(o) for o in out) >= 1  # the other batch still produced paraphrases
    assert "simulated out of memory" in caplog.text


def test_a_batch_past_its_timeout_is_recorded_as_failed(paraphraser: LMParaphraser, monkeypatch) -> None:
    monkeypatch.setattr(paraphraser, "config", ParaphraseConfig(max_new_tokens=48, timeout_s=1e-6))
    monkeypatch.setattr(paraphraser, "failures", [])
    out = paraphraser.paraphrase(RESPONSES[:2], n=1, seed=0)
    assert out == [[], []]
    assert len(paraphraser.failures) == 2
    assert all("GenerationTimeout" in err for _, err in paraphraser.failures)


def test_counters_count_generated_tokens(paraphraser: LMParaphraser) -> None:
    before_tokens, before_s = paraphraser.tokens_generated, paraphraser.seconds_generating
    paraphraser.paraphrase(RESPONSES[:1], n=1, seed=11)
    produced = paraphraser.tokens_generated - before_tokens
    assert 1 <= produced <= SMALL.new_token_budget(100)
    assert paraphraser.seconds_generating > before_s
    assert np.isfinite(paraphraser.seconds_generating)


def test_extract_leaves_quotes_that_do_not_wrap_the_whole_text() -> None:
    raw = '"Yes" and "no" are both fine answers here.'
    assert extract_paraphrase(raw, "Either answer works.") == raw
    raw = '"Maybe" is what she said, and "later" is what she meant.'
    assert extract_paraphrase(raw, "She said maybe, meaning later.") == raw


@pytest.mark.parametrize(
    ("raw", "source", "expected"),
    [
        # intro lines the patterns do not know, ending in a colon
        (f"Yes, I can rephrase the text to:\n\n{PARA_FACT}", SRC_FACT, PARA_FACT),
        (f"The requested rephrasing of the text is here:\n\n{PARA_FACT}", SRC_FACT, PARA_FACT),
        (f"Alternative phrasing: {PARA_FACT}\n\n(revised by swapping the clauses)", SRC_FACT, PARA_FACT),
        (f"Text: \"{PARA_FACT}\"", SRC_FACT, PARA_FACT),
        # an echoed copy followed only by commentary: the copy is what is there (the filters reject copies)
        (f"{SRC_FACT}\n\nThe original text was short and clear, so I kept it.", SRC_FACT, SRC_FACT),
    ],
)
def test_extract_more_real_smollm_outputs(raw: str, source: str, expected: str) -> None:
    assert extract_paraphrase(raw, source) == expected


def test_trim_unfinished_drops_a_cut_off_sentence() -> None:
    assert trim_unfinished("Start slowly. Walk a lot. By doing so,") == "Start slowly. Walk a lot."
    assert trim_unfinished('He said "stop." Then he') == 'He said "stop."'
    assert trim_unfinished("only one unfinished sentence") == "only one unfinished sentence"


def test_top_k_nucleus_sampler_draws_only_inside_the_nucleus() -> None:
    import torch

    from mars_core.augment.paraphrase import _TopKNucleusSampler

    # token probabilities 0.5, 0.3, 0.15, 0.05 (+ junk far below): top_p 0.8 keeps tokens 0 and 1 only
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05] + [1e-9] * 20)
    scores = probs.log().repeat(4000, 1)
    torch.manual_seed(0)
    out = _TopKNucleusSampler(temperature=1.0, top_p=0.8, k=8)(None, scores)
    assert bool((torch.isfinite(out).sum(1) == 1).all())  # exactly one token per row survives
    picked = out.argmax(1)
    assert set(picked.tolist()) == {0, 1}
    share = (picked == 0).float().mean().item()
    assert abs(share - 0.5 / 0.8) < 0.03  # renormalised inside the nucleus
    greedy = _TopKNucleusSampler(temperature=1.0, top_p=1e-6, k=8)(None, scores[:10]).argmax(1)
    assert greedy.tolist() == [0] * 10
