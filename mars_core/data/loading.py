"""Load preference pairs from the dataset shapes people bring, with errors that say where and why.

Every row a file holds is either loaded or reported as skipped (row, field, reason); nothing is
dropped silently. Rows are numbered from 1: the line number for JSON lines, the record number
(header not counted) for CSV, the element number for a JSON array, the table row for Parquet.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from mars_core.data.pairs import PreferencePair

FORMATS = ("generic", "hh-rlhf", "pku-saferlhf", "ultrafeedback", "shp", "summarize")
AXES = ("helpful", "harmless")
EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet")
HH_ASSISTANT = "\n\nAssistant:"
HH_HUMAN = "\n\nHuman:"
_BOM = b"\xef\xbb\xbf"
_MAX_REASONS_SHOWN = 3
_SURROGATE = re.compile("[\udc80-\udcff]")


class DataError(ValueError):
    """A problem in a data file, located by file, row (1-based, or None) and field (or None)."""

    def __init__(self, file: str | Path, row: int | None, field: str | None, reason: str):
        self.file = str(file)
        self.row = row
        self.field = field
        self.reason = reason
        super().__init__(_locate(self.file, row, field) + ": " + reason)


def _locate(file: str, row: int | None, field: str | None) -> str:
    where = Path(file).name or file
    if row is not None:
        where += f" row {row}"
    if field is not None:
        where += ("," if row is not None else "") + f" field '{field}'"
    return where


class SkippedRow(NamedTuple):
    row: int
    field: str | None
    reason: str


@dataclass
class LoadReport:
    """What happened to every row of one file: loaded, skipped (with the reason) or truncated."""

    path: str
    format: str
    rows_read: int = 0
    pairs_loaded: int = 0
    skipped: list[SkippedRow] = field(default_factory=list)
    truncated: int = 0  # prompts cut from the left to fit max_chars
    long_responses: int = 0  # responses longer than max_chars on their own (kept whole)
    max_chars: int | None = None

    def summary(self) -> str:
        name = Path(self.path).name
        text = (
            f"{name} ({self.format}): {self.rows_read} rows read, {self.pairs_loaded} pairs loaded, "
            f"{len(self.skipped)} skipped"
        )
        if self.max_chars is not None:
            text += f", {self.truncated} prompts cut from the left to fit {self.max_chars} characters"
            if self.long_responses:
                text += f", {self.long_responses} responses longer than that kept whole"
        text += "."
        if self.skipped:
            shown = "; ".join(_skip_text(s) for s in self.skipped[:_MAX_REASONS_SHOWN])
            more = len(self.skipped) - _MAX_REASONS_SHOWN
            text += f" Skipped: {shown}" + (f"; and {more} more." if more > 0 else ".")
        return text


def _skip_text(s: SkippedRow) -> str:
    where = f"row {s.row}" + (f", field '{s.field}'" if s.field is not None else "")
    return f"{where}: {s.reason}"


class _RowError(Exception):
    """A problem confined to one row: skipped (strict=False) or raised as DataError (strict=True)."""

    def __init__(self, field: str | None, reason: str):
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass
class _Record:
    row: int
    values: dict[str, Any] | None  # None when the row could not be parsed at all
    problem: _RowError | None = None  # a parse or encoding problem found while reading


# ---------------------------------------------------------------------------------------------
# Reading files into records
# ---------------------------------------------------------------------------------------------


def _read_records(path: Path) -> tuple[list[str], list[_Record]]:
    """Columns (in first-seen order) and every record of a file, problems attached, not raised."""
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    if path.is_dir():
        raise DataError(path, None, None, "is a folder, not a data file")
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise DataError(
            path, None, None, f"unsupported file type '{ext}'; use one of {', '.join(EXTENSIONS)}"
        )
    if ext == ".parquet":
        return _read_parquet(path)
    data = path.read_bytes()
    offset = len(_BOM) if data.startswith(_BOM) else 0
    if not data[offset:].strip():
        raise DataError(path, None, None, "empty file")
    if ext == ".csv":
        return _read_csv(path, data, offset)
    if data[offset:].lstrip()[:1] == b"[":
        return _read_json_array(path, data, offset)
    return _read_json_lines(path, data, offset)


def _read_parquet(path: Path) -> tuple[list[str], list[_Record]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise DataError(path, None, None, f"not a readable Parquet file ({exc})") from exc
    if table.num_rows == 0:
        raise DataError(path, None, None, "empty file (no rows)")
    rows = table.to_pylist()
    return list(table.column_names), [_Record(i + 1, r) for i, r in enumerate(rows)]


def _read_json_lines(path: Path, data: bytes, start: int) -> tuple[list[str], list[_Record]]:
    records: list[_Record] = []
    columns: dict[str, None] = {}
    pos = start
    for line_no, line in enumerate(data[start:].split(b"\n"), start=1):
        line_start, pos = pos, pos + len(line) + 1
        if not line.strip():
            continue
        bad_offset = None
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad_offset = line_start + exc.start
            text = line.decode("utf-8", errors="surrogateescape")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            if line_no == 1 and _is_single_object(data[start:]):
                raise DataError(
                    path, None, None, "holds one JSON object; expected JSON lines or an array of objects"
                ) from exc
            reason = f"malformed JSON ({exc.msg} at column {exc.colno})"
            if bad_offset is not None:
                reason = f"invalid UTF-8 byte 0x{data[bad_offset]:02x} at byte offset {bad_offset}"
            records.append(_Record(line_no, None, _RowError(None, reason)))
            continue
        if not isinstance(value, dict):
            problem = _RowError(None, f"expected a JSON object, got {_type_name(value)}")
            records.append(_Record(line_no, None, problem))
            continue
        columns.update(dict.fromkeys(value))
        record = _Record(line_no, value)
        if bad_offset is not None:
            bad_field = next((k for k, v in value.items() if _has_surrogate(v)), None)
            reason = f"invalid UTF-8 byte 0x{data[bad_offset]:02x} at byte offset {bad_offset}"
            record.problem = _RowError(bad_field, reason)
        records.append(record)
    return list(columns), records


def _is_single_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data.decode("utf-8", errors="replace")), dict)
    except json.JSONDecodeError:
        return False


def _read_json_array(path: Path, data: bytes, start: int) -> tuple[list[str], list[_Record]]:
    text = data[start:].decode("utf-8", errors="surrogateescape")
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            path, None, None, f"malformed JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    if not values:
        raise DataError(path, None, None, "empty file (the JSON array has no elements)")
    bad = _BadBytes(data, start)
    records: list[_Record] = []
    columns: dict[str, None] = {}
    for i, value in enumerate(values, start=1):
        if not isinstance(value, dict):
            records.append(
                _Record(i, None, _RowError(None, f"expected a JSON object, got {_type_name(value)}"))
            )
            bad.skip(value)
            continue
        columns.update(dict.fromkeys(value))
        records.append(_Record(i, value, bad.check(value.items())))
    return list(columns), records


def _read_csv(path: Path, data: bytes, start: int) -> tuple[list[str], list[_Record]]:
    text = data[start:].decode("utf-8", errors="surrogateescape")
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # long dialogues exceed the 128 KiB default
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader)
        except csv.Error as exc:
            raise DataError(path, None, None, f"unreadable CSV header ({exc})") from exc
        bad = _BadBytes(data, start)
        bad.skip(header)
        records: list[_Record] = []
        row = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                records.append(_Record(row + 1, None, _RowError(None, f"unreadable CSV ({exc})")))
                break
            if not cells or not any(c.strip() for c in cells):
                continue
            row += 1
            if len(cells) != len(header):
                bad.skip(cells)
                reason = f"has {len(cells)} fields but the header has {len(header)}"
                records.append(_Record(row, None, _RowError(None, reason)))
                continue
            values = dict(zip(header, cells, strict=True))
            records.append(_Record(row, values, bad.check(values.items())))
    finally:
        csv.field_size_limit(old_limit)
    if not records:
        raise DataError(path, None, None, "empty file (a header but no data rows)")
    return header, records


class _BadBytes:
    """Maps the n-th undecodable byte (a lone surrogate after surrogateescape) back to its file offset.

    Text is visited in file order, so the n-th surrogate met is the n-th invalid byte.
    """

    def __init__(self, data: bytes, start: int):
        self.data = data
        self.offsets = _invalid_utf8_offsets(data, start)
        self.seen = 0

    def skip(self, value: Any) -> None:
        self.seen += _count_surrogates(value)

    def check(self, items: Any) -> _RowError | None:
        problem = None
        for key, value in items:
            self.skip(key)
            n = _count_surrogates(value)
            if n and problem is None:
                if self.seen < len(self.offsets):
                    off = self.offsets[self.seen]
                    reason = f"invalid UTF-8 byte 0x{self.data[off]:02x} at byte offset {off}"
                else:
                    reason = "text holds an unpaired surrogate (not valid Unicode)"
                problem = _RowError(key, reason)
            self.seen += n
        return problem


def _invalid_utf8_offsets(data: bytes, start: int) -> list[int]:
    """File offsets of every byte that is not valid UTF-8, in one linear pass."""
    if data.isascii():
        return []
    text = data[start:].decode("utf-8", errors="surrogateescape")
    offsets: list[int] = []
    byte, last = start, 0
    for match in _SURROGATE.finditer(text):
        byte += len(text[last : match.start()].encode("utf-8"))
        offsets.append(byte)
        byte, last = byte + 1, match.start() + 1
    return offsets


def _has_surrogate(value: Any) -> bool:
    return _count_surrogates(value) > 0


def _count_surrogates(value: Any) -> int:
    """Lone surrogates U+DC80..U+DCFF are what surrogateescape makes of undecodable bytes."""
    if isinstance(value, str):
        return 0 if value.isascii() else len(_SURROGATE.findall(value))
    if isinstance(value, dict):
        return sum(_count_surrogates(k) + _count_surrogates(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(_count_surrogates(v) for v in value)
    return 0


def _type_name(value: Any) -> str:
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


# ---------------------------------------------------------------------------------------------
# Field validation shared by the schemas
# ---------------------------------------------------------------------------------------------


def _text(rec: Mapping[str, Any], name: str) -> str:
    """A non-empty string, or a _RowError saying what is wrong with the field."""
    if name not in rec:
        raise _RowError(name, "missing in this row")
    value = rec[name]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise _RowError(name, "missing value (null)")
    if not isinstance(value, str):
        raise _RowError(name, f"expected text, got {_type_name(value)}")
    if _has_surrogate(value):
        raise _RowError(name, "text holds bytes that are not valid UTF-8")
    if not value.strip():
        raise _RowError(name, "empty text" if not value else "text is only whitespace")
    return value


def _label(rec: Mapping[str, Any], name: str) -> int:
    """A 0/1 label; CSV gives strings and Parquet may give floats, so both are accepted when exact."""
    if name not in rec:
        raise _RowError(name, "missing in this row")
    value = rec[name]
    if isinstance(value, np.generic):
        value = value.item()
    parsed: int | None = None
    if isinstance(value, bool):
        parsed = None
    elif isinstance(value, int):
        parsed = value
    elif isinstance(value, float) and value.is_integer():
        parsed = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        parsed = int(value.strip())
    if parsed not in (0, 1):
        raise _RowError(name, f"label must be 0 or 1, got {value!r}")
    return parsed


def _structured(rec: Mapping[str, Any], name: str, kind: type) -> Any:
    """A list/dict field; a JSON string is accepted so the nested schemas also work from CSV."""
    if name not in rec:
        raise _RowError(name, "missing in this row")
    value = rec[name]
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _RowError(name, f"malformed JSON in this field ({exc.msg})") from exc
    if not isinstance(value, kind):
        expected = "a list" if kind is list else "an object"
        raise _RowError(name, f"expected {expected}, got {_type_name(value)}")
    return value


class _Triple(NamedTuple):
    prompt: str
    chosen: str
    rejected: str
    chosen_field: str
    rejected_field: str


# ---------------------------------------------------------------------------------------------
# One converter per schema: a record in, (prompt, chosen, rejected) out
# ---------------------------------------------------------------------------------------------


def _generic_row(rec: Mapping[str, Any], axis: str) -> _Triple:
    return _Triple(
        _text(rec, "prompt"),
        _text(rec, "chosen").strip(),
        _text(rec, "rejected").strip(),
        "chosen",
        "rejected",
    )


def split_hh_dialogue(dialogue: str) -> tuple[str, str]:
    """(prompt up to and including the last '\\n\\nAssistant:', final assistant response)."""
    cut = dialogue.rfind(HH_ASSISTANT)
    if cut < 0:
        raise ValueError("no '\\n\\nAssistant:' turn in the dialogue")
    prompt, response = dialogue[: cut + len(HH_ASSISTANT)], dialogue[cut + len(HH_ASSISTANT) :]
    if HH_HUMAN in response:
        raise ValueError("the dialogue ends with a Human turn, not an assistant response")
    return prompt, response.strip()


def _hh_row(rec: Mapping[str, Any], axis: str) -> _Triple:
    parts = {}
    for name in ("chosen", "rejected"):
        try:
            parts[name] = split_hh_dialogue(_text(rec, name))
        except ValueError as exc:
            raise _RowError(name, str(exc)) from exc
        if not parts[name][1]:
            raise _RowError(name, "the final assistant response is empty")
    (prompt, chosen), (other_prompt, rejected) = parts["chosen"], parts["rejected"]
    if prompt != other_prompt:
        raise _RowError("rejected", "the dialogue differs from 'chosen' before the final assistant turn")
    return _Triple(prompt, chosen, rejected, "chosen", "rejected")


def _pku_row(rec: Mapping[str, Any], axis: str) -> _Triple:
    label_field = "better_response_id" if axis == "helpful" else "safer_response_id"
    prompt = _text(rec, "prompt")
    responses = [_text(rec, "response_0").strip(), _text(rec, "response_1").strip()]
    best = _label(rec, label_field)
    return _Triple(prompt, responses[best], responses[1 - best], f"response_{best}", f"response_{1 - best}")


def _messages(rec: Mapping[str, Any], name: str) -> list[dict[str, str]]:
    messages = _structured(rec, name, list)
    if not messages:
        raise _RowError(name, "empty list of messages")
    for i, m in enumerate(messages):
        if isinstance(m, np.ndarray):
            m = m.tolist()
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise _RowError(name, f"message {i} is not an object with text 'role' and 'content'")
    if messages[-1]["role"] != "assistant":
        raise _RowError(name, f"the last message is from '{messages[-1]['role']}', not the assistant")
    if not messages[-1]["content"].strip():
        raise _RowError(name, "the final assistant message is empty")
    if _has_surrogate(messages):
        raise _RowError(name, "text holds bytes that are not valid UTF-8")
    return messages


def _render_messages(messages: Sequence[Mapping[str, str]]) -> str:
    """A single user turn is the prompt itself; longer histories keep their speakers."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def _ultrafeedback_row(rec: Mapping[str, Any], axis: str) -> _Triple:
    chosen, rejected = _messages(rec, "chosen"), _messages(rec, "rejected")
    history = chosen[:-1]
    if [(m["role"], m["content"]) for m in history] != [(m["role"], m["content"]) for m in rejected[:-1]]:
        raise _RowError(
            "rejected", "the conversation differs from 'chosen' before the final assistant message"
        )
    if "prompt" in rec:
        prompt = _text(rec, "prompt")
    elif history:
        prompt = _render_messages(history)
        if not prompt.strip():
            raise _RowError("chosen", "the conversation before the final answer is empty")
    else:
        raise _RowError("chosen", "no 'prompt' column and no messages before the final answer")
    return _Triple(
        prompt, chosen[-1]["content"].strip(), rejected[-1]["content"].strip(), "chosen", "rejected"
    )


def _shp_row(rec: Mapping[str, Any], axis: str) -> _Triple:
    prompt = _text(rec, "history")
    a, b = _text(rec, "human_ref_A").strip(), _text(rec, "human_ref_B").strip()
    if _label(rec, "labels") == 1:
        return _Triple(prompt, a, b, "human_ref_A", "human_ref_B")
    return _Triple(prompt, b, a, "human_ref_B", "human_ref_A")


def _summarize_row(rec: Mapping[str, Any], axis: str) -> _Triple:
    info = _structured(rec, "info", dict)
    body_key = "post" if "post" in info or "article" not in info else "article"
    try:
        body = _text(info, body_key)
    except _RowError as exc:
        raise _RowError(f"info.{body_key}", exc.reason) from exc
    lines = []
    for key, label in (("subreddit", "SUBREDDIT: r/"), ("title", "TITLE: ")):
        if isinstance(info.get(key), str) and info[key].strip():
            lines.append(label + info[key].strip())
    prompt = "\n".join([*lines, ("POST: " if lines else "") + body.strip()])
    summaries = _structured(rec, "summaries", list)
    if len(summaries) != 2:
        raise _RowError("summaries", f"expected 2 summaries, got {len(summaries)}")
    texts = []
    for i, s in enumerate(summaries):
        if not isinstance(s, dict):
            raise _RowError(f"summaries[{i}]", f"expected an object with 'text', got {_type_name(s)}")
        try:
            texts.append(_text(s, "text").strip())
        except _RowError as exc:
            raise _RowError(f"summaries[{i}].text", exc.reason) from exc
    choice = _label(rec, "choice")
    return _Triple(
        prompt, texts[choice], texts[1 - choice], f"summaries[{choice}].text", f"summaries[{1 - choice}].text"
    )


@dataclass(frozen=True)
class _Schema:
    required: tuple[str, ...]
    convert: Callable[[Mapping[str, Any], str], _Triple]


_SCHEMAS: dict[str, _Schema] = {
    "generic": _Schema(("prompt", "chosen", "rejected"), _generic_row),
    "hh-rlhf": _Schema(("chosen", "rejected"), _hh_row),
    "pku-saferlhf": _Schema(("prompt", "response_0", "response_1"), _pku_row),
    "ultrafeedback": _Schema(("chosen", "rejected"), _ultrafeedback_row),
    "shp": _Schema(("history", "human_ref_A", "human_ref_B", "labels"), _shp_row),
    "summarize": _Schema(("info", "summaries", "choice"), _summarize_row),
}
_PKU_LABEL = {"helpful": "better_response_id", "harmless": "safer_response_id"}


def _required(fmt: str, axis: str) -> tuple[str, ...]:
    extra = (_PKU_LABEL[axis],) if fmt == "pku-saferlhf" else ()
    return _SCHEMAS[fmt].required + extra


# ---------------------------------------------------------------------------------------------
# Columns: renaming, nesting of dotted names, detection
# ---------------------------------------------------------------------------------------------


def _apply_column_map(
    path: Path, columns: list[str], records: list[_Record], column_map: Mapping[str, str] | None
) -> tuple[list[str], dict[str, str]]:
    """Rename the file's columns to ours; returns the new columns and our-name -> file-name."""
    if not column_map:
        return columns, {}
    known = {name for s in _SCHEMAS.values() for name in s.required} | set(_PKU_LABEL.values())
    for ours, theirs in column_map.items():
        if ours not in known:
            raise DataError(
                path,
                None,
                None,
                f"column_map key '{ours}' is not a field we read; use one of " + ", ".join(sorted(known)),
            )
        if not isinstance(theirs, str):
            raise DataError(path, None, None, f"column_map['{ours}'] must be a column name, got {theirs!r}")
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


def _nest_dotted(columns: list[str], records: list[_Record]) -> list[str]:
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


def _detect_format(path: Path, columns: list[str], file_columns: list[str], records: list[_Record]) -> str:
    """Columns decide, except that generic, HH-RLHF and UltraFeedback share 'chosen'/'rejected':
    there the first row's 'chosen' decides (chat messages, an HH dialogue, or plain text with a prompt)."""
    cols = set(columns)
    hint = ""
    fits = [f for f in FORMATS if set(_SCHEMAS[f].required) <= cols]
    if "pku-saferlhf" in fits and not cols & set(_PKU_LABEL.values()):
        fits.remove("pku-saferlhf")
    family = {"generic", "hh-rlhf", "ultrafeedback"}
    if family & set(fits):
        sample = next(
            (
                r.values["chosen"]
                for r in records
                if r.values is not None and r.values.get("chosen") is not None
            ),
            None,
        )
        if isinstance(sample, str) and sample.strip()[:1] == "[":
            try:
                sample = json.loads(sample)
            except json.JSONDecodeError:
                pass
        if isinstance(sample, list | np.ndarray):
            keep = "ultrafeedback"
        elif isinstance(sample, str) and "prompt" in cols:
            keep = "generic"
        elif isinstance(sample, str) and HH_ASSISTANT in sample:
            keep = "hh-rlhf"
        else:
            keep = None
            hint = (
                " ('chosen' holds neither HH-RLHF dialogues nor lists of chat messages,"
                " and there is no 'prompt' column for the generic format)"
            )
        fits = [f for f in fits if f not in family or f == keep]
    if len(fits) == 1:
        return fits[0]
    found = ", ".join(file_columns) or "(none)"
    if fits:
        raise DataError(
            path,
            None,
            None,
            f"ambiguous format: columns [{found}] fit {', '.join(fits)}; pass format= to choose",
        )
    needs = "; ".join(f"{f}: {', '.join(_required(f, 'helpful'))}" for f in FORMATS)
    raise DataError(
        path,
        None,
        None,
        f"unknown format: columns [{found}] fit none of the known formats{hint} "
        f"({needs}); pass format= and column_map= if your columns have other names",
    )


# ---------------------------------------------------------------------------------------------
# The public loader
# ---------------------------------------------------------------------------------------------


def load_pairs(
    path: str | Path,
    format: str = "auto",
    column_map: Mapping[str, str] | None = None,
    axis: str = "helpful",
    max_chars: int | None = None,
    strict: bool = False,
) -> tuple[list[PreferencePair], LoadReport]:
    """Read a preference file into pairs, and a report of every row that was skipped or cut.

    format: "auto" or one of FORMATS. column_map: our field name -> the file's column name.
    axis: which PKU-SafeRLHF label decides chosen ("helpful": better_response_id, "harmless":
    safer_response_id). max_chars: cap on prompt + longest response; the prompt loses its
    beginning (the end of a dialogue, next to the response, survives) but keeps at least a quarter
    of max_chars; responses are never cut. strict: raise at the first bad row instead of skipping.
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

    columns, records = _read_records(path)
    file_columns = list(columns)
    columns = _nest_dotted(columns, records)
    columns, mapped = _apply_column_map(path, columns, records, column_map)
    fmt = _detect_format(path, columns, file_columns, records) if format == "auto" else format
    for name in _required(fmt, axis):
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
    pairs: list[PreferencePair] = []
    convert = _SCHEMAS[fmt].convert
    for rec in records:
        report.rows_read += 1
        try:
            if rec.problem is not None:
                raise rec.problem
            triple = convert(rec.values, axis)
            if triple.chosen == triple.rejected:
                raise _RowError(
                    triple.rejected_field,
                    f"same text as '{triple.chosen_field}' (chosen and rejected must differ)",
                )
        except _RowError as exc:
            file_field = mapped.get(exc.field, exc.field) if exc.field is not None else None
            if strict:
                raise DataError(path, rec.row, file_field, exc.reason) from None
            report.skipped.append(SkippedRow(rec.row, file_field, exc.reason))
            continue
        prompt = triple.prompt
        if max_chars is not None:
            prompt, cut, long = fit_prompt(prompt, (triple.chosen, triple.rejected), max_chars)
            report.truncated += cut
            report.long_responses += long
        pairs.append(
            PreferencePair(
                id=f"{path.stem}:{rec.row}",
                prompt=prompt,
                chosen=triple.chosen,
                rejected=triple.rejected,
                source=fmt,
            )
        )
    report.pairs_loaded = len(pairs)
    if not pairs:
        shown = "; ".join(_skip_text(s) for s in report.skipped[:_MAX_REASONS_SHOWN])
        raise DataError(
            path,
            None,
            None,
            f"no usable rows ({report.rows_read} read, all skipped); first problems: {shown}",
        )
    return pairs, report


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
# Splitting and tables
# ---------------------------------------------------------------------------------------------


def train_test_split(
    pairs: Sequence[PreferencePair], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Seeded split that keeps each original with its synthetic descendants (no leakage via paraphrases).

    Families (an original and the pairs built from it) are shuffled by a seeded permutation of
    their sorted ids, so the split does not depend on the input order; each side keeps input order.
    The test side gets round(n * test_fraction) pairs (exactly, when every family is one pair),
    at least one and at most n - 1 when there are two or more families.
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
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"pair ids must be unique to split; '{dup}' appears more than once")
    n = len(pairs)
    families: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        families.setdefault(p.parent_id or p.id, []).append(i)
    if len(families) < 2:
        return pairs, []
    target = min(max(round(n * test_fraction), 1), n - 1)
    keys = sorted(families)
    order = np.random.default_rng(seed).permutation(len(keys))
    test_idx: set[int] = set()
    for k in order:
        if len(test_idx) >= target:
            break
        members = families[keys[k]]
        if len(test_idx) + len(members) > n - 1 and test_idx:
            continue  # this family would empty the training side
        test_idx.update(members)
    train = [p for i, p in enumerate(pairs) if i not in test_idx]
    test = [p for i, p in enumerate(pairs) if i in test_idx]
    return train, test


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
                raise DataError("<table>", i, name, f"expected text, got {_type_name(value)}")
            elif name in casts:
                value = casts[name](value)
            kwargs[name] = value
        out.append(PreferencePair(**kwargs))
    return out


def required_columns(format: str, axis: str = "helpful") -> tuple[str, ...]:
    """The columns a format needs (for help text in the UI)."""
    if format not in FORMATS or axis not in AXES:
        raise ValueError(f"format must be one of {', '.join(FORMATS)} and axis one of {', '.join(AXES)}")
    return _required(format, axis)
