"""Reading files: each format, compression, empty/corrupt files, and byte-exact locations of bad bytes."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from mars_core.data.errors import DataError
from mars_core.data.loading import load_pairs
from mars_core.data.readers import peek_columns, read_records, split_name
from tests.data.helpers import FIXTURES, GENERIC_ROW, assert_located, read_jsonl

# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------


def test_parquet_written_by_pandas_loads_like_jsonl(tmp_path):
    raw = read_jsonl(FIXTURES / "generic.jsonl")
    path = tmp_path / "prefs.parquet"
    pd.DataFrame(raw).to_parquet(path)
    pairs, report = load_pairs(path)
    assert report.format == "generic"
    jsonl_pairs, _ = load_pairs(FIXTURES / "generic.jsonl")
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [
        (p.prompt, p.chosen, p.rejected) for p in jsonl_pairs
    ]
    assert [p.id for p in pairs] == [f"prefs:{i}" for i in range(1, 5)]


def test_parquet_with_nested_chat_messages_is_ultrafeedback(tmp_path):
    raw = read_jsonl(FIXTURES / "ultrafeedback.jsonl")
    path = tmp_path / "uf.parquet"
    pd.DataFrame(raw).to_parquet(path)  # list<struct<role, content>> columns, as on the Hub
    pairs, report = load_pairs(path)
    assert report.format == "ultrafeedback"
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [
        (r["prompt"], r["chosen"][-1]["content"], r["rejected"][-1]["content"]) for r in raw
    ]


def test_json_array_file_is_accepted(tmp_path):
    path = tmp_path / "arr.json"
    path.write_text(json.dumps([GENERIC_ROW, {**GENERIC_ROW, "chosen": "Four."}]))
    pairs, _ = load_pairs(path)
    assert [p.chosen for p in pairs] == ["4.", "Four."]
    assert [p.id for p in pairs] == ["arr:1", "arr:2"]


def test_jsonl_ids_are_line_numbers_and_stable(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text(json.dumps(GENERIC_ROW) + "\n\n" + json.dumps({**GENERIC_ROW, "chosen": "Four."}) + "\n")
    first, report = load_pairs(path)
    second, _ = load_pairs(path)
    assert [p.id for p in first] == ["gaps:1", "gaps:3"]  # blank lines are not rows, but count as lines
    assert first == second
    assert report.rows_read == 2


def test_read_records_keeps_columns_in_first_seen_order_over_all_rows(tmp_path):
    path = tmp_path / "cols.jsonl"
    path.write_text(json.dumps({"b": 1}) + "\n" + json.dumps({"a": 2, "b": 3}) + "\n")
    columns, records = read_records(path)
    assert columns == ["b", "a"]
    assert [(r.row, r.values) for r in records] == [(1, {"b": 1}), (2, {"a": 2, "b": 3})]


# --------------------------------------------------------------------------------------------
# Compression
# --------------------------------------------------------------------------------------------


def _zstd(data: bytes) -> bytes:
    out = pa.BufferOutputStream()
    with pa.CompressedOutputStream(out, "zstd") as stream:
        stream.write(data)
    return out.getvalue().to_pybytes()


COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".zst": _zstd}


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
@pytest.mark.parametrize(
    "name", ["generic.jsonl", "generic_renamed.csv", "hh_rlhf.jsonl", "summarize.json", "ultrafeedback.jsonl"]
)
def test_compressed_files_load_like_the_plain_file(tmp_path, name, suffix):
    plain = FIXTURES / name
    packed = tmp_path / (name + suffix)
    packed.write_bytes(COMPRESSORS[suffix](plain.read_bytes()))
    column_map = {"prompt": "question", "chosen": "good_answer", "rejected": "bad_answer"}
    kwargs = {"column_map": column_map} if name.endswith(".csv") else {}
    want, want_report = load_pairs(plain, **kwargs)
    got, got_report = load_pairs(packed, **kwargs)
    assert got == want  # ids too: 'generic.jsonl.gz' row 3 is 'generic:3', as for 'generic.jsonl'
    assert got_report.format == want_report.format


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_compressed_parquet(tmp_path, suffix):
    raw = read_jsonl(FIXTURES / "generic.jsonl")
    plain = tmp_path / "prefs.parquet"
    pd.DataFrame(raw).to_parquet(plain)
    packed = tmp_path / ("packed.parquet" + suffix)
    packed.write_bytes(COMPRESSORS[suffix](plain.read_bytes()))
    pairs, report = load_pairs(packed)
    assert report.format == "generic"
    assert [(p.id, p.chosen) for p in pairs] == [(f"packed:{i}", r["chosen"]) for i, r in enumerate(raw, 1)]


def test_real_hh_rlhf_excerpt_gz_is_detected_and_loads():
    """24 rows of the HH-RLHF harmless set, gzipped as the official *.jsonl.gz files are."""
    pairs, report = load_pairs(FIXTURES / "hh_harmless_excerpt.jsonl.gz")
    assert report.format == "hh-rlhf"
    assert report.rows_read == 24 and report.skipped == []
    assert len(pairs) + len(report.duplicates) == 24
    assert pairs[0].id == "hh_harmless_excerpt:1"
    assert all(p.prompt.startswith("\n\nHuman:") and p.prompt.endswith("\n\nAssistant:") for p in pairs)


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_corrupt_compressed_file_is_a_data_error(tmp_path, suffix):
    path = tmp_path / ("broken.jsonl" + suffix)
    path.write_bytes(b"this was never compressed")
    with pytest.raises(DataError, match=f"not a readable '\\{suffix}' file") as exc:
        load_pairs(path)
    assert_located(exc.value, path.name, None, None)


def test_truncated_gz_is_a_data_error(tmp_path):
    data = gzip.compress((FIXTURES / "generic.jsonl").read_bytes())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable '.gz' file"):
        load_pairs(path)


def test_compressed_file_needs_a_data_extension(tmp_path):
    path = tmp_path / "pairs.gz"
    path.write_bytes(gzip.compress(json.dumps(GENERIC_ROW).encode()))
    with pytest.raises(DataError, match=r"unsupported file type '' before '\.gz'.*pairs\.jsonl\.gz"):
        load_pairs(path)


def test_empty_compressed_file(tmp_path):
    path = tmp_path / "e.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n"))
    with pytest.raises(DataError, match="empty file"):
        load_pairs(path)


def test_bad_byte_offset_in_a_compressed_file_counts_in_the_decompressed_data(tmp_path):
    data = (
        json.dumps(GENERIC_ROW) + "\n"
    ).encode() + b'{"prompt": "p", "chosen": "caf\xe9", "rejected": "r"}\n'
    path = tmp_path / "latin1.jsonl.gz"
    path.write_bytes(gzip.compress(data))
    with pytest.raises(DataError) as exc:
        load_pairs(path, strict=True)
    assert_located(exc.value, "latin1.jsonl.gz", 2, "chosen")
    offset = data.index(b"\xe9")
    assert f"byte offset {offset} of the decompressed data" in str(exc.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hh.jsonl.gz", ("hh", ".jsonl", ".gz")),
        ("HH.JSONL.BZ2", ("HH", ".jsonl", ".bz2")),
        ("d.csv.zst", ("d", ".csv", ".zst")),
        ("d.parquet", ("d", ".parquet", None)),
        ("my.data.json", ("my.data", ".json", None)),
    ],
)
def test_split_name(name, expected):
    assert split_name(Path(name)) == expected


# --------------------------------------------------------------------------------------------
# Bad input: file level
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found") as exc:
        load_pairs(tmp_path / "nope.jsonl")
    assert_located(exc.value, "nope.jsonl", None, None)


def test_folder_is_not_a_data_file(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        load_pairs(tmp_path)


def test_unsupported_extension(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("prompt,chosen,rejected\n")
    with pytest.raises(DataError, match=r"unsupported file type '\.txt'.*\.jsonl"):
        load_pairs(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("e.jsonl", ""),
        ("e.jsonl", "\n  \n"),
        ("e.csv", ""),
        ("e.json", "[]"),
        ("e.csv", "prompt,chosen,rejected\n"),
    ],
)
def test_empty_files(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match="empty file") as exc:
        load_pairs(path)
    assert_located(exc.value, name, None, None)


def test_empty_parquet(tmp_path):
    path = tmp_path / "e.parquet"
    pd.DataFrame(
        {
            "prompt": pd.Series([], dtype=str),
            "chosen": pd.Series([], dtype=str),
            "rejected": pd.Series([], dtype=str),
        }
    ).to_parquet(path)
    with pytest.raises(DataError, match="empty file"):
        load_pairs(path)


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_pairs(path)


def test_malformed_json_array_names_line_and_column(tmp_path):
    path = tmp_path / "arr.json"
    path.write_text('[\n {"prompt": "p", "chosen": "c", "rejected": "r"},\n {"prompt": }\n]')
    with pytest.raises(DataError, match="malformed JSON .* line 3"):
        load_pairs(path)


def test_single_json_object_is_explained(tmp_path):
    path = tmp_path / "obj.json"
    path.write_text(json.dumps({"data": [GENERIC_ROW]}, indent=2))
    with pytest.raises(DataError, match="one JSON object; expected JSON lines or an array"):
        load_pairs(path)


@pytest.mark.parametrize("content", [{"data": [GENERIC_ROW]}, GENERIC_ROW])
def test_single_json_object_on_one_line_is_explained_too(tmp_path, content):
    """A .json file is one document: one object on one line is that object, not a one-row file."""
    path = tmp_path / "obj.json"
    path.write_text(json.dumps(content) + "\n")
    with pytest.raises(DataError, match="one JSON object; expected JSON lines or an array") as exc:
        load_pairs(path)
    assert_located(exc.value, "obj.json", None, None)


def test_json_lines_in_a_json_file_still_load(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text(json.dumps(GENERIC_ROW) + "\n" + json.dumps({**GENERIC_ROW, "chosen": "Four."}) + "\n")
    pairs, _ = load_pairs(path)
    assert [p.chosen for p in pairs] == ["4.", "Four."]


def test_one_line_jsonl_file_is_one_row(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(GENERIC_ROW) + "\n")
    pairs, report = load_pairs(path)
    assert len(pairs) == 1 and report.rows_read == 1


# --------------------------------------------------------------------------------------------
# Bad input: rows the reader cannot parse
# --------------------------------------------------------------------------------------------


def test_malformed_json_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(
        json.dumps(GENERIC_ROW) + "\n" + '{"prompt": "p", "chosen": "c",\n' + json.dumps(GENERIC_ROW) + "\n"
    )
    with pytest.raises(DataError, match="malformed JSON") as exc:
        load_pairs(path, strict=True)
    assert_located(exc.value, "data.jsonl", 2, None)
    pairs, report = load_pairs(path)
    assert [p.id for p in pairs] == ["data:1"]
    assert report.skipped[0].row == 2
    assert report.duplicates == [(3, 1)]  # line 3 repeats line 1


def test_json_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(GENERIC_ROW) + "\n" + '["p", "c", "r"]\n')
    pairs, report = load_pairs(path)
    assert len(pairs) == 1 and report.skipped == [(2, None, "expected a JSON object, got a list")]


def test_csv_row_with_wrong_number_of_fields(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,chosen,rejected\np,c,r\np,c\np,c,r\n")
    with pytest.raises(DataError, match="has 2 fields but the header has 3") as exc:
        load_pairs(path, strict=True)
    assert_located(exc.value, "d.csv", 2, None)


def test_non_utf8_bytes_in_jsonl_name_row_field_and_offset(tmp_path):
    good = (json.dumps(GENERIC_ROW) + "\n").encode()
    other = (json.dumps({**GENERIC_ROW, "chosen": "Four."}) + "\n").encode()
    bad = b'{"prompt": "p", "chosen": "caf\xe9", "rejected": "r"}\n'
    data = good + bad + other
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(data)
    offset = data.index(b"\xe9")
    with pytest.raises(DataError) as exc:
        load_pairs(path, strict=True)
    assert_located(exc.value, "latin1.jsonl", 2, "chosen")
    assert f"invalid UTF-8 byte 0xe9 at byte offset {offset}" in str(exc.value)
    assert "decompressed" not in str(exc.value)
    pairs, report = load_pairs(path)
    assert [p.id for p in pairs] == ["latin1:1", "latin1:3"]


def test_non_utf8_bytes_in_csv_name_row_field_and_offset(tmp_path):
    data = "prompt,chosen,rejected\nna\u00efve?,yes,no\n".encode() + b"q,fa\xe7ade,wall\nq2,x,\xff\xfe\n"
    path = tmp_path / "cp1252.csv"
    path.write_bytes(data)
    with pytest.raises(DataError) as exc:
        load_pairs(path, strict=True)
    assert_located(exc.value, "cp1252.csv", 2, "chosen")
    offset_e7, offset_ff = data.index(b"\xe7"), data.index(b"\xff")
    assert f"byte 0xe7 at byte offset {offset_e7}" in str(exc.value)
    pairs, report = load_pairs(path)
    assert [p.prompt for p in pairs] == ["na\u00efve?"]  # valid multi-byte UTF-8 is fine
    assert report.skipped[1][:2] == (3, "rejected")
    assert f"byte 0xff at byte offset {offset_ff}" in report.skipped[1].reason


def test_utf8_bom_is_ignored(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfprompt,chosen,rejected\np,c,r\n")
    pairs, report = load_pairs(path)
    assert report.format == "generic" and pairs[0].prompt == "p"


def test_peek_columns_sees_every_row_and_compressed_files(tmp_path):
    path = tmp_path / "cols.jsonl.gz"
    rows = [{"question": "q"}, {"question": "q2", "good": "a", "bad": "b"}]
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    assert peek_columns(path) == ["question", "good", "bad"]
    header = (FIXTURES / "shp.csv").read_text().splitlines()[0].split(",")
    assert peek_columns(FIXTURES / "shp.csv") == header
    assert peek_columns(tmp_path / "missing.jsonl") == []
