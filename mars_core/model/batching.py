"""Text → token batches for a sequence-classification reward model.

One sequence per (prompt, response), in one of two layouts (cut pairs are counted, never dropped):
- transformer (a [CLS]-pooled head, TRL's layout for a standard dataset): ``prompt + "\\n\\n" + response``,
  cut from the LEFT when too long, so the prompt goes first and the final response's tail always survives;
- sentence (a mean-pooled head, ``prompt_tokens`` set): exactly the text and tokens the linear model's
  sentence encoder reads (features.py): the prompt's last ``prompt_tokens`` word pieces, the join, the
  response, then cut from the RIGHT at ``max_length`` as sentence-transformers does. The linear probe is then
  the linear model's own fit, and LP-FT starts exactly where the linear head is.
Two choices that make training cheaper than the common implementation without changing what it learns:
- chosen and rejected of a batch padded together and run in ONE forward pass (2B rows);
- length buckets: pairs sorted by length inside seeded chunks, so a batch pads to near its own
  longest text rather than the dataset's, while the batch order stays shuffled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mars_core.model.encoders import JOIN, cut_left, joined_text

__all__ = ["JOIN", "Encoded", "PairTokenizer", "joined_text", "length_buckets", "pad_batch"]

BUCKET_CHUNK = 50  # batches per sorted chunk: big enough to pad little, small enough to stay shuffled


@dataclass(frozen=True)
class Encoded:
    """Token ids of one (prompt, response), special tokens included, and whether the cut reached it."""

    ids: tuple[int, ...]
    truncated: bool  # some of the text was cut (the prompt first)
    response_cut: bool  # the cut reached into the response itself (transformer layout: its head went; sentence
    #                     layout: its tail went)


class PairTokenizer:
    """Tokenises (prompt, response) once per distinct text (ids never go stale: they do not depend on weights);
    ``prompt_tokens=None``: the transformer layout, an int: the sentence layout (module docstring)."""

    def __init__(self, tokenizer, max_length: int, prompt_tokens: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.prompt_tokens = prompt_tokens
        probe_full = tokenizer("a", add_special_tokens=True)["input_ids"]
        probe_inner = tokenizer("a", add_special_tokens=False)["input_ids"]
        start = _find(probe_full, probe_inner)
        self.prefix = list(probe_full[:start])
        self.suffix = list(probe_full[start + len(probe_inner):])
        self.budget = self.max_length - len(self.prefix) - len(self.suffix)
        if self.budget < 4:
            raise ValueError(f"max_length {max_length} leaves no room for text after the special tokens")
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (tokenizer.eos_token_id or 0))
        self._cache: dict[tuple[str, str], Encoded] = {}

    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Encoded]:
        keys = list(zip(prompts, responses, strict=True))
        todo = [k for k in dict.fromkeys(keys) if k not in self._cache]
        if todo and self.prompt_tokens is not None:
            self._cache.update(zip(todo, self._sentence_layout(todo)))
        elif todo:
            # verbose=False: texts longer than the model are expected here; the cut below handles them
            joined = self.tokenizer([joined_text(p, r) for p, r in todo], add_special_tokens=False,
                                    verbose=False)["input_ids"]
            tails = self.tokenizer([r for _, r in todo], add_special_tokens=False, verbose=False)["input_ids"]
            for key, ids, tail in zip(todo, joined, tails):
                cut = max(0, len(ids) - self.budget)
                kept = ids[cut:]  # from the left: prompt first, then the response's head
                self._cache[key] = Encoded(
                    tuple(self.prefix + kept + self.suffix), cut > 0, cut > len(ids) - len(tail)
                )
        return [self._cache[k] for k in keys]

    def _sentence_layout(self, todo: list[tuple[str, str]]) -> list[Encoded]:
        """The sentence encoder's tokens of TextFeaturizer's text: prompt tail, join, response, right cut."""
        tails = [cut_left(self.tokenizer, p, self.prompt_tokens) if p else "" for p, _ in todo]
        texts = [joined_text(tail, r) for tail, (_, r) in zip(tails, todo)]
        ids = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return [Encoded(tuple(self.prefix + row[:self.budget] + self.suffix), tail != p or len(row) > self.budget,
                        len(row) > self.budget)
                for row, tail, (p, _) in zip(ids, tails, todo)]


def _find(haystack: Sequence[int], needle: Sequence[int]) -> int:
    for i in range(len(haystack) - len(needle) + 1):
        if list(haystack[i:i + len(needle)]) == list(needle):
            return i
    raise ValueError("could not locate the text inside the tokenizer's special tokens")


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest row of THIS batch (dynamic padding)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def length_buckets(lengths: Sequence[int], batch_size: int, seed: int | None) -> list[np.ndarray]:
    """Index batches of similar length: seeded shuffle, sort within chunks, shuffle the batches.

    ``seed=None`` (scoring) sorts all rows globally by length, the cheapest padding; order does not
    matter there because results are put back in place.
    """
    n = len(lengths)
    lengths = np.asarray(lengths)
    if seed is None:
        order = np.argsort(-lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    chunk = batch_size * BUCKET_CHUNK
    batches: list[np.ndarray] = []
    for start in range(0, n, chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]
