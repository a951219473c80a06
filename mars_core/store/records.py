"""What the store persists, as plain records, and the errors it raises.

Kept apart from the SQL so that views, review and the step can build and read records without
holding a database connection.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mars_core.data.pairs import PreferencePair

REVIEW_STATUSES = ("pending", "accepted", "rejected", "edited")
PARAPHRASE_STATUSES = (*REVIEW_STATUSES, "filtered")


class StoreError(RuntimeError):
    """The store could not be opened or a record is inconsistent."""


class ReviewConflict(RuntimeError):
    """Someone else already decided this paraphrase; nothing was overwritten."""

    def __init__(self, paraphrase_id: str, status: str, reviewer: str | None) -> None:
        super().__init__(
            f"paraphrase {paraphrase_id} was already marked {status!r} by {reviewer or 'someone else'}"
        )
        self.paraphrase_id = paraphrase_id
        self.status = status
        self.reviewer = reviewer


class LabelConflict(RuntimeError):
    """Someone else changed this pair's label decision since it was loaded; nothing was overwritten."""

    def __init__(self, pair_id: str, decision: str | None, reviewer: str | None) -> None:
        super().__init__(
            f"pair {pair_id} was already marked {decision!r} by {reviewer or 'someone else'}"
            if decision else f"pair {pair_id}'s decision was withdrawn meanwhile"
        )
        self.pair_id = pair_id
        self.decision = decision
        self.reviewer = reviewer


@dataclass(frozen=True)
class LabelDecision:
    """A reviewer's verdict on an original pair's label: keep, swap (train it reversed), drop, or unsure."""

    pair_id: str
    decision: str
    reviewer: str
    decided_at: float
    score: float | None = None  # the label-error score the reviewer saw


@dataclass(frozen=True)
class RunRecord:
    id: int
    name: str
    config: dict[str, Any]
    data_source: str
    created_at: float


@dataclass
class ParaphraseRecord:
    """One generated candidate, kept or filtered, with its review state."""

    id: str
    pair_id: str
    side: str
    epoch: int
    source_text: str
    text: str
    model: str
    similarity: float | None = None
    verdicts: dict[str, Any] = field(default_factory=dict)  # filter reasons and scores
    status: str = "pending"  # pending / accepted / rejected / edited, or filtered (never trains)
    edited_text: str | None = None
    reviewer: str | None = None
    reviewed_at: float | None = None
    created_at: float = field(default_factory=time.time)

    @property
    def final_text(self) -> str:
        return self.edited_text if self.status == "edited" and self.edited_text else self.text


@dataclass
class MarginRow:
    pair_id: str
    split: str
    margin: float
    # the margin the allocation saw (previous model, maybe cross-fitted); at epoch 0, the out-of-fold margin
    # (linear model, folds >= 2) that label-error scores read
    alloc_margin: float | None = None
    q: float | None = None
    count: int | None = None
    curvature: float | None = None  # sigma'(margin) * |delta phi|^2 under this epoch's model


@dataclass
class EpochRecord:
    """Everything one finished epoch adds; committed in one transaction."""

    epoch: int
    metrics: dict[str, Any]
    allocation: dict[str, Any] = field(default_factory=dict)
    curvature: dict[str, Any] = field(default_factory=dict)
    model_state: dict[str, np.ndarray] | None = None
    margins: list[MarginRow] = field(default_factory=list)
    new_pairs: list[PreferencePair] = field(default_factory=list)
    new_paraphrases: list[ParaphraseRecord] = field(default_factory=list)
    seconds: float = 0.0


def pack_arrays(arrays: dict[str, np.ndarray] | None) -> bytes | None:
    if arrays is None:
        return None
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def unpack_arrays(blob: bytes | None) -> dict[str, np.ndarray] | None:
    if blob is None:
        return None
    with np.load(io.BytesIO(blob)) as data:
        return {k: data[k] for k in data.files}


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, allow_nan=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} as JSON")
