"""Who may step a run: one lock-owner format and one staleness rule for the store, the CLI and the app.

An owner is ``host:pid:token``. The token tells apart two holders in one process (two browser
tabs served by one Streamlit server); host and pid let anyone on the same machine ask the
operating system whether the holder still exists. That is what frees the lock of a process
killed with SIGKILL at once, instead of after a timeout. Holders we cannot check (another
host, an owner string in an older format) keep the lock until it is ``LOCK_MAX_AGE_S`` old.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

HOST = socket.gethostname()
LOCK_MAX_AGE_S = 3600.0  # only for owners whose process cannot be checked from here

_held: set[str] = set()  # owners this process holds right now (the store adds and drops them)
_held_guard = threading.Lock()


@dataclass(frozen=True)
class LockOwner:
    host: str
    pid: int
    token: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"

    @classmethod
    def parse(cls, text: str | None) -> LockOwner | None:
        """The owner's parts, or None for a string in another format (e.g. an older release's)."""
        if not text:
            return None
        parts = text.rsplit(":", 2)  # a host name never holds ':', but rsplit keeps IPv6-ish hosts whole
        if len(parts) != 3 or not parts[1].isdigit() or not parts[0] or not parts[2]:
            return None
        return cls(parts[0], int(parts[1]), parts[2])


def new_owner() -> str:
    """A fresh owner for this process: ``host:pid:token``."""
    return str(LockOwner(HOST, os.getpid(), uuid.uuid4().hex[:8]))


def mark_held(owner: str) -> None:
    with _held_guard:
        _held.add(owner)


def mark_released(owner: str) -> None:
    with _held_guard:
        _held.discard(owner)


def owner_alive(owner: str | None) -> bool | None:
    """True if the holder still runs, False if it is certainly gone, None if that cannot be told from here."""
    parsed = LockOwner.parse(owner)
    if parsed is None or parsed.host != HOST:
        return None
    if parsed.pid == os.getpid():  # this process: alive only while one of its threads holds it
        with _held_guard:
            return owner in _held
    return _pid_running(parsed.pid)


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:  # a killed child nobody has reaped yet is a zombie: it holds nothing
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def is_stale(owner: str | None, lock_time: float | None, now: float | None = None,
             max_age_s: float = LOCK_MAX_AGE_S) -> bool:
    """Whether a lock may be taken over: its holder is gone, or it cannot be checked and is too old."""
    if owner is None:
        return True
    alive = owner_alive(owner)
    if alive is not None:
        return not alive
    now = time.time() if now is None else now
    return lock_time is None or now - lock_time > max_age_s


@dataclass(frozen=True)
class LockStatus:
    """A run's step lock as the CLI's `runs` and the app's sidebar show it."""

    owner: str
    since: float | None
    alive: bool | None  # as owner_alive
    stale: bool

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        age = "" if self.since is None else f" for {_duration(now - self.since)}"
        if self.alive:
            return f"being stepped by {self.owner}{age}"
        if self.alive is False:
            return f"lock of a process that no longer exists ({self.owner}); the next step takes it over"
        if self.stale:
            return f"old lock of {self.owner}{age}; the next step takes it over"
        return (f"locked by {self.owner}{age} (another machine or an older release: cannot be checked from "
                f"here; taken over after {_duration(LOCK_MAX_AGE_S)})")


def lock_status(owner: str | None, lock_time: float | None, now: float | None = None) -> LockStatus | None:
    if owner is None:
        return None
    return LockStatus(owner, lock_time, owner_alive(owner), is_stale(owner, lock_time, now))


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
