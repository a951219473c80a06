"""The text suite's templates, read from text_templates.json: wording is data, so it can be edited without code.

Lists become tuples and the opener/closer keys "kind/politeness" become (kind, politeness) so the suite can hash
and index them as before; a malformed file fails on import with the field that is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

TEMPLATES_PATH = Path(__file__).with_name("text_templates.json")


def _frozen(value: Any) -> Any:
    """Lists to tuples and dicts to read-only mappings, all the way down."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value


def _by_kind(table: dict[str, list[str]], field: str) -> MappingProxyType:
    out = {}
    for key, texts in table.items():
        kind, _, polite = key.partition("/")
        if kind not in ("answer", "refusal") or polite not in ("0", "1"):
            raise ValueError(f"{field} key {key!r} must be 'answer/0|1' or 'refusal/0|1'")
        out[kind, int(polite)] = _frozen(texts)
    return MappingProxyType(out)


@dataclass(frozen=True)
class TextTemplates:
    """Every piece of text the suite composes responses from (see text_suite.py for how)."""

    openers: MappingProxyType  # (kind, polite) -> opener texts
    closers: MappingProxyType  # (kind, polite) -> closer texts
    refusal_thin: tuple[str, ...]  # "{act}" refusals without reasons
    refusal_detailed: tuple[str, ...]  # with "{why}" and "{alternative}"
    fact_thin: MappingProxyType  # correct (1/0) -> templates over {statement}, {short}
    fact_detailed: MappingProxyType  # same, with {why}
    harmful: tuple  # dicts: prompts, act, why, alternative, comply
    factual: tuple  # (prompts, right short, wrong short, right statement, wrong statement, right why, wrong why)
    howto: tuple  # (prompts, thin answers, detailed answers)
    tone: tuple  # (prompts, answers): only politeness varies


def load_text_templates(path: Path = TEMPLATES_PATH) -> TextTemplates:
    """Read and shape the template file; ValueError naming the file and field when it is malformed."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    try:
        factual_fields = ("right_short", "wrong_short", "right_statement", "wrong_statement", "right_why", "wrong_why")
        return TextTemplates(
            openers=_by_kind(raw["openers"], "openers"),
            closers=_by_kind(raw["closers"], "closers"),
            refusal_thin=_frozen(raw["refusal_thin"]),
            refusal_detailed=_frozen(raw["refusal_detailed"]),
            fact_thin=MappingProxyType({int(k): _frozen(v) for k, v in raw["fact_thin"].items()}),
            fact_detailed=MappingProxyType({int(k): _frozen(v) for k, v in raw["fact_detailed"].items()}),
            harmful=_frozen(raw["harmful"]),
            factual=tuple(
                (_frozen(f["prompts"]), *(f[name] for name in factual_fields)) for f in raw["factual"]
            ),
            howto=tuple((_frozen(h["prompts"]), _frozen(h["thin"]), _frozen(h["detailed"])) for h in raw["howto"]),
            tone=tuple((_frozen(t["prompts"]), _frozen(t["answers"])) for t in raw["tone"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: malformed text templates ({type(err).__name__}: {err})") from None


TEXT_TEMPLATES = load_text_templates()
