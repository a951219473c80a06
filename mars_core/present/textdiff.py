"""Word-level differences between an original response and its paraphrase, for side-by-side review."""

from __future__ import annotations

import difflib
import re
from typing import Literal

Op = Literal["equal", "delete", "insert"]

_TOKEN = re.compile(r"\s+|[^\s]+")


def word_diff(original: str, paraphrase: str) -> list[tuple[Op, str]]:
    """Segments (op, text): 'equal' in both, 'delete' only in the original, 'insert' only in the paraphrase.

    Whitespace is kept as its own token so joining the equal+delete segments gives back the original
    and equal+insert the paraphrase exactly.
    """
    a, b = _TOKEN.findall(original), _TOKEN.findall(paraphrase)
    out: list[tuple[Op, str]] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out.append(("equal", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("delete", "".join(a[i1:i2])))
        if j2 > j1:
            out.append(("insert", "".join(b[j1:j2])))
    return out


def changed_word_fraction(original: str, paraphrase: str) -> float:
    """Share of the original's words that the paraphrase does not keep (0 = copy, 1 = all new)."""
    words = original.split()
    if not words:
        return 0.0 if not paraphrase.split() else 1.0
    kept = difflib.SequenceMatcher(a=words, b=paraphrase.split(), autojunk=False)
    return 1.0 - sum(block.size for block in kept.get_matching_blocks()) / len(words)
