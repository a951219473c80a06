"""A run's whole configuration: one dataclass per concern, nested, stored as JSON with the run.

Storing the full config with every run is what lets a run resume in another process and lets
the app show exactly which τ, margin mode and review policy were in force.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from mars_core.augment.allocation import AllocationConfig
from mars_core.augment.filters import FilterConfig
from mars_core.augment.paraphrase import ParaphraseConfig
from mars_core.augment.semantic import SemanticConfig
from mars_core.model.encoders import DEFAULT_ENCODER
from mars_core.model.train import TrainConfig

DEMO_SOURCES = ("demo:text", "demo:toy")
REVIEW_POLICIES = ("auto", "gated")


@dataclass(frozen=True)
class DataConfig:
    """Where the pairs come from and how they are split."""

    source: str = field(default="demo:text", metadata={"help": "demo:text, demo:toy, or a path to a data file"})
    format: str = field(default="auto", metadata={"help": "schema of a data file; auto detects it"})
    column_map: dict[str, str] | None = field(default=None, metadata={"help": "our name -> the file's column"})
    axis: str = field(default="helpful", metadata={"help": "PKU-SafeRLHF: helpful or harmless preference"})
    n_pairs: int | None = field(default=None, metadata={"help": "demo size, or the first N pairs of a file"})
    noise: float = field(default=0.0, metadata={"help": "demo suites: probability of flipping each label"})
    test_fraction: float = field(default=0.2, metadata={"help": "held-out share for accuracy and SNR"})
    seed: int = field(default=0, metadata={"help": "seed for the demo suite and the split"})

    def __post_init__(self) -> None:
        if not self.source or not self.source.strip():
            raise ValueError("data source is empty: use demo:text, demo:toy or a file path")
        if self.source.startswith("demo:") and self.source not in DEMO_SOURCES:
            raise ValueError(f"unknown demo suite {self.source!r}; choose one of {', '.join(DEMO_SOURCES)}")
        if not 0.0 <= self.noise < 0.5:
            raise ValueError(f"label noise must be in [0, 0.5), got {self.noise}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be between 0 and 1, got {self.test_fraction}")
        if self.n_pairs is not None and self.n_pairs < 4:
            raise ValueError(f"n_pairs must be at least 4 (or None for all), got {self.n_pairs}")

    @property
    def is_toy(self) -> bool:
        return self.source == "demo:toy"


@dataclass(frozen=True)
class RefineConfig:
    """The epoch loop: budget, stop rule, where allocation margins come from, review policy."""

    epochs: int = field(default=3, metadata={"help": "most refinement epochs a run takes"})
    budget_per_epoch: int = field(default=32, metadata={"help": "paraphrase generations per epoch (B_t)"})
    total_budget: int | None = field(default=None, metadata={"help": "generations over the run; None: epochs × B_t"})
    cross_fit_folds: int = field(
        default=5,
        metadata={"help": "k ≥ 2: allocate on k-fold cross-fitted margins; 0: in-sample margins (the paper)"},
    )
    review_policy: str = field(
        default="auto", metadata={"help": "auto: filtered paraphrases train at once; gated: only accepted ones"}
    )
    ks_threshold: float = field(
        default=0.0,
        metadata={"help": "stop when the KS statistic between successive epochs' held-out margins is below this"},
    )
    curvature_k: int = field(default=10, metadata={"help": "top eigenvalues recorded per epoch"})
    seed: int = field(default=0, metadata={"help": "seed for allocation draws, paraphrasing and folds"})
    feature_mode: str = field(
        default="prompt_response", metadata={"help": "prompt_response: φ from the joined text; response: y only"}
    )
    encoder: str = field(default=DEFAULT_ENCODER, metadata={"help": "sentence encoder: packaged:minilm or a path"})

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.budget_per_epoch < 0:
            raise ValueError(f"budget_per_epoch must be >= 0, got {self.budget_per_epoch}")
        if self.total_budget is not None and self.total_budget < 0:
            raise ValueError(f"total_budget must be >= 0 or None, got {self.total_budget}")
        if self.cross_fit_folds == 1 or self.cross_fit_folds < 0:
            raise ValueError(f"cross_fit_folds must be 0 (in-sample) or at least 2, got {self.cross_fit_folds}")
        if self.review_policy not in REVIEW_POLICIES:
            raise ValueError(f"review_policy must be 'auto' or 'gated', got {self.review_policy!r}")
        if not 0.0 <= self.ks_threshold <= 1.0 or math.isnan(self.ks_threshold):
            raise ValueError(f"ks_threshold must be in [0, 1], got {self.ks_threshold}")

    @property
    def budget_total(self) -> int:
        return self.total_budget if self.total_budget is not None else self.epochs * self.budget_per_epoch


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    allocation: AllocationConfig = field(default_factory=AllocationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    paraphrase: ParaphraseConfig = field(default_factory=ParaphraseConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return _build(cls, data)


def _build(cls: type, data: Any) -> Any:
    """Rebuild a (nested) frozen dataclass from its asdict() form; unknown keys are an error."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} expects a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings: {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in data.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            value = _build(kind, value)
        elif isinstance(value, list) and _is_tuple_type(kind):
            value = _deep_tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _deep_tuple(value: Any) -> Any:
    """JSON turns tuples (of tuples) into lists; frozen configs want them back hashable."""
    return tuple(_deep_tuple(v) for v in value) if isinstance(value, list) else value


def _is_tuple_type(kind: Any) -> bool:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple_type(arg) for arg in typing.get_args(kind))
    return kind is tuple or origin is tuple


def with_overrides(config: RunConfig, **sections: dict[str, Any]) -> RunConfig:
    """A copy with some fields of some sections changed, e.g. allocation={"tau": 2.0}."""
    changes = {name: dataclasses.replace(getattr(config, name), **fields) for name, fields in sections.items()}
    return dataclasses.replace(config, **changes)
