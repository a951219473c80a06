"""The step lock: one owner format, one staleness rule; a holder killed with SIGKILL frees it at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mars_core.data.pairs import PreferencePair
from mars_core.store import locks
from mars_core.store.sqlite import Store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_HOLDER = textwrap.dedent(
    """
    import sys, time
    from mars_core.store.locks import new_owner
    from mars_core.store.sqlite import Store

    owner = new_owner()
    assert Store(sys.argv[1]).acquire_step_lock(1, owner)
    print(owner, flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(tmp_path / "mars.db")
    store.create_run("r", {}, "demo", [PreferencePair("p0", "x", "good", "bad")], [])
    return store


def _holder(path) -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": ROOT})
    return child, child.stdout.readline().strip()


def _exited_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_owner_format_round_trips_and_names_this_process():
    owner = locks.new_owner()
    parsed = locks.LockOwner.parse(owner)
    assert parsed == locks.LockOwner(locks.HOST, os.getpid(), owner.rsplit(":", 1)[1])
    assert str(parsed) == owner
    assert locks.new_owner() != owner, "two holders in one process get different tokens"
    for legacy in ("step-140234-1733.5", "tab-1", "", None, "host:notapid:tok"):
        assert locks.LockOwner.parse(legacy) is None


def test_staleness_rule():
    now = 1_000_000.0
    dead = f"{locks.HOST}:{_exited_pid()}:abcd"
    assert locks.owner_alive(dead) is False
    assert locks.is_stale(dead, lock_time=now, now=now), "a gone process frees the lock at once, however fresh"
    parent = f"{locks.HOST}:{os.getppid()}:abcd"
    assert locks.owner_alive(parent) is True and not locks.is_stale(parent, now - 10 * 3600, now)
    for unknown in ("otherhost:4242:beef", "step-1-2"):  # cannot be checked from here: judged by age
        assert locks.owner_alive(unknown) is None
        assert not locks.is_stale(unknown, now - 60, now)
        assert locks.is_stale(unknown, now - locks.LOCK_MAX_AGE_S - 1, now)


def test_this_process_holds_only_what_it_acquired(store):
    mine = locks.new_owner()
    assert locks.owner_alive(mine) is False, "an owner of this process that holds nothing is not alive"
    assert store.acquire_step_lock(1, mine)
    assert locks.owner_alive(mine) is True
    other_tab = locks.new_owner()
    assert not store.acquire_step_lock(1, other_tab), "a second tab in the same process is refused"
    store.release_step_lock(1, mine)
    assert locks.owner_alive(mine) is False
    assert store.acquire_step_lock(1, other_tab)


def test_a_holder_killed_with_sigkill_frees_the_lock_at_once(store):
    child, owner = _holder(store.path)
    try:
        assert store.step_lock_owner(1) == owner
        assert not store.acquire_step_lock(1, locks.new_owner()), "a live holder keeps the lock"
        status = store.step_lock(1)
        assert status.alive and "being stepped by " + owner in status.describe()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert store.step_lock(1).alive is False
    successor = locks.new_owner()
    assert store.acquire_step_lock(1, successor), "the dead holder's lock is taken over without waiting"
    assert store.step_lock_owner(1) == successor


def test_an_unreaped_killed_holder_counts_as_gone(store):
    child, owner = _holder(store.path)
    try:
        child.send_signal(signal.SIGKILL)
        for _ in range(100):  # wait until it is a zombie, without reaping it
            if locks.owner_alive(owner) is False:
                break
            time.sleep(0.05)
        assert locks.owner_alive(owner) is False
        assert store.acquire_step_lock(1, locks.new_owner())
    finally:
        child.kill()
        child.wait(timeout=30)
