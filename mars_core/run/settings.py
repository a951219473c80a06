"""One source for a run's settings: the config dataclasses' field metadata becomes CLI flags and form fields.

A field becomes a setting when its metadata names a ``"flag"``; help text, choices and the
default come from the same field, so the CLI, the New-run form and the stored config cannot
drift apart. A new config section (a field of RunConfig whose type is a dataclass) or a new
flagged field is picked up with no change here. Two fields may share one flag (``--seed`` seeds
both the data split and the refinement loop); such a flag sets both.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mars_core.run.config import RunConfig

_PLAIN = (bool, int, float, str)


@dataclass(frozen=True)
class Setting:
    """One user-facing setting: a CLI flag and a form field, writing one or more config fields."""

    flag: str  # "--tau"
    targets: tuple[tuple[str, str], ...]  # (section, field) pairs it sets, e.g. (("allocation", "tau"),)
    kind: type  # bool, int, float or str: the widget and the parser of a plain value
    optional: bool  # None is a valid value (the field's type allows it)
    default: Any
    choices: tuple[Any, ...] | None
    help: str
    form: bool  # shown in the New-run form (False: CLI only)
    parse: Callable[[str], Any] | None = None  # text -> value, for values that are not a plain number or word

    @property
    def dest(self) -> str:
        """The argparse attribute and the form's key: "--tau-scale" -> "tau_scale"."""
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def section(self) -> str:
        return self.targets[0][0]

    @property
    def name(self) -> str:
        return self.targets[0][1]

    @property
    def widget(self) -> str:
        """What a form shows: select (choices), checkbox (bool), number (int/float) or text."""
        if self.choices:
            return "select"
        if self.kind is bool:
            return "checkbox"
        if self.kind in (int, float) and self.parse is None:
            return "number"
        return "text"

    def from_text(self, text: str) -> Any:
        """A value typed by a user (CLI argument or form text) as the config field wants it."""
        if self.optional and text.strip().lower() in ("", "none"):  # a form's empty box: unset
            return None
        if self.parse is not None:
            return self.parse(text)
        if self.kind is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"{self.flag} takes yes or no, got {text!r}")
            return lowered in ("true", "1", "yes")
        try:
            value = self.kind(text)
        except ValueError:
            raise ValueError(f"{self.flag} takes {'a whole number' if self.kind is int else 'a number'}, "
                             f"got {text!r}") from None
        return value

    def value_in(self, config: RunConfig) -> Any:
        """This setting's current value in a config (the first target's)."""
        section, name = self.targets[0]
        return getattr(getattr(config, section), name)


def settings(config_type: type = RunConfig) -> list[Setting]:
    """Every flagged field of every section of ``config_type``, one Setting per flag, in declaration order."""
    by_flag: dict[str, Setting] = {}
    hints = typing.get_type_hints(config_type)
    for section in dataclasses.fields(config_type):
        section_type = hints[section.name]
        if not dataclasses.is_dataclass(section_type):
            continue
        field_hints = typing.get_type_hints(section_type)
        for fld in dataclasses.fields(section_type):
            meta = fld.metadata
            if "flag" not in meta:
                continue
            kind, optional, literal_choices = _describe(field_hints[fld.name], f"{section.name}.{fld.name}",
                                                         "parse" in meta)
            spec = Setting(
                flag=meta["flag"], targets=((section.name, fld.name),), kind=kind, optional=optional,
                default=_default(fld), choices=tuple(meta["choices"]) if "choices" in meta else literal_choices,
                help=meta.get("help", ""), form=bool(meta.get("form", True)), parse=meta.get("parse"),
            )
            if not spec.flag.startswith("--"):
                raise TypeError(f"{section.name}.{fld.name}: flag {spec.flag!r} must start with --")
            first = by_flag.get(spec.flag)
            if first is None:
                by_flag[spec.flag] = spec
            elif first.kind is spec.kind and first.choices == spec.choices:
                by_flag[spec.flag] = dataclasses.replace(first, targets=first.targets + spec.targets)
            else:
                raise TypeError(f"flag {spec.flag} is declared by {first.section}.{first.name} and by "
                                f"{section.name}.{fld.name} with different types or choices")
    return list(by_flag.values())


def form_settings(config_type: type = RunConfig) -> list[Setting]:
    """The settings the New-run form shows, grouped by their config section in declaration order."""
    return [s for s in settings(config_type) if s.form]


def add_config_flags(parser: argparse.ArgumentParser, specs: Iterable[Setting] | None = None) -> None:
    """Add one flag per setting. Flags not given are absent from the namespace (the base config decides)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for spec in settings() if specs is None else specs:
        if spec.section not in groups:  # --help lists the flags by config section
            groups[spec.section] = parser.add_argument_group(f"{spec.section} settings")
        group = groups[spec.section]
        shown = "unset" if spec.default is None else spec.default
        text = f"{spec.help} (default: {shown})".replace("%", "%%")  # argparse %-formats help text
        if spec.kind is bool and spec.parse is None:
            group.add_argument(spec.flag, dest=spec.dest, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=text)
            continue
        group.add_argument(
            spec.flag, dest=spec.dest, default=argparse.SUPPRESS, help=text,
            type=_argparse_type(spec), choices=spec.choices,
            metavar=None if spec.choices else spec.dest.upper(),
        )


def given_flags(args: argparse.Namespace, specs: Iterable[Setting] | None = None) -> list[Setting]:
    """The settings the user actually passed on the command line."""
    return [s for s in (settings() if specs is None else specs) if hasattr(args, s.dest)]


def config_from_args(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """``base`` (default RunConfig()) with every flag the user passed applied."""
    specs = settings()
    return config_from_values({s.dest: getattr(args, s.dest) for s in given_flags(args, specs)}, base, specs)


def config_from_values(values: Mapping[str, Any], base: RunConfig | None = None,
                       specs: Iterable[Setting] | None = None) -> RunConfig:
    """``base`` with settings changed, keyed by Setting.dest (what a form collects); values are typed already.

    An invalid value raises ValueError naming the flag, with the config's own explanation.
    """
    base = base if base is not None else RunConfig()
    by_dest = {s.dest: s for s in (settings() if specs is None else specs)}
    unknown = set(values) - set(by_dest)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    try:
        return _apply(base, [(by_dest[d], v) for d, v in values.items()])
    except (ValueError, TypeError) as exc:
        culprit = next((spec for d, v in values.items() if _fails(base, spec := by_dest[d], v)), None)
        if culprit is None:
            raise ValueError(str(exc)) from None
        raise ValueError(f"{culprit.flag}: {exc}") from None


def _apply(base: RunConfig, changes: list[tuple[Setting, Any]]) -> RunConfig:
    per_section: dict[str, dict[str, Any]] = {}
    for spec, value in changes:
        for section, name in spec.targets:
            per_section.setdefault(section, {})[name] = value
    replaced = {section: dataclasses.replace(getattr(base, section), **fields)
                for section, fields in per_section.items()}
    return dataclasses.replace(base, **replaced)


def _fails(base: RunConfig, spec: Setting, value: Any) -> bool:
    try:
        _apply(base, [(spec, value)])
    except (ValueError, TypeError):
        return True
    return False


def _argparse_type(spec: Setting) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return spec.from_text(text)
        except ValueError as exc:  # argparse shows this message next to the flag
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = spec.kind.__name__
    return convert


def _default(fld: dataclasses.Field) -> Any:
    if fld.default is not dataclasses.MISSING:
        return fld.default
    if fld.default_factory is not dataclasses.MISSING:
        return fld.default_factory()
    return None


def _describe(hint: Any, where: str, parse: bool) -> tuple[type, bool, tuple[Any, ...] | None]:
    """(plain kind, None allowed, Literal choices) of a field's type hint."""
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else str
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        return type(choices[0]), optional, tuple(choices)
    if hint in _PLAIN:
        return hint, optional, None
    if not parse:
        raise TypeError(f"{where} is a {hint} field: its flag needs a \"parse\" (text -> value) in the metadata")
    return str, optional, None  # a structured value (e.g. a column map): typed as text, read by "parse"

