"""Uploaded files are kept next to the store under a safe name, and never replace another upload."""

from __future__ import annotations

from mars_core.store.uploads import save_upload


def test_an_upload_lands_next_to_the_store_under_a_safe_name(tmp_path):
    store = tmp_path / "runs" / "mars.db"
    path = save_upload(store, "../../etc/my pairs;rm.jsonl", b'{"a": 1}\n')
    assert path == (tmp_path / "runs" / "uploads" / "my_pairs_rm.jsonl").resolve()
    assert path.read_bytes() == b'{"a": 1}\n'
    assert save_upload(store, ".hidden", b"x").name == "hidden"


def test_the_same_name_with_other_bytes_gets_a_new_file_and_the_same_bytes_reuse_it(tmp_path):
    store = tmp_path / "mars.db"
    first = save_upload(store, "pairs.jsonl.gz", b"one")
    assert save_upload(store, "pairs.jsonl.gz", b"one") == first
    second = save_upload(store, "pairs.jsonl.gz", b"two")
    third = save_upload(store, "pairs.jsonl.gz", b"three")
    assert (second.name, third.name) == ("pairs-2.jsonl.gz", "pairs-3.jsonl.gz")
    assert first.read_bytes() == b"one" and second.read_bytes() == b"two", "a stored run's file is never replaced"
