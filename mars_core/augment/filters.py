"""Filters that keep bad paraphrases out of training, with every reason recorded.

A trial on HH-RLHF responses with the packaged 135M paraphraser showed why each check exists:
6% of outputs were exact copies (no new information), a cosine band alone passed refusals turned
into compliance ("I can't help with that" -> "I can help you with that", cosine 0.67-0.83), and the
pass rate was three times lower for short responses, so augmented data skews long. Every candidate
therefore keeps *all* the reasons it failed, and ``pass_rates_by_length`` makes the skew visible.

Nothing here imports the generator: filters take plain texts, so they also serve paraphrases
from a remote server or a human.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import pairwise
from typing import Literal

import numpy as np
import pandas as pd

Side = Literal["chosen", "rejected"]
Polarity = Literal["refusal", "compliance", "neutral"]

# Reason codes in the order checks run; the pass-rate table has one column per code.
REASONS: tuple[str, ...] = (
    "empty",  # nothing left after stripping whitespace
    "exact_copy",  # same text as the source up to case and whitespace
    "too_similar",  # cosine above max_similarity: a near copy adds no new information
    "too_dissimilar",  # cosine below min_similarity: meaning probably changed
    "length_ratio",  # far shorter or longer than the source
    "near_duplicate",  # too close to an earlier kept candidate of the same source
    "side_flip",  # closer to the pair's other response than to its own source
    "polarity_flip",  # refusal became compliance or the reverse
    "not_selected",  # passed every check, but its budget unit was filled by a better candidate (selection.py)
)


def help_field(default, help: str):
    """A config field with a help string (run/settings.py shows it in the CLI's --help and the New-run form)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds for accepting a paraphrase; the defaults are a starting point, not tuned to a result."""

    min_similarity: float = help_field(
        0.75,
        "Lowest cosine similarity (MiniLM) between a paraphrase and its source; below it the meaning has "
        "probably changed.",
    )
    max_similarity: float = help_field(
        0.985,
        "Highest cosine similarity allowed; above it the paraphrase is a near copy that adds no new wording.",
    )
    min_length_ratio: float = help_field(
        0.5, "Shortest allowed paraphrase, as a fraction of the source length."
    )
    max_length_ratio: float = help_field(
        2.0, "Longest allowed paraphrase, as a multiple of the source length."
    )
    length_unit: Literal["words", "chars"] = help_field(
        "words", "Count length for the ratio in 'words' or 'chars'."
    )
    dedupe_threshold: float = help_field(
        0.97,
        "Two kept paraphrases of the same source with a cosine above this are duplicates; the later one is "
        "dropped.",
    )
    side_consistency: bool = help_field(
        True,
        "Drop a paraphrase of the chosen response that is at least as close to the rejected response as to "
        "its source (and vice versa): it would blur the pair's contrast.",
    )
    polarity_check: bool = help_field(
        True,
        "Drop a paraphrase that turns a refusal into compliance or the reverse: that changes what the "
        "preference label means even when cosine similarity is high.",
    )

    def __post_init__(self) -> None:
        for name in ("min_similarity", "max_similarity", "dedupe_threshold"):
            value = getattr(self, name)
            if not -1.0 <= value <= 1.0:
                raise ValueError(f"{name} is a cosine similarity and must lie in [-1, 1], got {value}")
        if self.min_similarity >= self.max_similarity:
            raise ValueError(
                f"min_similarity ({self.min_similarity}) must be below max_similarity ({self.max_similarity}), "
                "otherwise no paraphrase can pass"
            )
        if not (self.min_length_ratio >= 0 and math.isfinite(self.max_length_ratio)):
            raise ValueError(
                f"length ratios must be finite and non-negative, got min={self.min_length_ratio}, "
                f"max={self.max_length_ratio}"
            )
        if self.min_length_ratio >= self.max_length_ratio:
            raise ValueError(
                f"min_length_ratio ({self.min_length_ratio}) must be below max_length_ratio "
                f"({self.max_length_ratio})"
            )
        if self.length_unit not in ("words", "chars"):
            raise ValueError(f"length_unit must be 'words' or 'chars', got {self.length_unit!r}")


@dataclass
class ParaphraseRequest:
    """One response to paraphrase, with the context the filters need to judge its paraphrases."""

    pair_id: str
    side: Side
    text: str  # the source response
    other_text: str  # the pair's other response (for the side-consistency check)
    prompt: str = ""

    def __post_init__(self) -> None:
        if self.side not in ("chosen", "rejected"):
            raise ValueError(f"side must be 'chosen' or 'rejected', got {self.side!r} (pair {self.pair_id})")


@dataclass
class Candidate:
    """One generated paraphrase, the measurements taken on it, and why it was dropped (if it was)."""

    pair_id: str
    side: Side
    prompt: str
    source_text: str
    other_text: str
    candidate_index: int  # position among the outputs generated for this request
    text: str
    similarity: float  # cosine to the source; NaN for an empty candidate
    other_similarity: float  # cosine to the pair's other response; NaN when not measured
    length_ratio: float
    polarity_source: Polarity
    polarity_candidate: Polarity
    reasons: list[str] = field(default_factory=list)

    @property
    def kept(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict:
        out = asdict(self)
        out["kept"] = self.kept
        return out


# ---------------------------------------------------------------------------------------------
# Refusal / compliance polarity
# ---------------------------------------------------------------------------------------------

# Negated modal after "I": "I can't", "I cannot", "I won't", "I'm not able to", "I must decline" ...
_REFUSAL_PATTERNS = [
    r"\bi(?: really| just| simply)? (?:can't|cannot|won't|will not|shouldn't|should not)"
    r" (?:help|assist|do|provide|give|tell|share|support|answer|write|create|recommend|encourage|"
    r"condone|comply|explain|engage|participate|in good conscience)",
    r"\bi(?:'m| am) (?:not able|unable|not going|not willing|unwilling|not comfortable|not allowed|"
    r"not permitted) to\b",
    r"\bi(?:'m| am) not comfortable\b",
    r"\bi(?: will|'ll| would|'d)?(?: must| have to| need to)? (?:respectfully |politely )?(?:decline|refuse)\b",
    r"\bi (?:don't|do not) (?:feel comfortable|think i (?:can|should))\b",
    r"\bi(?: would|'d) rather not\b",
    r"\b(?:i'm|i am) (?:so |very |really )?sorry,? but\b",
    r"\b(?:i apologi[sz]e|my apologies),? but\b",
    r"\bsorry,? (?:but )?i (?:can't|cannot|won't|will not|am not|'m not)\b",
    r"\b(?:it|that|this|doing that|doing so)(?: would be| is|'s| could be| might be) "
    r"(?:illegal|unsafe|unethical|dangerous|harmful|against the law|a crime|wrong)\b",
    r"\bi(?: would|'d) (?:strongly )?(?:advise|recommend|urge you) (?:against|not to)\b",
    r"\bi (?:wouldn't|would not) recommend\b",
    r"\bas an ai\b[^.]*\b(?:can't|cannot|not able|unable|won't|don't)\b",
    r"\b(?:that's|that is) not something i (?:can|will|am able to)\b",
    r"\bno,? i (?:can't|cannot|won't|will not)\b",
]

# Compliance anywhere in the text: an offer of help or an instruction to the user.
_COMPLIANCE_PATTERNS = [
    r"\bi(?: can| could| will|'ll| would be happy to|'d be happy to| am happy to|'m happy to| am glad to|"
    r"'m glad to) (?:help|assist|show|explain|walk you through|tell you|give you|provide|do that|try)\b",
    r"\b(?:happy|glad) to help\b",
    r"\bhere(?:'s| is| are) (?:how|what|a|an|the|some|my|one|two|three|few|\d)\b",
    r"\byou (?:can|could|should|might|may|will need to|'ll need to|need to) (?!not\b)\w",
    r"\blet me (?:help|show|explain|walk|give|tell)\b",
    r"\bstep (?:1|one)\b",
]

# Compliance openers: only count at the very start of the response ("Sure", "Certainly", "1.").
_COMPLIANCE_OPENERS = (
    r"^(?:(?:sure|certainly|of course|absolutely|definitely|yes|yeah|okay|ok|great question|no problem|"
    r"first(?:ly)?|to (?:do|make|get|start))\b(?![\s,!.]*(?:not\b|no\b(?! problem)))|1[.)])"
)

_REFUSAL_RE = re.compile("|".join(f"(?:{p})" for p in _REFUSAL_PATTERNS))
_COMPLIANCE_RE = re.compile("|".join(f"(?:{p})" for p in _COMPLIANCE_PATTERNS))
_OPENER_RE = re.compile(_COMPLIANCE_OPENERS)


def _normalise(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = re.sub(r"\bcan ?not\b", "cannot", text.lower())
    return " ".join(text.split())


def refusal_polarity(text: str) -> Polarity:
    """Classify a response as "refusal", "compliance" or "neutral" by its earliest lexical cue.

    Deliberately transparent (a list of regular expressions above) so a reviewer can see why a
    paraphrase was dropped. Rules, in order:
      1. A compliance opener at the very start ("Sure", "Certainly", "Of course", "Yes", "1.") counts
         as a compliance cue at position 0.
      2. Otherwise every refusal cue ("I can't help", "I'm sorry, but", "I am not able to",
         "I must decline", "it would be illegal/unsafe", "I'd advise against") and compliance cue
         ("I can help", "Here's how", "You can ...", "Step 1", "Let me show") is located.
      3. The earliest cue decides: responses lead with their stance, and a refusal that then points
         somewhere else ("I can't help with that, but you can call a locksmith") stays a refusal.
      4. No cue at all: "neutral" (facts, chit-chat, or a stance these patterns do not know).
    Negation is handled inside the patterns ("I can't help" never matches "I can help").
    """
    norm = _normalise(text)
    if not norm:
        return "neutral"
    refusal = _REFUSAL_RE.search(norm)
    compliance = _COMPLIANCE_RE.search(norm)
    opener = _OPENER_RE.search(norm)
    if opener and (refusal is None or refusal.start() > 0):
        return "compliance"
    if refusal is None and compliance is None:
        return "neutral"
    if compliance is None:
        return "refusal"
    if refusal is None:
        return "compliance"
    return "refusal" if refusal.start() <= compliance.start() else "compliance"


def polarity_flipped(source: Polarity, candidate: Polarity) -> bool:
    """Refusal <-> compliance. A move to or from "neutral" is not a flip: the lexicon is incomplete,
    so a neutral reading means "no cue found", not "stance lost"."""
    return {source, candidate} == {"refusal", "compliance"}


# ---------------------------------------------------------------------------------------------
# The filter
# ---------------------------------------------------------------------------------------------


def _length(text: str, unit: str) -> int:
    return len(text.split()) if unit == "words" else len(text.strip())


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.casefold().split()) == " ".join(b.casefold().split())


def filter_candidates(
    requests: Sequence[ParaphraseRequest],
    outputs: Sequence[Sequence[str]],
    encoder,
    config: FilterConfig | None = None,
) -> list[Candidate]:
    """Judge every generated text; one Candidate per text, in input order, with all failed checks.

    ``outputs[i]`` are the texts generated for ``requests[i]``. All embeddings come from a single
    ``encoder.encode`` call (the encoder caches, so sources seen before cost nothing). Checks are
    independent, except that an exact copy is reported as "exact_copy" rather than also "too_similar",
    and an empty candidate reports only "empty" (nothing else can be measured on it). Near
    duplicates are judged against earlier candidates of the same request that passed everything.
    """
    config = config or FilterConfig()
    if len(requests) != len(outputs):
        raise ValueError(
            f"got {len(requests)} requests but {len(outputs)} output lists: they must match one to one"
        )

    texts: dict[str, int] = {}  # distinct text -> row in the embedding matrix

    def row(t: str) -> int:
        return texts.setdefault(t, len(texts))

    for req, outs in zip(requests, outputs, strict=True):
        row(req.text)
        if req.other_text.strip():
            row(req.other_text)
        for cand in outs:
            if cand.strip():
                row(cand.strip())
    emb = encoder.encode(list(texts)) if texts else np.zeros((0, 1), dtype=np.float32)

    def cos(a: str, b: str) -> float:
        return float(np.dot(emb[texts[a]], emb[texts[b]]))

    results: list[Candidate] = []
    for req, outs in zip(requests, outputs, strict=True):
        polarity_source = refusal_polarity(req.text)
        kept_so_far: list[str] = []
        source_len = max(_length(req.text, config.length_unit), 1)
        for index, raw in enumerate(outs):
            text = raw.strip()
            cand = Candidate(
                pair_id=req.pair_id,
                side=req.side,
                prompt=req.prompt,
                source_text=req.text,
                other_text=req.other_text,
                candidate_index=index,
                text=text,
                similarity=float("nan"),
                other_similarity=float("nan"),
                length_ratio=_length(text, config.length_unit) / source_len,
                polarity_source=polarity_source,
                polarity_candidate=refusal_polarity(text),
            )
            results.append(cand)
            if not text:
                cand.reasons.append("empty")
                continue
            cand.similarity = cos(text, req.text)
            if req.other_text.strip():
                cand.other_similarity = cos(text, req.other_text)
            if _same_text(text, req.text):
                cand.reasons.append("exact_copy")
            elif cand.similarity > config.max_similarity:
                cand.reasons.append("too_similar")
            if cand.similarity < config.min_similarity:
                cand.reasons.append("too_dissimilar")
            if not config.min_length_ratio <= cand.length_ratio <= config.max_length_ratio:
                cand.reasons.append("length_ratio")
            if any(cos(text, k) > config.dedupe_threshold for k in kept_so_far):
                cand.reasons.append("near_duplicate")
            if config.side_consistency and cand.other_similarity >= cand.similarity:
                cand.reasons.append("side_flip")  # NaN compares False: no other response, no check
            if config.polarity_check and polarity_flipped(polarity_source, cand.polarity_candidate):
                cand.reasons.append("polarity_flip")
            if cand.kept:
                kept_so_far.append(text)
    return results


DEFAULT_LENGTH_EDGES: tuple[float, ...] = (0, 10, 25, 50, 100, math.inf)


def _bucket_labels(edges: Sequence[float]) -> list[str]:
    labels = []
    for lo, hi in pairwise(edges):
        labels.append(f"{int(lo)}+" if math.isinf(hi) else f"{int(lo)}-{int(hi) - 1}")
    return labels


def pass_rates_by_length(
    candidates: Sequence[Candidate], edges: Sequence[float] = DEFAULT_LENGTH_EDGES
) -> pd.DataFrame:
    """Pass rate per bucket of *source* length in words, with a count per reason code.

    Buckets are [lo, hi); every bucket appears even when empty (pass_rate NaN), so tables from
    different runs line up. A candidate with several reasons counts once in each reason column,
    so reason columns can sum to more than n_candidates - n_kept.
    """
    edges = [float(e) for e in edges]
    if len(edges) < 2 or any(b <= a for a, b in pairwise(edges)):
        raise ValueError(f"edges must be at least two strictly increasing numbers, got {edges}")
    labels = _bucket_labels(edges)
    counts = {label: {"n_candidates": 0, "n_kept": 0, **dict.fromkeys(REASONS, 0)} for label in labels}
    outside = 0
    for cand in candidates:
        words = len(cand.source_text.split())
        slot = next((i for i, (lo, hi) in enumerate(pairwise(edges)) if lo <= words < hi), None)
        if slot is None:
            outside += 1
            continue
        c = counts[labels[slot]]
        c["n_candidates"] += 1
        c["n_kept"] += cand.kept
        for reason in cand.reasons:
            c[reason] = c.get(reason, 0) + 1
    if outside:
        raise ValueError(f"{outside} candidates have a source length outside the edges {edges}")
    frame = pd.DataFrame([{"bucket": label, **c} for label, c in counts.items()]).fillna(0)
    frame["pass_rate"] = frame["n_kept"] / frame["n_candidates"].where(frame["n_candidates"] > 0)
    order = ["bucket", "n_candidates", "n_kept", "pass_rate"]
    return frame[order + [c for c in frame.columns if c not in order]]


def candidates_frame(candidates: Sequence[Candidate]) -> pd.DataFrame:
    """All candidates as a table (one row each) for the review page and the CLI."""
    columns = [f.name for f in fields(Candidate)] + ["kept"]
    return pd.DataFrame([c.to_dict() for c in candidates], columns=columns)
