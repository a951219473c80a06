"""Feature maps φ(x, y) for reward models: MiniLM text features, or the toy's explicit vectors.

A linear reward on φ only conditions on the prompt if φ mixes prompt and response (with
separate prompt features the prompt part cancels in Δ), so the text featurizer embeds the
joined text, cutting the prompt from the left so the response always survives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from mars_core.data.pairs import PreferencePair
from mars_core.data.toy import toy_features
from mars_core.model.encoders import PROMPT_TOKENS, TextEncoder, joined_text

FEATURE_MODES = ("prompt_response", "response")


class Featurizer(Protocol):
    name: str
    dim: int

    def features(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """φ for each (prompt, response), shape (N, dim), float32."""
        ...


class TextFeaturizer:
    """Sentence-embedding features of the (prompt, response) text; cached per distinct text by the encoder."""

    def __init__(self, encoder: TextEncoder, mode: str = "prompt_response", prompt_tokens: int = PROMPT_TOKENS) -> None:
        if mode not in FEATURE_MODES:
            raise ValueError(f"feature mode must be one of {FEATURE_MODES}, got {mode!r}")
        self.encoder = encoder
        self.mode = mode
        self.prompt_tokens = prompt_tokens
        self.name = f"{encoder.name}|{mode}"
        self.dim = encoder.dim
        self._joined: dict[tuple[str, str], str] = {}

    def joined_text(self, prompt: str, response: str) -> str:
        if self.mode == "response":
            return response
        key = (prompt, response)
        if key not in self._joined:
            tail = self.encoder.truncate_left(prompt, self.prompt_tokens) if prompt else ""
            self._joined[key] = joined_text(tail, response)  # the fine-tuned model's sentence layout reads the same
        return self._joined[key]

    def features(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return self.encoder.encode([self.joined_text(p, r) for p, r in zip(prompts, responses)])


class ToyFeaturizer:
    """The 2-D teaching toy: the 'text' is the feature vector itself (see toy.format_toy_vector)."""

    def __init__(self, dim: int = 2) -> None:
        self.dim = dim
        self.name = f"toy-{dim}d"

    def features(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        if not responses:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(toy_features(list(responses)), dtype=np.float32)


def pair_features(featurizer: Featurizer, pairs: Sequence[PreferencePair]) -> tuple[np.ndarray, np.ndarray]:
    """(φ(x, y+), φ(x, y−)) stacked for a list of pairs, in one encoder call."""
    prompts = [p.prompt for p in pairs]
    phi = featurizer.features(prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    return phi[: len(pairs)], phi[len(pairs) :]
