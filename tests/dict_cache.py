"""A generation cache (the ParaphraseCache protocol) in a dict, for tests of every paraphraser."""

from __future__ import annotations


class DictCache:
    def __init__(self) -> None:
        self.rows: dict[str, list[str]] = {}

    def get(self, key: str) -> list[str] | None:
        return self.rows.get(key)

    def put(self, key: str, texts: list[str]) -> None:
        self.rows[key] = list(texts)
