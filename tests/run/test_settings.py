"""Settings come from the config dataclasses: flags, help, choices and defaults in one place."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

import pytest

from mars_core.augment.allocation import STRATEGIES, AllocationConfig
from mars_core.run.config import DataConfig, RefineConfig, RunConfig
from mars_core.run.settings import (
    add_config_flags,
    config_from_args,
    config_from_values,
    form_settings,
    settings,
)

# the flags the CLI has always had: they must keep working
LEGACY_FLAGS = ("--data", "--strategy", "--epochs", "--budget", "--tau", "--tau-scale", "--margin-mode", "--folds",
                "--review", "--seed", "--paraphraser", "--pairs", "--noise", "--format", "--axis")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    return parser.parse_args(argv)


def test_every_flag_reads_help_choices_and_default_from_its_field():
    specs = {s.flag: s for s in settings()}
    assert set(LEGACY_FLAGS) <= set(specs)
    for spec in specs.values():
        for i, (section, name) in enumerate(spec.targets):
            fld = {f.name: f for f in dataclasses.fields(type(getattr(RunConfig(), section)))}[name]
            assert fld.metadata["help"] and (i > 0 or spec.help == fld.metadata["help"]), "help of the first field"
            assert spec.default == getattr(getattr(RunConfig(), section), name)
    assert specs["--strategy"].choices == STRATEGIES
    assert specs["--strategy"].targets == (("allocation", "strategy"),)
    assert specs["--seed"].targets[:2] == (("data", "seed"), ("refine", "seed")), "one --seed seeds split and loop"
    help_text = _help_text()
    assert AllocationConfig.__dataclass_fields__["tau"].metadata["help"].split(":")[0] in help_text


def _help_text() -> str:
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    return " ".join(parser.format_help().split())


def test_flags_build_the_config_and_unset_flags_keep_the_base():
    args = _parse(["--data", "toy", "--strategy", "uniform", "--tau", "2.5", "--tau-scale", "std", "--seed", "7",
                   "--budget", "10", "--folds", "0", "--pairs", "40", "--no-strict"])
    config = config_from_args(args)
    assert config.data.source == "demo:toy" and config.data.n_pairs == 40
    assert config.allocation.strategy == "uniform" and config.allocation.tau == 2.5
    assert config.allocation.tau_scale == "std"
    assert config.data.seed == config.refine.seed == 7
    assert config.refine.budget_per_epoch == 10 and config.refine.cross_fit_folds == 0
    assert config.refine.epochs == RefineConfig().epochs, "a flag not given keeps the base value"
    base = dataclasses.replace(RunConfig(), refine=RefineConfig(epochs=9))
    assert config_from_args(_parse(["--tau", "3"]), base).refine.epochs == 9


def test_structured_values_are_parsed_and_bad_values_name_their_flag(capsys):
    config = config_from_args(_parse(["--data", "x.csv", "--column-map", "prompt=question, chosen=good"]))
    assert config.data.column_map == {"prompt": "question", "chosen": "good"}
    specs = {s.flag: s for s in settings()}
    assert specs["--column-map"].from_text("") is None and specs["--test-data"].from_text(" ") is None
    with pytest.raises(SystemExit):
        _parse(["--column-map", "prompt"])
    assert "--column-map" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse(["--strategy", "best"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--noise: label noise must be in"):
        config_from_args(_parse(["--noise", "0.7"]))


@dataclass(frozen=True)
class ExtraSection:
    kind: str = field(default="plain", metadata={"help": "a new kind", "flag": "--extra-kind",
                                                 "choices": ("plain", "fancy")})
    base: str | None = field(default=None, metadata={"help": "base model", "flag": "--extra-base"})
    steps: int = field(default=3, metadata={"help": "no flag: not a setting"})


@dataclass(frozen=True)
class Extended(RunConfig):
    extra: ExtraSection = field(default_factory=ExtraSection)


@dataclass(frozen=True)
class Clash:
    seed: str = field(default="a", metadata={"help": "h", "flag": "--seed"})


@dataclass(frozen=True)
class Clashing(RunConfig):
    clash: Clash = field(default_factory=Clash)


def test_a_new_section_and_field_are_picked_up_without_changes_here():
    specs = {s.flag: s for s in settings(Extended)}
    assert specs["--extra-kind"].choices == ("plain", "fancy") and specs["--extra-base"].optional
    assert not any(t == ("extra", "steps") for s in specs.values() for t in s.targets)
    parser = argparse.ArgumentParser()
    add_config_flags(parser, specs.values())
    args = parser.parse_args(["--extra-kind", "fancy", "--extra-base", "none"])
    config = config_from_values({"extra_kind": args.extra_kind, "extra_base": args.extra_base}, Extended(),
                                specs.values())
    assert config.extra == ExtraSection(kind="fancy", base=None)


def test_conflicting_declarations_of_one_flag_are_refused():
    with pytest.raises(TypeError, match="--seed"):
        settings(Clashing)


def test_form_settings_and_values_round_trip():
    specs = form_settings()
    assert "--data" not in {s.flag for s in specs}, "the form has its own data picker"
    assert {"--test-data", "--strategy", "--tau", "--folds"} <= {s.flag for s in specs}
    widgets = {s.flag: s.widget for s in specs}
    assert widgets["--strategy"] == "select" and widgets["--tau"] == "number" and widgets["--strict"] == "checkbox"
    config = RunConfig(data=DataConfig(source="x.jsonl", test_source="y.jsonl"))
    values = {s.dest: s.value_in(config) for s in specs}
    assert config_from_values(values, RunConfig(data=DataConfig(source="x.jsonl"))) == config
    with pytest.raises(ValueError, match="unknown settings: nope"):
        config_from_values({"nope": 1})
