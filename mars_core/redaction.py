"""The one redaction every string leaving the process passes through: logs, errors, progress, stored and exported text.

What it hides: the configured API key (read from the same environment variables the OpenAI-compatible
paraphraser reads, at call time, so a key set later is covered too), any extra secret a caller registers,
and anything shaped like a credential even when it is not ours: ``Bearer <token>`` and ``sk-…`` keys.
A server that echoes the key back in an error body, a header or even an "answer" cannot get it into a
log line, a progress detail, a stored verdict or an exported file, as long as the text went through here.

No dependencies beyond the standard library: every layer may import it.
"""

from __future__ import annotations

import logging
import os
import re
import threading

KEY_ENVS = ("MARS_OPENAI_API_KEY", "OPENAI_API_KEY")  # the paraphraser reads the same names (augment/paraphraser)
MASK = "[redacted]"
MIN_SECRET_LENGTH = 6  # shorter "keys" would mask ordinary words

_PATTERNS = (
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{6,}"),  # Authorization: Bearer <token>
    re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"),  # OpenAI-style keys (sk-..., sk-proj-...)
)
_extra: set[str] = set()
_extra_guard = threading.Lock()


def register_secret(secret: str | None) -> None:
    """Also hide this exact string from now on (e.g. a key passed in some other way than the environment)."""
    if secret and len(secret.strip()) >= MIN_SECRET_LENGTH:
        with _extra_guard:
            _extra.add(secret.strip())


def secrets_in_force() -> list[str]:
    """The exact strings hidden besides the patterns: configured keys and registered secrets, longest first."""
    found = {os.environ.get(name, "").strip() for name in KEY_ENVS}
    with _extra_guard:
        found |= _extra
    return sorted((s for s in found if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def redact(text: object) -> str:
    """``text`` as a string with every secret replaced by [redacted]."""
    out = text if isinstance(text, str) else str(text)
    for secret in secrets_in_force():
        out = out.replace(secret, MASK)
    out = _PATTERNS[0].sub(lambda m: f"{m.group(1)} {MASK}", out)
    return _PATTERNS[1].sub(MASK, out)


class RedactingFilter(logging.Filter):
    """A handler filter: the record's message (arguments and traceback included) is redacted before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record still gets written, redacted as far as possible
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text, record.exc_info = redact(record.exc_text), None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install_log_filter(*loggers: logging.Logger) -> None:
    """Put the redacting filter on every handler of the root logger (and of the loggers named); idempotent.

    Filters sit on handlers because a logger's own filters do not see records propagated from its children.
    """
    known = [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    targets = [logging.getLogger(), *known, *loggers]  # e.g. streamlit's loggers keep handlers of their own
    handlers = [h for logger in targets for h in logger.handlers]
    if logging.lastResort is not None:  # what writes a record when no handler is configured
        handlers.append(logging.lastResort)
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
