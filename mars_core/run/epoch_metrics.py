"""One epoch's metrics and allocation summary as typed records, written and read through these classes.

``to_dict`` is the flat JSON the store keeps (``test_accuracy``, ``paraphrases_kept`` ...), since stored runs,
the views' tables and the CLI read them flat; code that reads one value reads it through ``from_dict`` and an
attribute, so a renamed key fails loudly: a stored key this version does not know raises, and so does a
missing key that every version wrote. Keys added over time may be missing from older stores (their
defaults apply; ``EpochMetrics.budget_units`` says when the legacy rule is needed).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mars_core.analysis.margins import MarginMetrics


class StoredRecordError(ValueError):
    """A stored record has keys this version does not know, or lacks one it needs (another version wrote it?)."""


def _fields_from(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The dataclass fields of ``cls`` present in ``data``; required ones must be there, unknown keys raise."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    required = [f.name for f in dataclasses.fields(cls)
                if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in data]
    if missing:
        raise StoredRecordError(f"stored {what} lack {', '.join(missing)}")
    return {k: v for k, v in data.items() if k in names}


def _reject_unknown(data: Mapping[str, Any], known: set[str], what: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise StoredRecordError(f"stored {what} have keys this version does not know: {', '.join(unknown)} "
                                "(written by another version of mars_core?)")


@dataclass
class AugmentationMetrics:
    """What the augmentation half of a Step did. Budget units are kept paraphrases (augment/selection.py)."""

    paraphrases_requested: int = 0  # budget units allocated this epoch
    paraphrases_generated: int = 0  # LM generations (rows), cache hits included
    paraphrases_kept: int = 0  # units filled: the budget this epoch spent
    paraphrase_failures: int = 0  # rows that produced nothing (error or time limit)
    generations_per_kept: float | None = None
    paraphrase_tokens: int = 0  # tokens generated now (cache hits cost none)
    paraphrase_cache_hits: int = 0
    paraphrase_rounds: int = 0  # selection rounds (1 + retries)
    filter_reasons: dict[str, int] = field(default_factory=dict)
    pass_rates_by_length: list[dict[str, Any]] = field(default_factory=list)
    contrast_rewrites: int = 0
    pairs_added: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentationMetrics:
        return cls(**_fields_from(cls, data, "augmentation metrics"))


@dataclass
class EpochMetrics:
    epoch: int
    test: MarginMetrics
    train: MarginMetrics
    pairs_trained: int
    fit_loss: float
    fit_iterations: int
    fit_details: dict[str, Any] = field(default_factory=dict)  # e.g. the fine-tuned model's truncated_pairs
    augmentation: AugmentationMetrics = field(default_factory=AugmentationMetrics)
    ks_vs_previous: float | None = None
    picked_curvature: float | None = None  # mean contribution of the picked pairs, weighted by their units
    added_curvature: float | None = None  # mean contribution of the pairs added, under the allocating model
    mean_curvature: float | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)  # stage -> seconds, in the order of refine.STAGES
    absent: frozenset[str] = field(default=frozenset(), compare=False, repr=False)  # keys an older store lacked

    @property
    def budget_units(self) -> int | None:
        """Kept paraphrases: the budget this epoch spent (augment/selection.py). None for an epoch stored
        before the unit was a kept paraphrase: such epochs count what they allocated."""
        return None if "paraphrases_kept" in self.absent else self.augmentation.paraphrases_kept

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpochMetrics:
        """The record ``to_dict`` wrote (or an older version of it); see the module docstring."""
        sides = {f.name for f in dataclasses.fields(MarginMetrics)}
        augmentation = {f.name for f in dataclasses.fields(AugmentationMetrics)}
        own = {f.name for f in dataclasses.fields(cls)} - {"test", "train", "augmentation", "absent"}
        _reject_unknown(data, {f"{side}_{k}" for side in ("test", "train") for k in sides} | augmentation | own,
                        "epoch metrics")
        test, train = ({k: data[f"{side}_{k}"] for k in sides if f"{side}_{k}" in data} for side in ("test", "train"))
        try:
            margins = MarginMetrics(**test), MarginMetrics(**train)
        except TypeError as exc:
            raise StoredRecordError(f"stored epoch metrics lack a margin summary: {exc}") from None
        rest = _fields_from(cls, {k: v for k, v in data.items() if k in own}
                            | {"test": margins[0], "train": margins[1]}, "epoch metrics")
        stored_augmentation = {k: v for k, v in data.items() if k in augmentation}
        return cls(**rest, augmentation=AugmentationMetrics.from_dict(stored_augmentation),
                   absent=frozenset((augmentation | own) - set(data)))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"test_{k}": v for k, v in self.test.to_dict().items()}
        out.update({f"train_{k}": v for k, v in self.train.to_dict().items()})
        out.update(dataclasses.asdict(self.augmentation))
        for f in dataclasses.fields(self):
            if f.name not in ("test", "train", "augmentation", "absent"):
                out[f.name] = getattr(self, f.name)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) and k.endswith("curvature") else v)
                for k, v in out.items()}


@dataclass
class AllocationSummary:
    """How one epoch's budget was allocated (stored beside its metrics; epoch 0 has none)."""

    strategy: str
    budget: int  # budget units asked for this epoch
    total: int  # units allocated
    tau: float | None = None
    tau_in_force: float | None = None  # the τ applied to m itself (τ/std(Δ) under tau_scale std; 0 for uniform/none)
    margin_mode: str | None = None
    tau_scale: str | None = None
    margin_source: str | None = None  # "in-sample" or "k-fold cross-fitted"
    effective_n: float | None = None  # exp(entropy of q)
    pairs_picked: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AllocationSummary | None:
        """None for an epoch that allocated nothing (epoch 0 stores an empty summary)."""
        if not data:
            return None
        _reject_unknown(data, {f.name for f in dataclasses.fields(cls)}, "allocation summaries")
        return cls(**_fields_from(cls, data, "allocation summaries"))
