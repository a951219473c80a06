"""Load preference pairs from a file, with a report of every row that was not loaded and why.

Every row a file holds is loaded, skipped with its reason (row, field, why), or dropped as an exact
duplicate of an earlier row; nothing disappears silently. Reading lives in readers, the dataset
shapes in schemas, column renaming in columns. The train/test split (by prompt) is here too.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from mars_core.data.columns import apply_column_map, nest_dotted
from mars_core.data.errors import DataError, RowError, describe_type
from mars_core.data.pairs import PreferencePair
from mars_core.data.readers import read_records, split_name
from mars_core.data.schemas import AXES, FORMATS, SCHEMAS, Triple, detect_format, required_columns

SHOWN_PROBLEMS = 3  # reasons a summary or an error spells out before "and N more"


class SkippedRow(NamedTuple):
    row: int
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = f"row {self.row}" + (f", field '{self.field}'" if self.field is not None else "")
        return f"{where}: {self.reason}"


class DuplicateRow(NamedTuple):
    row: int
    first_row: int  # the earlier row with the same prompt, chosen and rejected (the one kept)

    def __str__(self) -> str:
        return f"row {self.row} repeats row {self.first_row}"


@dataclass
class LoadReport:
    """What happened to every row of one file: loaded, skipped (with the reason), a duplicate, or cut."""

    path: str
    format: str
    rows_read: int = 0
    pairs_loaded: int = 0
    skipped: list[SkippedRow] = field(default_factory=list)
    duplicates: list[DuplicateRow] = field(default_factory=list)  # exact repeats, dropped
    truncated: int = 0  # prompts cut from the left to fit max_chars
    long_responses: int = 0  # responses longer than max_chars on their own (kept whole)
    max_chars: int | None = None

    def skip_lines(self, limit: int | None = SHOWN_PROBLEMS) -> list[str]:
        """'row 3, field 'chosen': empty text' for the first `limit` skipped rows (all when None)."""
        return [str(s) for s in self.skipped[:limit]]

    def duplicate_lines(self, limit: int | None = SHOWN_PROBLEMS) -> list[str]:
        """'row 9 repeats row 2' for the first `limit` dropped duplicates (all when None)."""
        return [str(d) for d in self.duplicates[:limit]]

    def summary(self) -> str:
        name = Path(self.path).name
        text = (
            f"{name} ({self.format}): {self.rows_read} rows read, {self.pairs_loaded} pairs loaded, "
            f"{len(self.skipped)} skipped, {len(self.duplicates)} exact duplicates dropped"
        )
        if self.max_chars is not None:
            text += f", {self.truncated} prompts cut from the left to fit {self.max_chars} characters"
            if self.long_responses:
                text += f", {self.long_responses} responses longer than that kept whole"
        text += "."
        for label, lines, total in (
            ("Skipped", self.skip_lines(), len(self.skipped)),
            ("Duplicates", self.duplicate_lines(), len(self.duplicates)),
        ):
            if lines:
                more = total - len(lines)
                text += f" {label}: " + "; ".join(lines) + (f"; and {more} more." if more > 0 else ".")
        return text

    def write_problems(self, path: str | Path) -> Path:
        """Every skipped and duplicate row as CSV (kind, row, field, reason), for the full list."""
        path = Path(path)
        with path.open("w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["kind", "row", "field", "reason"])
            out.writerows(["skipped", s.row, s.field or "", s.reason] for s in self.skipped)
            out.writerows(["duplicate", d.row, "", f"repeats row {d.first_row}"] for d in self.duplicates)
        return path


def load_pairs(
    path: str | Path,
    format: str = "auto",
    column_map: Mapping[str, str] | None = None,
    axis: str = "helpful",
    max_chars: int | None = None,
    strict: bool = False,
) -> tuple[list[PreferencePair], LoadReport]:
    """Read a preference file into pairs, and a report of every row that was skipped, repeated or cut.

    format: "auto" or one of FORMATS. column_map: our field name -> the file's column name
    (parse_column_map reads one from text). axis: which PKU-SafeRLHF label decides chosen
    ("helpful": better_response_id, "harmless": safer_response_id). max_chars: cap on prompt +
    longest response; the prompt loses its beginning (the end of a dialogue, next to the response,
    survives) but keeps at least a quarter of max_chars; responses are never cut. strict: raise a
    DataError at the first bad row (row, field, why) instead of skipping it. Exact duplicate rows
    (same prompt, chosen and rejected) are dropped and listed in the report either way.
    """
    path = Path(path)
    if format != "auto" and format not in FORMATS:
        raise ValueError(f"format must be 'auto' or one of {', '.join(FORMATS)}; got {format!r}")
    if axis not in AXES:
        raise ValueError(f"axis must be one of {', '.join(AXES)}; got {axis!r}")
    if max_chars is not None and (
        isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1
    ):
        raise ValueError(
            f"max_chars must be a positive whole number of characters or None; got {max_chars!r}"
        )

    columns, records = read_records(path)
    file_columns = list(columns)
    columns = nest_dotted(columns, records)
    columns, mapped = apply_column_map(path, columns, records, column_map)
    fmt = detect_format(path, columns, file_columns, records) if format == "auto" else format
    for name in required_columns(fmt, axis):
        if name not in columns:
            shown = f"'{mapped[name]}' (for '{name}')" if name in mapped else f"'{name}'"
            raise DataError(
                path,
                None,
                mapped.get(name, name),
                f"missing column {shown} needed by format '{fmt}'; columns present: "
                + (", ".join(file_columns) or "(none)"),
            )

    report = LoadReport(path=str(path), format=fmt, max_chars=max_chars)
    stem = split_name(path)[0]
    pairs: list[PreferencePair] = []
    first_seen: dict[tuple[str, str, str], int] = {}
    convert = SCHEMAS[fmt].convert
    for rec in records:
        report.rows_read += 1
        try:
            if rec.problem is not None:
                raise rec.problem
            triple = convert(rec.values, axis)
            _check_distinct(triple)
        except RowError as exc:
            file_field = mapped.get(exc.field, exc.field) if exc.field is not None else None
            if strict:
                raise DataError(path, rec.row, file_field, exc.reason) from None
            report.skipped.append(SkippedRow(rec.row, file_field, exc.reason))
            continue
        key = (triple.prompt, triple.chosen, triple.rejected)
        if key in first_seen:
            report.duplicates.append(DuplicateRow(rec.row, first_seen[key]))
            continue
        first_seen[key] = rec.row
        prompt = triple.prompt
        if max_chars is not None:
            prompt, cut, long = fit_prompt(prompt, (triple.chosen, triple.rejected), max_chars)
            report.truncated += cut
            report.long_responses += long
        pairs.append(
            PreferencePair(
                id=f"{stem}:{rec.row}",
                prompt=prompt,
                chosen=triple.chosen,
                rejected=triple.rejected,
                source=fmt,
            )
        )
    report.pairs_loaded = len(pairs)
    if not pairs:
        raise DataError(
            path,
            None,
            None,
            f"no usable rows ({report.rows_read} read, all skipped); first problems: "
            + "; ".join(report.skip_lines()),
        )
    return pairs, report


def _check_distinct(triple: Triple) -> None:
    if triple.chosen == triple.rejected:
        raise RowError(
            triple.rejected_field, f"same text as '{triple.chosen_field}' (chosen and rejected must differ)"
        )


def fit_prompt(prompt: str, responses: Sequence[str], max_chars: int) -> tuple[str, int, int]:
    """Cut the prompt from the left so prompt + longest response fits max_chars.

    Returns (prompt, 1 if it was cut else 0, number of responses longer than max_chars alone).
    The prompt keeps at least max(max_chars // 4, 1) characters so a pair never loses all its context.
    """
    longest = max(len(r) for r in responses)
    budget = max(max_chars - longest, max_chars // 4, 1)
    long = sum(len(r) > max_chars for r in responses)
    if len(prompt) <= budget:
        return prompt, 0, long
    return prompt[len(prompt) - budget :], 1, long


# ---------------------------------------------------------------------------------------------
# Train/test split, by prompt
# ---------------------------------------------------------------------------------------------


def train_test_split(
    pairs: Sequence[PreferencePair], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Seeded split in which no prompt, and no original with its synthetic descendants, is on both sides.

    Held-out accuracy measures generalisation to new prompts only if a test prompt was never
    trained on, so pairs are split in groups: every pair of one prompt, joined with every pair
    built from any of them. Groups are shuffled by a seeded permutation of their sorted ids (the
    split does not depend on input order) and taken while they fit round(n * test_fraction) pairs,
    then one more if that lands closer to it; so the test side holds exactly that many pairs when
    every group is one pair, and at least one and at most n - 1 when there are two or more groups.
    Each side keeps input order.
    """
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, int | float)
        or not (0.0 < test_fraction < 1.0)
    ):
        raise ValueError(f"test_fraction must be strictly between 0 and 1; got {test_fraction!r}")
    pairs = list(pairs)
    ids = [p.id for p in pairs]
    if len(set(ids)) != len(ids):
        dup = next(i for i, count in Counter(ids).items() if count > 1)
        raise ValueError(f"pair ids must be unique to split; '{dup}' appears more than once")
    groups = _split_groups(pairs)
    n = len(pairs)
    if len(groups) < 2:
        return pairs, []
    target = min(max(round(n * test_fraction), 1), n - 1)
    order = [groups[k] for k in np.random.default_rng(seed).permutation(len(groups))]
    test_idx: list[int] = []
    rest: list[list[int]] = []
    for members in order:
        if len(test_idx) + len(members) <= target:
            test_idx.extend(members)
        else:
            rest.append(members)
    for members in rest:  # one more group when that lands closer to the target
        size = len(test_idx) + len(members)
        if abs(size - target) < abs(len(test_idx) - target) and size <= n - 1:
            test_idx.extend(members)
            break
    if not test_idx:  # every group is larger than the target: the smallest one
        test_idx = min(order, key=len)
    chosen = set(test_idx)
    train = [p for i, p in enumerate(pairs) if i not in chosen]
    test = [p for i, p in enumerate(pairs) if i in chosen]
    return train, test


def _split_groups(pairs: Sequence[PreferencePair]) -> list[list[int]]:
    """Indices of pairs that must stay together (same prompt, or one family), sorted by smallest id."""
    parent = list(range(len(pairs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, str], int] = {}
    for i, p in enumerate(pairs):
        for key in (("prompt", p.prompt.strip()), ("family", p.parent_id or p.id)):
            if key in first:
                parent[root(i)] = root(first[key])
            else:
                first[key] = i
    groups: dict[int, list[int]] = {}
    for i in range(len(pairs)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: min(pairs[i].id for i in g))


@dataclass(frozen=True)
class SplitReport:
    """How a split came out, for the run's description and the CLI."""

    train_pairs: int
    test_pairs: int
    train_prompts: int
    test_prompts: int
    shared_prompts: int  # prompts with pairs on both sides (0 after train_test_split)

    def summary(self) -> str:
        total = self.train_pairs + self.test_pairs
        share = f" ({self.test_pairs / total:.1%} of pairs)" if total else ""
        shared = (
            "no prompt on both sides"
            if not self.shared_prompts
            else f"{self.shared_prompts} prompts on both sides"
        )
        return (
            f"split by prompt: {self.train_pairs} train pairs ({self.train_prompts} prompts), "
            f"{self.test_pairs} test pairs{share} ({self.test_prompts} prompts); {shared}."
        )


def split_report(train: Sequence[PreferencePair], test: Sequence[PreferencePair]) -> SplitReport:
    """Count pairs and distinct prompts on each side, and the prompts both sides share."""
    train_prompts = {p.prompt.strip() for p in train}
    test_prompts = {p.prompt.strip() for p in test}
    return SplitReport(
        len(train), len(test), len(train_prompts), len(test_prompts), len(train_prompts & test_prompts)
    )


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

_PAIR_FIELDS = [f.name for f in dataclasses.fields(PreferencePair)]


def pairs_to_frame(pairs: Sequence[PreferencePair]) -> pd.DataFrame:
    """One row per pair, one column per PreferencePair field (for tables in the UI)."""
    return pd.DataFrame([dataclasses.asdict(p) for p in pairs], columns=_PAIR_FIELDS)


def pairs_from_frame(df: pd.DataFrame) -> list[PreferencePair]:
    """Inverse of pairs_to_frame; missing optional columns take the PreferencePair defaults."""
    missing = [c for c in ("id", "prompt", "chosen", "rejected") if c not in df.columns]
    if missing:
        raise DataError(
            "<table>", None, missing[0], f"missing column; columns present: {', '.join(map(str, df.columns))}"
        )
    defaults = {f.name: f.default for f in dataclasses.fields(PreferencePair)}
    casts: dict[str, Callable[[Any], Any]] = {
        "epoch_added": int,
        "gold_margin": float,
        "chosen_paraphrase_id": int,
        "rejected_paraphrase_id": int,
        "parent_id": str,
        "source": str,
        "id": str,
    }
    out = []
    for i, row in enumerate(df.to_dict("records"), start=1):
        kwargs = {}
        for name in _PAIR_FIELDS:
            if name not in row:
                continue
            value = row[name]
            if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
                if name in ("id", "prompt", "chosen", "rejected"):
                    raise DataError("<table>", i, name, "missing value")
                value = defaults[name]
            elif name in ("prompt", "chosen", "rejected") and not isinstance(value, str):
                raise DataError("<table>", i, name, f"expected text, got {describe_type(value)}")
            elif name in casts:
                value = casts[name](value)
            kwargs[name] = value
        out.append(PreferencePair(**kwargs))
    return out
