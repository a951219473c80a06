"""The dataset shapes we read, each turning one raw record into (prompt, chosen, rejected), and detection.

A converter raises RowError naming the field at fault; the loader turns that into a skipped row or,
in strict mode, a DataError. Detection looks at the columns of the whole file and at the kind of
value 'chosen' holds over the first DETECT_ROWS rows, so one odd row cannot decide a file's format.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mars_core.data.errors import DataError, RowError, describe_type
from mars_core.data.readers import Record, has_invalid_bytes

FORMATS = ("generic", "hh-rlhf", "pku-saferlhf", "ultrafeedback", "shp", "summarize")
AXES = ("helpful", "harmless")
HH_ASSISTANT = "\n\nAssistant:"
HH_HUMAN = "\n\nHuman:"
DETECT_ROWS = 500  # rows whose 'chosen' values vote on generic / HH-RLHF / UltraFeedback


class Triple(NamedTuple):
    prompt: str
    chosen: str
    rejected: str
    chosen_field: str
    rejected_field: str


# ---------------------------------------------------------------------------------------------
# Field validation shared by the schemas
# ---------------------------------------------------------------------------------------------


def _text(rec: Mapping[str, Any], name: str) -> str:
    """A non-empty string, or a RowError saying what is wrong with the field."""
    if name not in rec:
        raise RowError(name, "missing in this row")
    value = rec[name]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise RowError(name, "missing value (null)")
    if not isinstance(value, str):
        raise RowError(name, f"expected text, got {describe_type(value)}")
    if has_invalid_bytes(value):
        raise RowError(name, "text holds bytes that are not valid UTF-8")
    if not value.strip():
        raise RowError(name, "empty text" if not value else "text is only whitespace")
    return value


def _label(rec: Mapping[str, Any], name: str) -> int:
    """A 0/1 label; CSV gives strings and Parquet may give floats, so both are accepted when exact."""
    if name not in rec:
        raise RowError(name, "missing in this row")
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
        raise RowError(name, f"label must be 0 or 1, got {value!r}")
    return parsed


def _structured(rec: Mapping[str, Any], name: str, kind: type) -> Any:
    """A list/dict field; a JSON string is accepted so the nested schemas also work from CSV."""
    if name not in rec:
        raise RowError(name, "missing in this row")
    value = rec[name]
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowError(name, f"malformed JSON in this field ({exc.msg})") from exc
    if not isinstance(value, kind):
        expected = "a list" if kind is list else "an object"
        raise RowError(name, f"expected {expected}, got {describe_type(value)}")
    return value


# ---------------------------------------------------------------------------------------------
# One converter per schema: a record in, (prompt, chosen, rejected) out
# ---------------------------------------------------------------------------------------------


def _generic_row(rec: Mapping[str, Any], axis: str) -> Triple:
    chosen, rejected = _text(rec, "chosen").strip(), _text(rec, "rejected").strip()
    return Triple(_text(rec, "prompt"), chosen, rejected, "chosen", "rejected")


def split_hh_dialogue(dialogue: str) -> tuple[str, str]:
    """(prompt up to and including the last '\\n\\nAssistant:', final assistant response)."""
    cut = dialogue.rfind(HH_ASSISTANT)
    if cut < 0:
        raise ValueError("no '\\n\\nAssistant:' turn in the dialogue")
    prompt, response = dialogue[: cut + len(HH_ASSISTANT)], dialogue[cut + len(HH_ASSISTANT) :]
    if HH_HUMAN in response:
        raise ValueError("the dialogue ends with a Human turn, not an assistant response")
    return prompt, response.strip()


def _hh_row(rec: Mapping[str, Any], axis: str) -> Triple:
    parts = {}
    for name in ("chosen", "rejected"):
        try:
            parts[name] = split_hh_dialogue(_text(rec, name))
        except ValueError as exc:
            raise RowError(name, str(exc)) from exc
        if not parts[name][1]:
            raise RowError(name, "the final assistant response is empty")
    (prompt, chosen), (other_prompt, rejected) = parts["chosen"], parts["rejected"]
    if prompt != other_prompt:
        raise RowError("rejected", "the dialogue differs from 'chosen' before the final assistant turn")
    return Triple(prompt, chosen, rejected, "chosen", "rejected")


def _pku_row(rec: Mapping[str, Any], axis: str) -> Triple:
    prompt = _text(rec, "prompt")
    responses = [_text(rec, "response_0").strip(), _text(rec, "response_1").strip()]
    best = _label(rec, PKU_LABEL[axis])
    return Triple(prompt, responses[best], responses[1 - best], f"response_{best}", f"response_{1 - best}")


def _messages(rec: Mapping[str, Any], name: str) -> list[dict[str, str]]:
    messages = _structured(rec, name, list)
    if not messages:
        raise RowError(name, "empty list of messages")
    for i, m in enumerate(messages):
        if isinstance(m, np.ndarray):
            m = m.tolist()
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise RowError(name, f"message {i} is not an object with text 'role' and 'content'")
    if messages[-1]["role"] != "assistant":
        raise RowError(name, f"the last message is from '{messages[-1]['role']}', not the assistant")
    if not messages[-1]["content"].strip():
        raise RowError(name, "the final assistant message is empty")
    if has_invalid_bytes(messages):
        raise RowError(name, "text holds bytes that are not valid UTF-8")
    return messages


def _render_messages(messages: Sequence[Mapping[str, str]]) -> str:
    """A single user turn is the prompt itself; longer histories keep their speakers."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def _ultrafeedback_row(rec: Mapping[str, Any], axis: str) -> Triple:
    chosen, rejected = _messages(rec, "chosen"), _messages(rec, "rejected")
    history = chosen[:-1]
    if [(m["role"], m["content"]) for m in history] != [(m["role"], m["content"]) for m in rejected[:-1]]:
        raise RowError(
            "rejected", "the conversation differs from 'chosen' before the final assistant message"
        )
    if "prompt" in rec:
        prompt = _text(rec, "prompt")
    elif history:
        prompt = _render_messages(history)
        if not prompt.strip():
            raise RowError("chosen", "the conversation before the final answer is empty")
    else:
        raise RowError("chosen", "no 'prompt' column and no messages before the final answer")
    return Triple(
        prompt, chosen[-1]["content"].strip(), rejected[-1]["content"].strip(), "chosen", "rejected"
    )


def _shp_row(rec: Mapping[str, Any], axis: str) -> Triple:
    prompt = _text(rec, "history")
    a, b = _text(rec, "human_ref_A").strip(), _text(rec, "human_ref_B").strip()
    if _label(rec, "labels") == 1:
        return Triple(prompt, a, b, "human_ref_A", "human_ref_B")
    return Triple(prompt, b, a, "human_ref_B", "human_ref_A")


def _summarize_row(rec: Mapping[str, Any], axis: str) -> Triple:
    info = _structured(rec, "info", dict)
    body_key = "post" if "post" in info or "article" not in info else "article"
    try:
        body = _text(info, body_key)
    except RowError as exc:
        raise RowError(f"info.{body_key}", exc.reason) from exc
    lines = []
    for key, label in (("subreddit", "SUBREDDIT: r/"), ("title", "TITLE: ")):
        if isinstance(info.get(key), str) and info[key].strip():
            lines.append(label + info[key].strip())
    prompt = "\n".join([*lines, ("POST: " if lines else "") + body.strip()])
    summaries = _structured(rec, "summaries", list)
    if len(summaries) != 2:
        raise RowError("summaries", f"expected 2 summaries, got {len(summaries)}")
    texts = []
    for i, s in enumerate(summaries):
        if not isinstance(s, dict):
            raise RowError(f"summaries[{i}]", f"expected an object with 'text', got {describe_type(s)}")
        try:
            texts.append(_text(s, "text").strip())
        except RowError as exc:
            raise RowError(f"summaries[{i}].text", exc.reason) from exc
    choice = _label(rec, "choice")
    return Triple(
        prompt, texts[choice], texts[1 - choice], f"summaries[{choice}].text", f"summaries[{1 - choice}].text"
    )


@dataclass(frozen=True)
class Schema:
    required: tuple[str, ...]
    convert: Callable[[Mapping[str, Any], str], Triple]


SCHEMAS: dict[str, Schema] = {
    "generic": Schema(("prompt", "chosen", "rejected"), _generic_row),
    "hh-rlhf": Schema(("chosen", "rejected"), _hh_row),
    "pku-saferlhf": Schema(("prompt", "response_0", "response_1"), _pku_row),
    "ultrafeedback": Schema(("chosen", "rejected"), _ultrafeedback_row),
    "shp": Schema(("history", "human_ref_A", "human_ref_B", "labels"), _shp_row),
    "summarize": Schema(("info", "summaries", "choice"), _summarize_row),
}
PKU_LABEL = {"helpful": "better_response_id", "harmless": "safer_response_id"}
FIELDS = tuple(dict.fromkeys([*(n for s in SCHEMAS.values() for n in s.required), *PKU_LABEL.values()]))


def required_columns(format: str, axis: str = "helpful") -> tuple[str, ...]:
    """The columns a format needs (PKU-SafeRLHF: plus the label of the chosen axis)."""
    if format not in FORMATS or axis not in AXES:
        raise ValueError(f"format must be one of {', '.join(FORMATS)} and axis one of {', '.join(AXES)}")
    extra = (PKU_LABEL[axis],) if format == "pku-saferlhf" else ()
    return SCHEMAS[format].required + extra


# ---------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------

_CHAT_FAMILY = ("generic", "hh-rlhf", "ultrafeedback")  # all three have 'chosen' and 'rejected'
_KIND_NAMES = {"generic": "plain text", "hh-rlhf": "HH-RLHF dialogues", "ultrafeedback": "chat messages"}


def detect_format(
    path: Path, columns: Sequence[str], file_columns: Sequence[str], records: Sequence[Record]
) -> str:
    """The one format the file's columns fit; generic, HH-RLHF and UltraFeedback share 'chosen' and
    'rejected', so there the kind of value 'chosen' holds over the first DETECT_ROWS rows decides."""
    cols = set(columns)
    hint = ""
    fits = [f for f in FORMATS if set(SCHEMAS[f].required) <= cols]
    if "pku-saferlhf" in fits and not cols & set(PKU_LABEL.values()):
        fits.remove("pku-saferlhf")
    if set(_CHAT_FAMILY) & set(fits):
        keep, hint = _vote_chat_family(records, "prompt" in cols)
        fits = [f for f in fits if f not in _CHAT_FAMILY or f == keep]
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
    needs = "; ".join(f"{f}: {', '.join(required_columns(f))}" for f in FORMATS)
    raise DataError(
        path,
        None,
        None,
        f"unknown format: columns [{found}] fit none of the known formats{hint} "
        f"({needs}); pass format= and column_map= if your columns have other names",
    )


def _chosen_kind(value: Any, has_prompt: bool) -> str | None:
    """Which of the chat family one 'chosen' value looks like, or None when it fits none."""
    if isinstance(value, str) and value.strip()[:1] == "[":
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if isinstance(value, list | np.ndarray):
        return "ultrafeedback"
    if not isinstance(value, str):
        return None
    if has_prompt:
        return "generic"
    return "hh-rlhf" if HH_ASSISTANT in value else None


def _vote_chat_family(records: Sequence[Record], has_prompt: bool) -> tuple[str | None, str]:
    """(the kind most rows' 'chosen' holds, or None; a hint for the error when None)."""
    votes: Counter[str | None] = Counter()
    for rec in records:
        if rec.values is not None and rec.values.get("chosen") is not None:
            votes[_chosen_kind(rec.values["chosen"], has_prompt)] += 1
            if votes.total() >= DETECT_ROWS:
                break
    ranked = [(n, kind) for kind, n in votes.most_common() if kind is not None]
    if ranked and (len(ranked) == 1 or ranked[0][0] > ranked[1][0]):
        return ranked[0][1], ""
    sampled = f"the first {votes.total()} rows with a value"
    if ranked:
        tied = " and ".join(f"{_KIND_NAMES[k]} in {n}" for n, k in ranked[:2])
        return None, f" ('chosen' holds {tied} of {sampled})"
    if has_prompt:
        return None, f" ('chosen' holds neither text nor lists of chat messages in {sampled})"
    return None, (
        " ('chosen' holds neither HH-RLHF dialogues nor lists of chat messages,"
        " and there is no 'prompt' column for the generic format)"
    )
