"""Shared helpers for the data tests: fixture paths, small file writers, and the error-location check."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from mars_core.data.errors import DataError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data"
H, A = "\n\nHuman: ", "\n\nAssistant: "
GENERIC_ROW = {"prompt": "What is 2 + 2?", "chosen": "4.", "rejected": "5."}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def assert_located(err: DataError, file: str, row: int | None, field: str | None) -> None:
    """The error carries the location as attributes and names it in its message."""
    assert Path(err.file).name == file
    assert err.row == row
    assert err.field == field
    msg = str(err)
    assert file in msg
    if row is not None:
        assert f"row {row}" in msg
    if field is not None:
        assert f"field '{field}'" in msg
