"""The two kinds of data problem: one that stops a whole file, and one confined to a row.

Both live below the readers, schemas and loader so each layer can raise them without importing
the layer above.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A problem in a data file, located by file, row (1-based, or None) and field (or None)."""

    def __init__(self, file: str | Path, row: int | None, field: str | None, reason: str):
        self.file = str(file)
        self.row = row
        self.field = field
        self.reason = reason
        super().__init__(locate(self.file, row, field) + ": " + reason)


class RowError(Exception):
    """A problem confined to one row: skipped (lenient load) or raised as DataError (strict load)."""

    def __init__(self, field: str | None, reason: str):
        super().__init__(reason)
        self.field = field
        self.reason = reason


def locate(file: str, row: int | None, field: str | None) -> str:
    """'name.jsonl row 3, field 'chosen'': the file's name, then whatever of row and field is known."""
    where = Path(file).name or file
    if row is not None:
        where += f" row {row}"
    if field is not None:
        where += ("," if row is not None else "") + f" field '{field}'"
    return where


def describe_type(value: Any) -> str:
    """How an error names a value that has the wrong type ('a number (42)', 'a list', 'null')."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "text"
    return type(value).__name__
