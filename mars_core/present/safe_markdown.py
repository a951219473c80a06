"""Untrusted text (datasets, generated paraphrases) as Streamlit markdown that can never become markup."""

from __future__ import annotations

import re
import string

from mars_core.present.textdiff import word_diff

_MARKDOWN_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")


def escape_markdown(text: str, indent_first_line: bool = True) -> str:
    """Backslash-escape every ASCII punctuation mark (CommonMark allows it for all of them).

    Dataset and generated text is untrusted: unescaped it could render links, images, LaTeX,
    Streamlit colour directives or emoji shortcodes. Newlines become hard line breaks and the
    indentation after them no-break spaces (no accidental code blocks); ``indent_first_line=False``
    leaves the first line's leading spaces alone, for pieces that continue a line.
    """
    lines = _MARKDOWN_SPECIAL.sub(r"\\\1", text).split("\n")
    return "  \n".join(
        _keep_indent(line) if i or indent_first_line else line for i, line in enumerate(lines)
    )


def _keep_indent(line: str) -> str:
    stripped = line.lstrip(" \t")
    return "\u00a0" * (len(line) - len(stripped)) + stripped


def diff_markdown(original: str, paraphrase: str) -> tuple[str, str]:
    """(original, paraphrase) as escaped Markdown with word-level changes marked.

    Left: words the paraphrase dropped, struck through on red. Right: words it added, on green.
    Changes separated only by whitespace are marked as one run ("I can't" -> "Sure!"), and changes
    that are only whitespace are shown as plain spaces.
    """
    segments = word_diff(original, paraphrase)
    runs: list[list[str]] = []  # ["equal", text, text] or ["change", removed, added]
    for k, (op, segment) in enumerate(segments):
        bridge = (  # a space between two changes belongs to the change
            op == "equal" and not segment.strip() and bool(runs) and runs[-1][0] == "change"
            and k + 1 < len(segments) and segments[k + 1][0] != "equal"
        )
        if op == "equal" and not bridge:
            runs.append(["equal", segment, segment])
            continue
        if not runs or runs[-1][0] != "change":
            runs.append(["change", "", ""])
        if op in ("equal", "delete"):
            runs[-1][1] += segment
        if op in ("equal", "insert"):
            runs[-1][2] += segment
    left: list[str] = []
    right: list[str] = []
    for op, removed, added in runs:
        sides = ((left, removed, ":red-background[~~{}~~]"), (right, added, ":green-background[{}]"))
        for out, text, style in sides:
            if op == "equal":  # indentation counts only at the very start of a text or after a newline
                out.append(escape_markdown(text, indent_first_line=not out))
            elif text.strip():  # spaces around a change stay outside the mark
                lead = " " if text[0].isspace() else ""
                tail = " " if text[-1].isspace() else ""
                out.append(lead + style.format(escape_markdown(" ".join(text.split()))) + tail)
            elif text:
                out.append(" ")
    return "".join(left), "".join(right)
