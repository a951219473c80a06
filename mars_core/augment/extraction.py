"""Cleaning raw LM output down to the paraphrase itself (pure functions, no model).

Small instruct models wrap their answer in meta-text ("Here is the paraphrase:", an echoed
"Original text:", commentary after a blank line), so every raw output goes through
``extract_paraphrase`` before anyone sees it; outputs cut off by the token budget go through
``trim_unfinished``. Every paraphraser (in-process or remote) shares these.
"""

from __future__ import annotations

import re

_KIND = r"(?:paraphras\w*|rephras\w*|rewrit\w*|rewritten|reword\w*|revis\w*|restat\w*|reformulat\w*)"
_NOUN = r"(?:text|version|sentence|response|answer|statement|passage|paragraph|output|one)"
# "Here is the paraphrased version of the text:" / "Here's my attempt:" (the line must end in a colon)
_HERE = re.compile(
    r"^(?:here\s*(?:is|'s|’s|are)|below\s+is|this\s+is)\b[^\n:]{0,100}?"
    r"(?:" + _KIND + r"|" + _NOUN + r"|attempt|it)\b[^\n:]{0,60}:[ \t]*(?:\n+|(?=\S)|$)",
    re.IGNORECASE,
)
# "Paraphrase:", "**Rewritten text:**", "The paraphrased sentence would be:", "Output:"
_LABEL = re.compile(
    r"^(?:the\s+|my\s+|a\s+|new\s+)?(?:" + _KIND + r"(?:\s+" + _NOUN + r")?|new\s+" + _NOUN
    + r"|alternative(?:\s+(?:phrasing|wording|" + _NOUN[3:-1] + r"))?|text|output|result)"
    r"(?:\s*\([^)\n]{0,40}\))?(?:\s+(?:is|would\s+be|could\s+be))?\s*:[ \t]*(?:\n+|(?=\S)|$)",
    re.IGNORECASE,
)
_ORIGINAL = re.compile(r"^(?:original|source|input)(?:\s+" + _NOUN + r")?\s*:", re.IGNORECASE)
_INTERJECTION = re.compile(
    r"^(sure(?:\s+thing)?|certainly|of\s+course|absolutely|okay|ok|great|alright|no\s+problem)\b[!.,]*[ \t]*",
    re.IGNORECASE,
)
# Blocks that talk about the paraphrase rather than being one.
_COMMENTARY = re.compile(
    r"^(?:this\s+(?:version|paraphrase|rewrite|rephrasing|revised|rewritten|new|sentence|keeps|maintains|"
    r"preserves|conveys|retains|captures|uses|changes)|the\s+(?:paraphrase|rewrite|revised|rewritten|rephrased|"
    r"new\s+version|original)|in\s+this\s+(?:version|paraphrase|rewrite)|i\s+(?:changed|replaced|rephrased|"
    r"reworded|rewrote|kept|used|made)|i\s+hope\s+this|let\s+me\s+know|note\s*:|explanation\s*:|changes(?:\s+made)?\s*:|"
    r"\(note|\(this|key\s+changes|alternatively)",
    re.IGNORECASE,
)
_QUOTES = {'"': '"', "“": "”", "'": "'", "‘": "’", "«": "»", "`": "`"}


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text).strip().lower()


def _strip_wrappers(text: str, source: str) -> str:
    """Remove markdown bold, code fences and quotes that wrap the whole text."""
    text = text.strip()
    if "**" not in source:
        text = text.replace("**", "")
    if "__" not in source:
        text = re.sub(r"(?<!\w)__|__(?!\w)", "", text)
    fence = re.fullmatch(r"```[\w-]*\n?(.*?)\n?```", text, flags=re.DOTALL)
    if fence:
        text = fence.group(1).strip()
    for q in ('"', "“", "”"):  # a lone quote left behind by a quoted prompt or a cut-off output
        if text.count(q) + (text.count("”") if q == "“" else text.count("“") if q == "”" else 0) == 1:
            if text.startswith(q) and not source.lstrip().startswith(q):
                text = text[1:].strip()
            elif text.endswith(q) and not source.rstrip().endswith(q):
                text = text[:-1].strip()
    for _ in range(2):  # '"text"' inside a fence, or nested quotes
        if len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]] and _wraps(text):
            if not (source.lstrip().startswith(text[0]) and source.rstrip().endswith(text[-1])):
                text = text[1:-1].strip()
                continue
        break
    return text


def _wraps(text: str) -> bool:
    """True when text[0] and text[-1] are one pair of quotes, not '"a" and "b"'.

    Inside, a quote between two word characters is an apostrophe; any other one closes
    (after a non-space) or opens (before a non-space) a nested quote, which must balance.
    """
    opening, closing = text[0], text[-1]
    depth = 0
    inner = text[1:-1]
    for i, ch in enumerate(inner):
        if ch not in (opening, closing):
            continue
        before = inner[i - 1] if i > 0 else " "
        after = inner[i + 1] if i + 1 < len(inner) else " "
        if before.isalnum() and after.isalnum():
            continue  # don't, France's
        if (ch == closing and not before.isspace()) and (opening == closing or ch != opening):
            if depth == 0:
                return False  # the first quote closes inside: '"a" and "b"'
            depth -= 1
        else:
            depth += 1
    return depth == 0


def _strip_preamble(text: str, source: str) -> str:
    """Drop leading interjections, "Here is …:" lines and labels, repeatedly."""
    source_start = _INTERJECTION.match(source.strip())
    for _ in range(6):
        before = text
        text = text.lstrip()
        m = _INTERJECTION.match(text)
        # "Sure, I can help" is content when the source itself opens that way
        if m and not (source_start and _norm(source_start.group(1)) == _norm(m.group(1))):
            text = text[m.end():]
        m = _HERE.match(text.lstrip())
        if m:
            text = text.lstrip()[m.end():]
        m = _LABEL.match(text.lstrip().lstrip("*#> "))
        if m:
            text = text.lstrip().lstrip("*#> ")[m.end():]
        text = text.lstrip().lstrip("*").lstrip()
        if text == before.lstrip().lstrip("*").lstrip() and text == before:
            break
    return text.strip()


def _drop_echoed_original(text: str, source: str) -> str:
    """Remove an "Original text: …" block and any block that is a verbatim copy of the source."""
    lines = text.split("\n")
    out: list[str] = []
    skipping = False
    for line in lines:
        bare = line.strip().lstrip("*#> ").strip()
        if _ORIGINAL.match(bare):
            skipping = True
            continue
        if skipping:
            # the echo ends at a blank line or at the label of the paraphrase
            if not bare or _LABEL.match(bare) or _HERE.match(bare):
                skipping = False
                if not bare:
                    continue
            else:
                continue
        out.append(line)
    text = "\n".join(out).strip()
    blocks = _blocks(text)
    if len(blocks) > 1:
        src = _norm(source)
        kept = [b for b in blocks if _norm(_strip_wrappers(_strip_preamble(b, source), source)) != src]
        if kept and not _COMMENTARY.match(kept[0].lstrip("*#>( ")):
            text = "\n\n".join(kept)
    return text


def _blocks(text: str) -> list[str]:
    return [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]


def _cut_commentary(text: str, source: str) -> str:
    """Keep blocks until the kept text is a plausible paraphrase; stop at commentary blocks."""
    blocks = _blocks(text)
    if not blocks:
        return ""
    source_blocks = max(1, len(_blocks(source)))
    source_len = len(source.strip())
    while len(blocks) > 1 and blocks[0].rstrip("* ").endswith(":") and not source.rstrip().endswith(":"):
        blocks = blocks[1:]  # an intro the patterns missed: "Yes, I can rephrase the text to:"
    kept: list[str] = []
    for block in blocks:
        first_line = block.lstrip("*#>( ")
        if kept and _COMMENTARY.match(first_line) and not _COMMENTARY.match(source.strip()):
            break
        if kept and len(kept) >= source_blocks and sum(map(len, kept)) >= 0.6 * source_len:
            break  # already a whole paraphrase: what follows is commentary or a second attempt
        kept.append(block)
    # a commentary line glued under the paraphrase with a single newline
    lines = "\n\n".join(kept).split("\n")
    while len(lines) > 1 and _COMMENTARY.match(lines[-1].strip().lstrip("*( ")) and not _COMMENTARY.match(
        source.strip().split("\n")[-1]
    ):
        lines.pop()
    return "\n".join(lines).strip()


def extract_paraphrase(raw: str, source: str) -> str:
    """The paraphrase inside a raw model output, or "" when nothing usable is left.

    Strips preambles ("Sure! Here's a rephrased version:"), labels ("Paraphrase:"), echoed
    "Original text:" blocks, commentary after the paraphrase, wrapping quotes and bold markers.
    ``source`` makes it careful: text the source itself contains (a leading "Sure,", quotes,
    several paragraphs) is kept.
    """
    text = (raw or "").replace("\r\n", "\n").strip()
    if not text:
        return ""
    text = _drop_echoed_original(text, source)
    text = _strip_preamble(text, source)
    text = _cut_commentary(text, source)
    text = _strip_wrappers(text, source)
    text = _strip_preamble(text, source)  # labels that sat inside quotes or bold
    text = _strip_wrappers(text, source)
    return text if re.search(r"\w", text) else ""



def trim_unfinished(text: str) -> str:
    """Drop the sentence a row was cut off in when it ran out of new tokens (keep it if it is the only one)."""
    text = text.strip()
    ends = [m.end() for m in re.finditer(r"[.!?][\"'”’)\]]*(?=\s|$)", text)]
    return text[: ends[-1]].strip() if ends else text

