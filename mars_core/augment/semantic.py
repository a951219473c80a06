"""Semantic refinement (optional, off by default): widen the contrast of pairs whose responses read alike.

When y+ and y- embed almost identically, the pair carries little signal the reward model can
separate. The idea (MARS paper v2) is to rewrite one side so the two responses differ more while
the label stays right: first make the rejected response further from the chosen one (and still
worse), else make the chosen one further from the rejected one (and still better).

Only the distance is checked here; "still worse / still better" is asked of the rewriter and guarded
by cheap sanity checks (stance kept, length sane, still recognisably the same response), not
verified. Sharpened pairs carry their parent id so a reviewer or a gold reward can audit them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from mars_core.augment.filters import help_field, polarity_flipped, refusal_polarity
from mars_core.augment.paraphraser import Paraphraser
from mars_core.data.pairs import PreferencePair

log = logging.getLogger(__name__)

Side = Literal["chosen", "rejected"]

REWRITE_REJECTED_INSTRUCTION = (
    "Rewrite the response below in different words. Make it vaguer and less helpful, and no more careful "
    "than it is now. Keep its stance: if it refuses, it still refuses; if it answers, it still answers. "
    "Reply with the rewritten response only."
)
REWRITE_CHOSEN_INSTRUCTION = (
    "Rewrite the response below in different words. Make it clearer, more helpful and more careful. "
    "Keep its stance: if it refuses, it still refuses; if it answers, it still answers. "
    "Reply with the rewritten response only."
)


@dataclass(frozen=True)
class SemanticConfig:
    """Knobs of the semantic sharpening step."""

    enabled: bool = help_field(
        False,
        "Sharpen low-contrast pairs at each refinement epoch (MARS paper v2). Off by default: it rewrites "
        "training data, and whether it helps is an open question. Read by the refinement loop; calling "
        "sharpen_contrast directly always runs it.",
    )
    min_gain: float = help_field(
        0.0,
        "A rewrite is accepted only if the pair's semantic distance (1 - cosine) grows by more than this.",
    )
    n_candidates: int = help_field(
        2, "Rewrites asked for per response; the valid one with the largest gain is used."
    )
    min_self_similarity: float = help_field(
        0.5,
        "Lowest cosine between a rewrite and the text it replaces. Without it, off-topic text would 'win' by "
        "being far from everything.",
    )
    min_length_ratio: float = help_field(
        0.3, "Shortest allowed rewrite, in words, as a fraction of the original."
    )
    max_length_ratio: float = help_field(
        3.0, "Longest allowed rewrite, in words, as a multiple of the original."
    )
    polarity_check: bool = help_field(
        True,
        "Reject a rewrite that turns a refusal into compliance or the reverse: that could flip the label.",
    )
    try_chosen: bool = help_field(
        True, "When no rewrite of the rejected response is accepted, try rewriting the chosen response."
    )

    def __post_init__(self) -> None:
        if not np.isfinite(self.min_gain) or self.min_gain < 0:
            raise ValueError(
                f"min_gain must be a finite number >= 0 (the distance must grow), got {self.min_gain}"
            )
        if not isinstance(self.n_candidates, int) or self.n_candidates < 1:
            raise ValueError(f"n_candidates must be a whole number >= 1, got {self.n_candidates!r}")
        if not -1.0 <= self.min_self_similarity <= 1.0:
            raise ValueError(
                f"min_self_similarity is a cosine similarity and must lie in [-1, 1], got {self.min_self_similarity}"
            )
        if not 0 <= self.min_length_ratio < self.max_length_ratio < float("inf"):
            raise ValueError(
                "length ratios need 0 <= min_length_ratio < max_length_ratio < inf, got "
                f"{self.min_length_ratio} and {self.max_length_ratio}"
            )


@dataclass
class SharpenResult:
    """What happened to one pair. Not accepted: side, old_text and new_text are None, distances equal."""

    pair_id: str
    side: Side | None  # the side that was rewritten
    old_text: str | None
    new_text: str | None
    old_distance: float
    new_distance: float
    accepted: bool
    attempts: list[str] = field(default_factory=list)  # one line per side tried, saying why it failed

    @property
    def gain(self) -> float:
        return self.new_distance - self.old_distance

    def to_dict(self) -> dict:
        return asdict(self) | {"gain": self.gain}


def semantic_distance(chosen: Sequence[str], rejected: Sequence[str], encoder) -> np.ndarray:
    """1 - cosine(chosen_i, rejected_i) per pair, in [0, 2] (clipped against float round-off)."""
    if len(chosen) != len(rejected):
        raise ValueError(f"got {len(chosen)} chosen and {len(rejected)} rejected texts: they must pair up")
    if not chosen:
        return np.zeros(0, dtype=np.float64)
    emb = encoder.encode(list(chosen) + list(rejected)).astype(np.float64)
    a, b = emb[: len(chosen)], emb[len(chosen) :]
    return np.clip(1.0 - np.einsum("ij,ij->i", a, b), 0.0, 2.0)


def select_for_sharpening(distances: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Boolean mask of pairs whose distance is below ``threshold`` (default: the mean distance)."""
    distances = np.asarray(distances, dtype=np.float64)
    if distances.size == 0:
        return np.zeros(0, dtype=bool)
    cut = float(np.mean(distances)) if threshold is None else threshold
    return distances < cut


def _problems(old: str, new: str, self_similarity: float, config: SemanticConfig) -> list[str]:
    """Sanity checks on a rewrite that do not depend on the distance."""
    if not new.strip():
        return ["empty"]
    problems = []
    if " ".join(new.casefold().split()) == " ".join(old.casefold().split()):
        problems.append("unchanged")
    ratio = len(new.split()) / max(len(old.split()), 1)
    if not config.min_length_ratio <= ratio <= config.max_length_ratio:
        problems.append(f"length_ratio {ratio:.2f}")
    if self_similarity < config.min_self_similarity:
        problems.append(f"off_topic (cosine to original {self_similarity:.2f})")
    if config.polarity_check and polarity_flipped(refusal_polarity(old), refusal_polarity(new)):
        problems.append(f"polarity_flip ({refusal_polarity(old)} -> {refusal_polarity(new)})")
    return problems


def sharpen_contrast(
    pairs: Sequence[PreferencePair],
    rewriter: Paraphraser,
    encoder,
    seed: int = 0,
    config: SemanticConfig | None = None,
) -> list[SharpenResult]:
    """Try to widen each pair's semantic distance by rewriting one side; one result per pair, in order.

    The rejected side is tried first for all pairs in one ``paraphrase`` call (with the rewrite instruction), then the chosen side for
    those still unaccepted. A rewrite counts only if it passes the sanity checks and the distance to
    the (unchanged) other side grows by more than ``config.min_gain``; among valid rewrites the largest
    gain wins. A rewriter that raises or returns the wrong shape fails that side for the whole batch,
    and the pair is kept as it is.
    """
    config = config or SemanticConfig()
    old = semantic_distance([p.chosen for p in pairs], [p.rejected for p in pairs], encoder)
    results: list[SharpenResult] = [
        SharpenResult(p.id, None, None, None, float(d), float(d), False)
        for p, d in zip(pairs, old, strict=True)
    ]
    sides: list[tuple[Side, str]] = [("rejected", REWRITE_REJECTED_INSTRUCTION)]
    if config.try_chosen:
        sides.append(("chosen", REWRITE_CHOSEN_INSTRUCTION))
    for side, instruction in sides:
        todo = [i for i, r in enumerate(results) if not r.accepted]
        if not todo:
            break
        sources = [getattr(pairs[i], side) for i in todo]
        try:
            outputs = rewriter.paraphrase(sources, config.n_candidates, seed, instruction=instruction).texts
            if len(outputs) != len(sources):
                raise ValueError(f"returned {len(outputs)} lists for {len(sources)} texts")
        except Exception as exc:  # a failed generator must not stop a refinement run
            log.warning("contrast rewriter failed on the %s side: %s", side, exc)
            for i in todo:
                results[i].attempts.append(f"{side}: rewriter failed ({type(exc).__name__}: {exc})")
            continue
        _accept_best(pairs, results, todo, side, outputs, encoder, config)
    return results


def _accept_best(pairs, results, todo, side: Side, outputs, encoder, config: SemanticConfig) -> None:
    other_side = "chosen" if side == "rejected" else "rejected"
    rows: dict[str, int] = {}
    for i, outs in zip(todo, outputs, strict=True):
        for t in (getattr(pairs[i], side), getattr(pairs[i], other_side), *[o.strip() for o in outs or []]):
            if t.strip():
                rows.setdefault(t, len(rows))
    emb = encoder.encode(list(rows)).astype(np.float64) if rows else None

    def cos(a: str, b: str) -> float:
        return float(np.dot(emb[rows[a]], emb[rows[b]]))

    for i, outs in zip(todo, outputs, strict=True):
        old_text, other = getattr(pairs[i], side), getattr(pairs[i], other_side)
        result = results[i]
        best, best_distance, notes = None, -np.inf, []
        for raw in outs or []:
            new = (raw or "").strip()
            self_sim = cos(new, old_text) if new and old_text.strip() else 1.0
            problems = _problems(old_text, new, self_sim, config)
            distance = float(np.clip(1.0 - cos(new, other), 0.0, 2.0)) if new and other.strip() else np.nan
            if not problems and not distance - result.old_distance > config.min_gain:
                problems.append(f"no_gain ({result.old_distance:.3f} -> {distance:.3f})")
            if problems:
                notes.append("; ".join(problems))
            elif distance > best_distance:
                best, best_distance = new, distance
        if best is None:
            result.attempts.append(f"{side}: " + (" | ".join(notes) if notes else "no rewrites returned"))
            continue
        result.side, result.old_text, result.new_text = side, old_text, best
        result.new_distance, result.accepted = best_distance, True
        result.attempts.append(f"{side}: accepted ({result.old_distance:.3f} -> {best_distance:.3f})")


def apply_sharpening(
    pairs: Sequence[PreferencePair], results: Sequence[SharpenResult], epoch: int = 0
) -> list[PreferencePair]:
    """The pairs with accepted rewrites swapped in, as new synthetic pairs that point to their parent.

    Unaccepted pairs come back unchanged, so the output lines up with the input; whether sharpened
    pairs replace or join their parents is the caller's choice.
    """
    by_id = {r.pair_id: r for r in results}
    out = []
    for pair in pairs:
        r = by_id.get(pair.id)
        if r is None or not r.accepted:
            out.append(pair)
            continue
        out.append(
            pair.with_changes(
                id=f"{pair.id}~sharp{epoch}",
                source="semantic",
                parent_id=pair.parent_id or pair.id,
                epoch_added=epoch,
                gold_margin=None,  # the rewrite changed a response, so the old gold margin no longer holds
                **{r.side: r.new_text},
            )
        )
    return out
