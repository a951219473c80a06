"""One epoch's metrics as one typed record; ``to_dict`` is the flat JSON the store, pages and CLI read.

Keys stay flat (``test_accuracy``, ``paraphrases_kept`` ...) because stored runs, views and the CLI
table already read them that way; the record only makes sure every epoch writes the same keys.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from mars_core.analysis.margins import MarginMetrics


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
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"test_{k}": v for k, v in self.test.to_dict().items()}
        out.update({f"train_{k}": v for k, v in self.train.to_dict().items()})
        out.update(dataclasses.asdict(self.augmentation))
        for f in dataclasses.fields(self):
            if f.name not in ("test", "train", "augmentation"):
                out[f.name] = getattr(self, f.name)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) and k.endswith("curvature") else v)
                for k, v in out.items()}
