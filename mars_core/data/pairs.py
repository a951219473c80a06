"""The preference pair: the one record every module passes around."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class PreferencePair:
    """A prompt with a preferred (chosen) and a dispreferred (rejected) response.

    Synthetic pairs keep their provenance (parent, epoch, which paraphrases built them)
    so a reviewer's rejection can remove exactly the pairs a bad paraphrase produced.
    """

    id: str
    prompt: str
    chosen: str
    rejected: str
    source: str = "original"  # dataset/suite name for originals, "synthetic" for augmented pairs
    parent_id: str | None = None  # the original pair a synthetic pair was built from
    epoch_added: int = 0  # 0 for the original data, t for pairs added at refinement epoch t
    gold_margin: float | None = None  # r*(x, chosen) - r*(x, rejected) where a gold reward exists
    chosen_paraphrase_id: str | None = None  # store id of the paraphrase used as chosen, if any
    rejected_paraphrase_id: str | None = None  # likewise for rejected

    @property
    def is_synthetic(self) -> bool:
        return self.parent_id is not None

    def with_changes(self, **changes) -> PreferencePair:
        return replace(self, **changes)
