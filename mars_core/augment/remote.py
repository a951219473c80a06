"""The limits of one Step's remote work: a deadline shared by every request, a stop flag, and where retries show.

A Step opens ``remote_work(seconds, progress)`` around itself; a remote paraphraser reads ``current()`` when a
call starts and hands it to its worker threads (threads do not inherit context variables). So every request of
the Step, in every paraphrase round and contrast rewrite, stops when the Step's deadline passes, and a failure
or a retry reaches the Step's progress line instead of only a log. Outside a Step (a test, a notebook)
``current()`` gives a fresh deadline per call.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

DEFAULT_DEADLINE_S = 600.0
logger = logging.getLogger(__name__)

Progress = Callable[..., None]  # progress(stage, done, total, detail="")


@dataclass
class RemoteWork:
    """The deadline (time.monotonic) of the remote work in force, who hears about failures, and a stop flag."""

    deadline: float
    seconds: float
    progress: Progress | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def expired(self) -> bool:
        return self.stop.is_set() or self.left() <= 0

    def why_stopped(self) -> str:
        if self.stop.is_set():
            return "stopped (interrupted)"
        return f"the Step's deadline for remote paraphrasing ({self.seconds:g} s, --remote-deadline) passed"

    def report(self, done: int, total: int, detail: str) -> None:
        if self.progress is None:
            return
        try:  # called from worker threads: a progress display that fails must not take a request with it
            self.progress("paraphrasing", done, total, detail)
        except Exception:  # noqa: BLE001
            logger.debug("progress report failed", exc_info=True)


_current: contextvars.ContextVar[RemoteWork | None] = contextvars.ContextVar("mars_remote_work", default=None)


def check_deadline(seconds: float) -> float:
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"the remote deadline must be a positive number of seconds, got {seconds!r}")
    return float(seconds)


@contextmanager
def remote_work(seconds: float, progress: Progress | None = None) -> Iterator[RemoteWork]:
    """Remote calls made inside share one deadline ``seconds`` from now and report to ``progress``."""
    work = RemoteWork(time.monotonic() + check_deadline(seconds), float(seconds), progress)
    token = _current.set(work)
    try:
        yield work
    finally:
        work.stop.set()  # worker threads still waiting on a server give up at their next check
        _current.reset(token)


def current(default_seconds: float = DEFAULT_DEADLINE_S) -> RemoteWork:
    """The remote work in force, or a fresh one of ``default_seconds`` (a call outside any Step)."""
    work = _current.get()
    return work if work is not None else RemoteWork(time.monotonic() + default_seconds, default_seconds)
