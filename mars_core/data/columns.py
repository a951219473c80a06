"""A file's column names made ours: a user's column map (parsed from text or given as a dict) and
dotted names ('info.post') folded back into objects."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mars_core.data.errors import DataError
from mars_core.data.readers import Record
from mars_core.data.schemas import FIELDS

COLUMN_MAP_EXAMPLE = "prompt=question,chosen=good,rejected=bad"


def parse_column_map(text: str) -> dict[str, str]:
    """'prompt=question,chosen=good' -> {'prompt': 'question', 'chosen': 'good'}: our field = the file's column.

    ValueError, quoting the entry at fault, for an empty map or entry, a missing '=', a field we do
    not read, a field given twice, or two fields sent to one column. Column names cannot hold ','.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"column map is empty; expected OUR_FIELD=FILE_COLUMN pairs, e.g. '{COLUMN_MAP_EXAMPLE}'"
        )
    mapping: dict[str, str] = {}
    for piece in text.split(","):
        entry = piece.strip()
        if not entry:
            raise ValueError(
                f"column map {text!r} has an empty entry (two commas in a row, or one at an end)"
            )
        ours, sep, theirs = (part.strip() for part in entry.partition("="))
        if not sep:
            raise ValueError(
                f"column map entry {entry!r} has no '='; write OUR_FIELD=FILE_COLUMN, e.g. 'prompt=question'"
            )
        if not ours or not theirs:
            side = "our field (before '=')" if not ours else "the file's column (after '=')"
            raise ValueError(f"column map entry {entry!r} is missing {side}")
        if ours in mapping:
            raise ValueError(f"column map names '{ours}' twice ({ours}={mapping[ours]} and {entry})")
        mapping[ours] = theirs
    check_column_map(mapping)
    return mapping


def check_column_map(column_map: Mapping[str, str]) -> None:
    """ValueError unless every key is a field we read and every value a distinct column name."""
    for ours, theirs in column_map.items():
        if ours not in FIELDS:
            raise ValueError(
                f"column map key '{ours}' is not a field we read; use one of " + ", ".join(sorted(FIELDS))
            )
        if not isinstance(theirs, str) or not theirs:
            raise ValueError(f"column map value for '{ours}' must be a column name, got {theirs!r}")
    seen: dict[str, str] = {}
    for ours, theirs in column_map.items():
        if theirs in seen:
            raise ValueError(f"column map sends both '{seen[theirs]}' and '{ours}' to the column '{theirs}'")
        seen[theirs] = ours


def apply_column_map(
    path: Path, columns: list[str], records: list[Record], column_map: Mapping[str, str] | None
) -> tuple[list[str], dict[str, str]]:
    """Rename the file's columns to ours; returns the new columns and our-name -> file-name."""
    if not column_map:
        return columns, {}
    try:
        check_column_map(column_map)
    except ValueError as exc:
        raise DataError(path, None, None, str(exc)) from None
    rename = {theirs: ours for ours, theirs in column_map.items()}
    shadowed = set(column_map) - set(rename)  # our names a mapping replaces
    for rec in records:
        if rec.values is not None:
            rec.values = {
                rename.get(k, k): v for k, v in rec.values.items() if not (k in shadowed and k not in rename)
            }
            if rec.problem is not None and rec.problem.field in rename:
                rec.problem.field = rename[rec.problem.field]
    new_columns = [rename.get(c, c) for c in columns if not (c in shadowed and c not in rename)]
    return new_columns, dict(column_map)


def nest_dotted(columns: list[str], records: list[Record]) -> list[str]:
    """Flattened exports write 'info.post'; fold such columns back into an 'info' object."""
    parents = {c.split(".", 1)[0] for c in columns if "." in c} - set(columns)
    if not parents:
        return columns
    for rec in records:
        if rec.values is None:
            continue
        for key in [k for k in rec.values if "." in k and k.split(".", 1)[0] in parents]:
            parent, child = key.split(".", 1)
            rec.values.setdefault(parent, {})[child] = rec.values.pop(key)
    out: list[str] = []
    for c in columns:
        name = c.split(".", 1)[0] if c.split(".", 1)[0] in parents else c
        if name not in out:
            out.append(name)
    return out
