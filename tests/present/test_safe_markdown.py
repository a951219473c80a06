"""Dataset and generated text rendered as Streamlit markdown: inert, round-tripping, with word changes marked."""

from __future__ import annotations

import re
import string

from mars_core.present.safe_markdown import diff_markdown, escape_markdown
from mars_core.present.textdiff import word_diff

HOSTILE = (
    "Sure! [click](javascript:alert(1)) ![x](http://e/x.png) <script>alert(1)</script> :red[boom] "
    "$x^2$ *em* `c` :smile: # heading"
)


def _unescaped_punctuation(markdown: str) -> list[str]:
    out, i = [], 0
    while i < len(markdown):
        if markdown[i] == "\\" and i + 1 < len(markdown):
            i += 2
            continue
        if markdown[i] in string.punctuation:
            out.append(markdown[i])
        i += 1
    return out


def test_markdown_escaping_neutralises_dataset_text():
    escaped = escape_markdown(HOSTILE + "\n    indented")
    assert _unescaped_punctuation(escaped) == []
    lines = escaped.split("  \n")
    assert lines[1].startswith("\u00a0" * 4)  # no accidental code block
    assert re.sub(r"\\(.)", r"\1", lines[0]) == HOSTILE  # only backslashes were added


def test_diff_markdown_marks_changed_words_and_escapes_them():
    original = "I can't help with that request."
    paraphrase = "Sure! [click](javascript:alert(1)) help with that request."
    left, right = diff_markdown(original, paraphrase)
    assert left.count(":red-background[~~") == 1 and right.count(":green-background[") == 1
    inner = right.split(":green-background[", 1)[1].rsplit("]", 1)[0]
    assert _unescaped_punctuation(inner) == []
    assert "help with that request" in right.replace("\\", "")
    assert diff_markdown("same text", "same text") == ("same text", "same text")
    left, right = diff_markdown("I'm not able to", "I'm able to")
    assert left == "I\\'m :red-background[~~not~~] able to" and right == "I\\'m able to"  # spaces kept


def _unescape(markdown: str) -> str:
    return re.sub(r"\\([" + re.escape(string.punctuation) + "])", r"\1", markdown)


def test_diff_markdown_marks_exactly_the_changed_words_and_round_trips():
    original = "The cat <b>sat</b> on the **mat**."
    paraphrase = "A cat <b>sat</b> upon the **rug**."
    before, after = diff_markdown(original, paraphrase)
    removed = {t.strip() for op, t in word_diff(original, paraphrase) if op == "delete"}
    added = {t.strip() for op, t in word_diff(original, paraphrase) if op == "insert"}
    assert {_unescape(m) for m in re.findall(r":red-background\[~~(.*?)~~\]", before)} == removed
    assert {_unescape(m) for m in re.findall(r":green-background\[(.*?)(?<!\\)\]", after)} == added
    assert "<b>" not in before and "\\<b\\>" in before
    plain = re.sub(r":green-background\[(.*?)(?<!\\)\]", r"\1", after)
    assert _unescape(plain) == paraphrase


def test_diff_markdown_keeps_line_breaks_and_hostile_text_inert():
    before, after = diff_markdown("line one\n" + HOSTILE, "line two\n" + HOSTILE)
    assert "  \n" in before and "  \n" in after
    assert "<script>" not in after and "\\<script\\>" in after
