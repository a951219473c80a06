"""Feature maps: what text the encoder sees, in which order, and how pairs become (φ+, φ−).

The plumbing tests use a stub encoder (a seeded random vector per distinct text, and word-level
left truncation) so they run without a model; one slow test checks the same contract on MiniLM.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pytest

from mars_core.data.pairs import PreferencePair
from mars_core.model.features import FEATURE_MODES, TextFeaturizer, ToyFeaturizer, pair_features


class StubEncoder:
    """The part of TextEncoder a featurizer uses, with a vector per distinct text and a call log."""

    name = "stub"
    dim = 8

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.truncations = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dim) for t in texts]
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)

    def truncate_left(self, text: str, budget_tokens: int) -> str:
        """Keep the last budget_tokens words (a word stands in for a word piece)."""
        self.truncations += 1
        return " ".join(text.split()[-budget_tokens:])


def make_pair(i: int, prompt: str = "Which is larger, 3 or 5?") -> PreferencePair:
    return PreferencePair(
        id=f"p{i}", prompt=prompt, chosen=f"Five, answer {i}.", rejected=f"Three, answer {i}."
    )


def test_prompt_response_text_keeps_the_end_of_the_prompt_and_the_whole_response():
    featurizer = TextFeaturizer(StubEncoder(), "prompt_response", prompt_tokens=3)
    prompt = "one two three four five six"
    assert featurizer.joined_text(prompt, "The answer.") == "four five six\n\nThe answer."
    assert featurizer.joined_text("short", "R") == "short\n\nR"
    assert featurizer.joined_text("", "Only the response.") == "Only the response."


def test_response_mode_ignores_the_prompt():
    encoder = StubEncoder()
    featurizer = TextFeaturizer(encoder, "response")
    a = featurizer.features(["Prompt A", "Prompt B"], ["Same reply.", "Same reply."])
    assert np.array_equal(a[0], a[1])
    assert encoder.calls == [["Same reply.", "Same reply."]]
    assert encoder.truncations == 0


def test_prompt_response_mode_conditions_on_the_prompt():
    featurizer = TextFeaturizer(StubEncoder(), "prompt_response")
    phi = featurizer.features(["Prompt A", "Prompt B"], ["Same reply.", "Same reply."])
    assert phi.shape == (2, 8) and phi.dtype == np.float32
    assert not np.allclose(phi[0], phi[1])


def test_joined_text_is_cut_once_per_distinct_prompt_and_response():
    encoder = StubEncoder()
    featurizer = TextFeaturizer(encoder, "prompt_response")
    for _ in range(3):
        featurizer.features(["P", "P", "Q"], ["r", "r", "r"])
    assert encoder.truncations == 2  # (P, r) and (Q, r), cut once each across calls


def test_name_and_dim_follow_the_encoder_and_mode():
    featurizer = TextFeaturizer(StubEncoder(), "response")
    assert (featurizer.name, featurizer.dim) == ("stub|response", 8)
    assert FEATURE_MODES == ("prompt_response", "response")


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="feature mode must be one of"):
        TextFeaturizer(StubEncoder(), "prompt_only")


def test_pair_features_encode_chosen_then_rejected_in_one_call():
    encoder = StubEncoder()
    featurizer = TextFeaturizer(encoder, "prompt_response")
    pairs = [make_pair(i) for i in range(3)]
    plus, minus = pair_features(featurizer, pairs)
    assert len(encoder.calls) == 1
    assert encoder.calls[0] == [featurizer.joined_text(p.prompt, p.chosen) for p in pairs] + [
        featurizer.joined_text(p.prompt, p.rejected) for p in pairs
    ]
    assert plus.shape == minus.shape == (3, 8)
    for k, p in enumerate(pairs):
        assert np.array_equal(plus[k], featurizer.features([p.prompt], [p.chosen])[0])
        assert np.array_equal(minus[k], featurizer.features([p.prompt], [p.rejected])[0])


def test_pair_features_of_no_pairs_are_empty():
    plus, minus = pair_features(ToyFeaturizer(), [])
    assert plus.shape == minus.shape == (0, 2)


def test_toy_featurizer_reads_the_vector_in_the_text():
    pairs = [
        PreferencePair(id="t", prompt="ignored", chosen="φ=[0.5000, -1.2500]", rejected="φ=[0.0000, 2.0000]")
    ]
    plus, minus = pair_features(ToyFeaturizer(), pairs)
    assert plus.tolist() == [[0.5, -1.25]] and minus.tolist() == [[0.0, 2.0]]
    assert plus.dtype == np.float32
    assert ToyFeaturizer(3).features([], []).shape == (0, 3)


def test_toy_featurizer_refuses_text_that_is_not_a_vector():
    with pytest.raises(ValueError, match="not a toy vector"):
        ToyFeaturizer().features(["p"], ["a sentence"])


@pytest.mark.slow
def test_minilm_features_keep_the_response_of_a_long_prompt(text_encoder):
    """On the real tokenizer: a long prompt is cut from the left, the response survives whole."""
    featurizer = TextFeaturizer(text_encoder, "prompt_response", prompt_tokens=16)
    prompt = " ".join(f"word{i}" for i in range(400)) + " final question?"
    joined = featurizer.joined_text(prompt, "The response stays whole.")
    assert joined.endswith("final question?\n\nThe response stays whole.")
    tail = joined.split("\n\n")[0]
    assert prompt.endswith(tail.split(" ", 1)[1])  # the end of the prompt, in order
    assert len(tail) < 80  # 16 word pieces of 'wordNNN': about 5 words, not 400
    phi = featurizer.features([prompt, "A different question?"], ["The response stays whole."] * 2)
    assert phi.shape == (2, text_encoder.dim)
    assert np.allclose(np.linalg.norm(phi, axis=1), 1.0, atol=1e-5)
    assert float(phi[0] @ phi[1]) < 0.999  # the prompt changes the features


@pytest.mark.slow
def test_minilm_prompt_cut_starts_at_a_whole_word(text_encoder):
    featurizer = TextFeaturizer(text_encoder, "prompt_response", prompt_tokens=16)
    prompt = " ".join(f"word{i}" for i in range(400)) + " final question?"
    tail = featurizer.joined_text(prompt, "R.").split("\n\n")[0]
    assert not tail.startswith("##")
    assert len(text_encoder.tokenizer(tail, add_special_tokens=False)["input_ids"]) <= 16
    assert prompt.endswith(tail) and prompt[-len(tail) - 1] == " ", "the original text, cut between words"
    assert tail.endswith("final question?")
