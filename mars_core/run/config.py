"""A run's whole configuration: one dataclass per concern, nested, stored as JSON with the run.

Storing the full config with every run is what lets a run resume in another process and lets
the app show exactly which τ, margin mode and review policy were in force.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from mars_core.augment.allocation import AllocationConfig
from mars_core.augment.filters import FilterConfig
from mars_core.augment.paraphraser import ParaphraseConfig
from mars_core.augment.remote import DEFAULT_DEADLINE_S, check_deadline
from mars_core.augment.semantic import SemanticConfig
from mars_core.data.columns import check_column_map, parse_column_map
from mars_core.data.schemas import AXES, FORMATS
from mars_core.model.encoders import DEFAULT_ENCODER
from mars_core.model.features import FEATURE_MODES
from mars_core.model.model_paths import check_model
from mars_core.model.reward_config import RewardModelConfig
from mars_core.model.train import TrainConfig

DEMO_SOURCES = ("demo:text", "demo:toy")
DEMO_ALIASES = {"demo": "demo:text", "toy": "demo:toy"}
REVIEW_POLICIES = ("auto", "gated")

# Field metadata read by run.settings: "help" (always), "flag" (becomes a CLI flag and a New-run form field),
# "choices", "form" (False: CLI only), "parse" (text -> value, for flags whose value is not a plain number/word).


def data_source(text: str) -> str:
    """--data value: demo / toy (the built-in suites) or a file path, as DataConfig.source stores it."""
    return DEMO_ALIASES.get(text.strip(), text.strip())




@dataclass(frozen=True)
class DataConfig:
    """Where the pairs come from and how they are split."""

    source: str = field(default="demo:text", metadata={
        "help": "demo (text suite), toy (2-D), or a path to a data file", "flag": "--data", "parse": data_source,
        "form": False})
    format: str = field(default="auto", metadata={
        "help": "schema of a data file; auto detects it", "flag": "--format", "choices": ("auto", *FORMATS)})
    column_map: dict[str, str] | None = field(default=None, metadata={
        "help": "our field -> the file's column, e.g. prompt=question,chosen=good,rejected=bad",
        "flag": "--column-map", "parse": parse_column_map})
    axis: str = field(default="helpful", metadata={
        "help": "PKU-SafeRLHF files: which label decides chosen (helpful or harmless)", "flag": "--axis",
        "choices": AXES})
    n_pairs: int | None = field(default=None, metadata={
        "help": "demo size, or use only the first N pairs of a file", "flag": "--pairs"})
    noise: float = field(default=0.0, metadata={
        "help": "demo suites: probability of flipping each label", "flag": "--noise"})
    test_fraction: float = field(default=0.2, metadata={
        "help": "held-out share for accuracy and SNR (unused with --test-data)", "flag": "--test-fraction"})
    seed: int = field(default=0, metadata={
        "help": "seed for the demo suite, the split, allocation draws, paraphrasing and folds", "flag": "--seed"})
    test_source: str | None = field(default=None, metadata={
        "help": "a separate held-out file whose pairs never train; with it every pair of --data trains",
        "flag": "--test-data"})
    strict: bool = field(default=False, metadata={
        "help": "stop at the first bad row of a data file instead of skipping it", "flag": "--strict"})

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
        if self.format != "auto" and self.format not in FORMATS:
            raise ValueError(f"format must be auto or one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.axis not in AXES:
            raise ValueError(f"axis must be one of {', '.join(AXES)}, got {self.axis!r}")
        if self.column_map is not None:
            check_column_map(self.column_map)
        if self.test_source is not None and not self.test_source.strip():
            raise ValueError("test data path is empty: give a file, or leave it out to split --data")
        if self.is_demo:  # these settings describe a file; silently ignoring them would mislead
            given = [name for name, value, default in (
                ("--format", self.format, "auto"), ("--axis", self.axis, "helpful"),
                ("--column-map", self.column_map, None), ("--test-data", self.test_source, None),
            ) if value != default]
            if given:
                raise ValueError(f"{', '.join(given)} applies to data files only; the demo suites take "
                                 "--pairs, --noise and --seed")

    @property
    def is_demo(self) -> bool:
        return self.source in DEMO_SOURCES

    @property
    def is_toy(self) -> bool:
        return self.source == "demo:toy"


@dataclass(frozen=True)
class RefineConfig:
    """The epoch loop: budget, stop rule, where allocation margins come from, review policy."""

    epochs: int = field(default=3, metadata={
        "help": "most refinement epochs a run takes (the CLI also runs this many now)", "flag": "--epochs"})
    budget_per_epoch: int = field(default=32, metadata={
        "help": "kept paraphrases per epoch (B_t, the paper's augmented samples); LM generations per unit are "
                "capped by --generations-per-unit and reported apart", "flag": "--budget"})
    total_budget: int | None = field(default=None, metadata={
        "help": "kept paraphrases over the whole run; unset: epochs × budget", "flag": "--total-budget"})
    cross_fit_folds: int = field(default=5, metadata={
        "help": "k ≥ 2: allocate on k-fold cross-fitted margins; 0: in-sample margins (the paper)",
        "flag": "--folds"})
    review_policy: str = field(default="auto", metadata={
        "help": "auto: filtered paraphrases train at once; gated: only accepted ones", "flag": "--review",
        "choices": REVIEW_POLICIES})
    ks_threshold: float = field(default=0.0, metadata={
        "help": "stop when the KS statistic between successive epochs' held-out margins is below this (0: never)",
        "flag": "--ks-threshold"})
    curvature_k: int = field(default=10, metadata={"help": "top eigenvalues recorded per epoch"})
    seed: int = field(default=0, metadata={
        "help": "seed for the demo suite, the split, allocation draws, paraphrasing and folds", "flag": "--seed"})
    feature_mode: str = field(default="prompt_response", metadata={
        "help": "prompt_response: φ from the joined text; response: y only", "flag": "--feature-mode",
        "choices": FEATURE_MODES})
    encoder: str = field(default=DEFAULT_ENCODER, metadata={
        "help": "sentence encoder: packaged:minilm or a path", "flag": "--encoder", "form": False})
    remote_deadline_s: float = field(default=DEFAULT_DEADLINE_S, metadata={
        "help": "seconds one Step may spend on requests to an OpenAI-compatible paraphraser, retries included; "
                "rows not back by then count as failures", "flag": "--remote-deadline", "form": False})
    max_failed_share: float = field(default=0.5, metadata={
        "help": "refuse to store an epoch when more than this share of its paraphrase requests failed (errors, "
                "not filters); a total failure is always refused", "flag": "--max-paraphrase-failures",
        "form": False})

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
        check_deadline(self.remote_deadline_s)
        if not 0.0 <= self.max_failed_share <= 1.0 or math.isnan(self.max_failed_share):
            raise ValueError(f"max_failed_share must be in [0, 1], got {self.max_failed_share}")

    @property
    def budget_total(self) -> int:
        return self.total_budget if self.total_budget is not None else self.epochs * self.budget_per_epoch


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    allocation: AllocationConfig = field(default_factory=AllocationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    reward: RewardModelConfig = field(default_factory=RewardModelConfig)  # linear head or fine-tuned transformer
    paraphrase: ParaphraseConfig = field(default_factory=ParaphraseConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def cross_fits(self) -> bool:
        """Whether allocation margins are cross-fitted: k ≥ 2 folds and a strategy that reads margins."""
        return self.refine.cross_fit_folds >= 2 and self.allocation.strategy != "none"

    def check_training_size(self, n_train: int) -> None:
        """Refuse, before anything is stored, data too small for the run's cross-fitting."""
        if n_train < 1:
            raise ValueError("no training pairs: the data has too few pairs to train on")
        folds = self.refine.cross_fit_folds
        if self.cross_fits and n_train < folds:
            raise ValueError(
                f"{folds}-fold cross-fitting needs at least {folds} training pairs, but there are {n_train}: "
                f"pass --folds 0 (in-sample margins), fewer folds (at least 2), or more pairs"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return _build(cls, data)


# settings that older versions stored and that no longer exist: dropped when a stored run is reopened,
# so a store written before an upgrade still opens (any other unknown key is still an error)
RETIRED_SETTINGS = {
    "ParaphraseConfig": frozenset({"timeout_s"}),  # timeout_s: now seconds_per_token
    "RewardModelConfig": frozenset({"epochs_per_step"}),  # now min_steps / max_passes
}

# settings added after runs were stored, with the value that reproduces how those runs behaved: a run
# stored without one keeps fitting as it did (fine-tuning: an 8-pair validation slice, float32 steps) and
# paraphrasing as it did (float32 weights: the default precision is now auto, int8 on a CPU)
ADDED_SETTINGS = {
    "RewardModelConfig": {"min_validation_pairs": 8, "cpu_bf16": False},
    "ParaphraseConfig": {"dtype": "float32"},
}


def _build(cls: type, data: Any) -> Any:
    """Rebuild a (nested) frozen dataclass from its asdict() form; unknown keys are an error."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} expects a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    retired = RETIRED_SETTINGS.get(cls.__name__, frozenset())
    data = ADDED_SETTINGS.get(cls.__name__, {}) | {k: v for k, v in data.items() if k not in retired}
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


# flags of the reward section that only the fine-tuned transformer reads
_REWARD_SHARED_FLAGS = ("--reward-model", "--seed")
_TOY_IGNORES = ("--paraphraser", "--candidates-per-unit", "--generations-per-unit", "--encoder", "--feature-mode",
                "--remote-deadline")
_NONE_IGNORES = ("--budget", "--total-budget", "--tau", "--tau-scale", "--margin-mode", "--paraphraser",
                 "--candidates-per-unit", "--generations-per-unit")


def settle_flags(config: RunConfig, given: Iterable[str], resolve_auto: bool = True,
                 cuda: bool | None = None) -> tuple[RunConfig, list[str]]:
    """Check, before anything is stored, that every flag the user gave applies; settle what will really run.

    ``given``: the flags typed (e.g. {"--tau", "--precision"}). A flag that cannot apply to the chosen setting
    is a ValueError naming it (a fine-tuning flag with the linear head, a text flag with the 2-D toy); one that
    applies but changes nothing (budget flags with strategy none) gives a note. Mixed precision needs a GPU:
    without one bf16/fp16 becomes "no" with a note, and (``resolve_auto``) "auto" is stored as what it
    resolves to here, so the stored config says what ran. Model names are checked here too
    (model/model_paths.py): a folder that lacks its config, weights or tokenizer is named with what it lacks.
    Returns the settled config and the notes to print.
    """
    given = set(given)
    notes: list[str] = []
    sections = {s.name: getattr(config, s.name) for s in dataclasses.fields(config)}
    if config.reward.kind == "linear":
        finetune_only = sorted(f for f in given if f in _flags_of(RewardModelConfig) and f not in _REWARD_SHARED_FLAGS)
        if finetune_only:
            raise ValueError(f"{', '.join(finetune_only)} applies to --reward-model finetune only; this run trains "
                             "the linear head (add --reward-model finetune, or drop the flag)")
    if config.data.is_toy:
        ignored = sorted(f for f in given if f in _TOY_IGNORES)
        if ignored:
            raise ValueError(f"{', '.join(ignored)} does not apply to the 2-D toy (its 'texts' are vectors, "
                             "perturbed in place of paraphrasing): drop it or use --data demo")
    if config.allocation.strategy == "none":
        ignored = sorted(f for f in given if f in _NONE_IGNORES)
        if ignored:
            notes.append(f"note: {', '.join(ignored)} changes nothing with --strategy none (no paraphrases)")
    if config.reward.kind == "finetune":
        cuda = _cuda_available() if cuda is None else cuda
        cuda = cuda and config.reward.device in (None, "cuda")
        precision = config.reward.precision
        if precision in ("bf16", "fp16") and not cuda:
            notes.append(f"note: --precision {precision} needs a CUDA GPU and this run has none: the stored config "
                         "says precision=no (on a CPU with AMX or AVX512-BF16, --cpu-bf16 runs the training "
                         "steps in bfloat16)")
            precision = "no"
        elif precision == "auto" and resolve_auto:
            precision = ("bf16" if _bf16_supported() else "fp16") if cuda else "no"
        sections["reward"] = dataclasses.replace(config.reward, precision=precision)
        check_model(config.reward.base, "--base", "classifier")
    if not config.data.is_toy:
        check_model(config.refine.encoder, "--encoder", "encoder")
        if config.allocation.strategy != "none" or "--paraphraser" in given:
            check_model(config.paraphrase.model, "--paraphraser", "causal")
    return dataclasses.replace(config, **sections), notes


def _flags_of(section: type) -> set[str]:
    return {f.metadata["flag"] for f in dataclasses.fields(section) if "flag" in f.metadata}


def _cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def _bf16_supported() -> bool:
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def with_overrides(config: RunConfig, **sections: dict[str, Any]) -> RunConfig:
    """A copy with some fields of some sections changed, e.g. allocation={"tau": 2.0}."""
    changes = {name: dataclasses.replace(getattr(config, name), **fields) for name, fields in sections.items()}
    return dataclasses.replace(config, **changes)
