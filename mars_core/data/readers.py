"""Read a data file into raw records: JSON lines, a JSON array, CSV or Parquet, optionally compressed.

Readers know nothing of schemas: they return the columns (in first-seen order) and one Record per
row, with any parse or encoding problem attached to the record rather than raised, so the loader
decides whether a bad row is skipped or fatal. Rows are numbered from 1: the line number for JSON
lines, the record number (header not counted) for CSV, the element number for a JSON array, the
table row for Parquet. Compressed files (.gz, .bz2, .zst) are decompressed whole first; byte
offsets in messages then count in the decompressed data.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mars_core.data.errors import DataError, RowError, describe_type

EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet")
COMPRESSIONS = (".gz", ".bz2", ".zst")
_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\udc80-\udcff]")


@dataclass
class Record:
    row: int
    values: dict[str, Any] | None  # None when the row could not be parsed at all
    problem: RowError | None = None  # a parse or encoding problem found while reading


def split_name(path: Path) -> tuple[str, str, str | None]:
    """(stem, data extension, compression suffix or None): 'hh.jsonl.gz' -> ('hh', '.jsonl', '.gz')."""
    last = path.suffix.lower()
    if last in COMPRESSIONS:
        inner = Path(path.stem)
        return inner.stem, inner.suffix.lower(), last
    return path.stem, last, None


def read_records(path: Path) -> tuple[list[str], list[Record]]:
    """Columns (in first-seen order) and every record of a file, problems attached, not raised."""
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    if path.is_dir():
        raise DataError(path, None, None, "is a folder, not a data file")
    _, ext, compression = split_name(path)
    if ext not in EXTENSIONS:
        shown = f"'{ext}' before '{compression}'" if compression else f"'{ext}'"
        raise DataError(
            path,
            None,
            None,
            f"unsupported file type {shown}; use one of {', '.join(EXTENSIONS)}, "
            f"optionally compressed as {', '.join(COMPRESSIONS)} (e.g. pairs.jsonl.gz)",
        )
    data = _read_bytes(path, compression)
    if ext == ".parquet":
        return _read_parquet(path, data)
    offset = len(_BOM) if data.startswith(_BOM) else 0
    if not data[offset:].strip():
        raise DataError(path, None, None, "empty file")
    bad = _BadBytes(data, offset, " of the decompressed data" if compression else "")
    if ext == ".csv":
        return _read_csv(path, data, offset, bad)
    body = data[offset:].lstrip()
    if body[:1] == b"[":
        return _read_json_array(path, data, offset, bad)
    if ext == ".json" and body[:1] == b"{" and _is_single_object(data[offset:]):
        raise DataError(path, None, None, _ONE_OBJECT)  # even on one line: a .json file is one document
    return _read_json_lines(path, data, offset, bad)


_ONE_OBJECT = "holds one JSON object; expected JSON lines or an array of objects"


def peek_columns(path: str | Path) -> list[str]:
    """The columns of a data file, as the loader will see them (any format, compressed or not, all
    rows); [] when it cannot be read. A hint for column-mapping widgets: load_pairs gives the errors."""
    try:
        return read_records(Path(path))[0]
    except (DataError, OSError):
        return []


def _read_bytes(path: Path, compression: str | None) -> bytes:
    raw = path.read_bytes()
    if compression is None:
        return raw
    try:
        if compression == ".gz":
            return gzip.decompress(raw)  # also reads multi-member files (concatenated .gz)
        if compression == ".bz2":
            return bz2.decompress(raw)
        import pyarrow as pa  # zstd through pyarrow (already needed for Parquet): no extra package

        return pa.input_stream(pa.py_buffer(raw), compression="zstd").read()
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise DataError(path, None, None, f"not a readable '{compression}' file ({exc})") from None


def _read_parquet(path: Path, data: bytes) -> tuple[list[str], list[Record]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise DataError(path, None, None, f"not a readable Parquet file ({exc})") from exc
    if table.num_rows == 0:
        raise DataError(path, None, None, "empty file (no rows)")
    rows = table.to_pylist()
    return list(table.column_names), [Record(i + 1, r) for i, r in enumerate(rows)]


def _read_json_lines(path: Path, data: bytes, start: int, bad: _BadBytes) -> tuple[list[str], list[Record]]:
    records: list[Record] = []
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
                raise DataError(path, None, None, _ONE_OBJECT) from exc
            reason = f"malformed JSON ({exc.msg} at column {exc.colno})"
            if bad_offset is not None:
                reason = bad.reason_at(bad_offset)
            records.append(Record(line_no, None, RowError(None, reason)))
            continue
        if not isinstance(value, dict):
            problem = RowError(None, f"expected a JSON object, got {describe_type(value)}")
            records.append(Record(line_no, None, problem))
            continue
        columns.update(dict.fromkeys(value))
        record = Record(line_no, value)
        if bad_offset is not None:
            bad_field = next((k for k, v in value.items() if has_invalid_bytes(v)), None)
            record.problem = RowError(bad_field, bad.reason_at(bad_offset))
        records.append(record)
    return list(columns), records


def _is_single_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data.decode("utf-8", errors="replace")), dict)
    except json.JSONDecodeError:
        return False


def _read_json_array(path: Path, data: bytes, start: int, bad: _BadBytes) -> tuple[list[str], list[Record]]:
    text = data[start:].decode("utf-8", errors="surrogateescape")
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            path, None, None, f"malformed JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    if not values:
        raise DataError(path, None, None, "empty file (the JSON array has no elements)")
    records: list[Record] = []
    columns: dict[str, None] = {}
    for i, value in enumerate(values, start=1):
        if not isinstance(value, dict):
            records.append(
                Record(i, None, RowError(None, f"expected a JSON object, got {describe_type(value)}"))
            )
            bad.skip(value)
            continue
        columns.update(dict.fromkeys(value))
        records.append(Record(i, value, bad.check(value.items())))
    return list(columns), records


def _read_csv(path: Path, data: bytes, start: int, bad: _BadBytes) -> tuple[list[str], list[Record]]:
    text = data[start:].decode("utf-8", errors="surrogateescape")
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # long dialogues exceed the 128 KiB default
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader)
        except csv.Error as exc:
            raise DataError(path, None, None, f"unreadable CSV header ({exc})") from exc
        bad.skip(header)
        records: list[Record] = []
        row = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                records.append(Record(row + 1, None, RowError(None, f"unreadable CSV ({exc})")))
                break
            if not cells or not any(c.strip() for c in cells):
                continue
            row += 1
            if len(cells) != len(header):
                bad.skip(cells)
                reason = f"has {len(cells)} fields but the header has {len(header)}"
                records.append(Record(row, None, RowError(None, reason)))
                continue
            values = dict(zip(header, cells, strict=True))
            records.append(Record(row, values, bad.check(values.items())))
    finally:
        csv.field_size_limit(old_limit)
    if not records:
        raise DataError(path, None, None, "empty file (a header but no data rows)")
    return header, records


class _BadBytes:
    """Maps the n-th undecodable byte (a lone surrogate after surrogateescape) back to its file offset.

    Text is visited in file order, so the n-th surrogate met is the n-th invalid byte.
    """

    def __init__(self, data: bytes, start: int, where: str):
        self.data = data
        self.where = where
        self.start = start
        self.offsets: list[int] | None = None  # found on first use: most files have no bad byte
        self.seen = 0

    def reason_at(self, offset: int) -> str:
        return f"invalid UTF-8 byte 0x{self.data[offset]:02x} at byte offset {offset}{self.where}"

    def skip(self, value: Any) -> None:
        self.seen += _count_surrogates(value)

    def check(self, items: Any) -> RowError | None:
        problem = None
        for key, value in items:
            self.skip(key)
            n = _count_surrogates(value)
            if n and problem is None:
                if self.offsets is None:
                    self.offsets = _invalid_utf8_offsets(self.data, self.start)
                if self.seen < len(self.offsets):
                    reason = self.reason_at(self.offsets[self.seen])
                else:
                    reason = "text holds an unpaired surrogate (not valid Unicode)"
                problem = RowError(key, reason)
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


def has_invalid_bytes(value: Any) -> bool:
    """True when text (or text nested in lists/objects) holds bytes that were not valid UTF-8."""
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
