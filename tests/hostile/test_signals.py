"""Ctrl-C, SIGTERM and SIGKILL on a real `python -m mars_core run` stuck on a server that never answers.

The run is a real subprocess: epoch 0 is stored, then epoch 1 waits on the silent loopback server with the
step lock held. SIGINT and SIGTERM stop it within 5 s with exit code 130, the lock released and epoch 0 kept;
SIGKILL leaves a lock whose holder is gone, which `runs` reports and the next step takes over.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mars_core.cli.main import main
from mars_core.store.sqlite import Store, StoreError

ROOT = Path(__file__).resolve().parents[2]
RUN = ["--data", "demo", "--pairs", "40", "--folds", "0", "--budget", "4", "--epochs", "2"]


def start_run(db: Path, spec: str, log: Path, *extra: str) -> subprocess.Popen:
    # PYTHONFAULTHANDLER: a run that hangs is sent SIGABRT, and its log then shows where each thread was
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    # Ctrl-C as at a terminal: a suite started in the background (`.ci/run &`) hands its children SIGINT ignored,
    # and Python then keeps it ignored; such a run rightly ignores Ctrl-C, but that is not what is tested here
    return subprocess.Popen(
        [sys.executable, "-m", "mars_core", "run", *RUN, "--paraphraser", spec, "--db", str(db), *extra],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - one signal, no locks
    )


def wait_until_stepping(db: Path, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Until epoch 0 is stored and the step lock of epoch 1 is held (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended early ({proc.returncode}): {log.read_text()[-2000:]}")
        if db.exists():
            try:
                store = Store(db, read_only=True)
                if store.list_runs() and store.step_lock(1) is not None:
                    return
            except StoreError:
                pass  # created, schema not written yet
        time.sleep(0.3)
    proc.kill()
    pytest.fail(f"the run never reached epoch 1 within {timeout} s: {log.read_text()[-2000:]}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_run_stuck_on_a_silent_server_within_5_s(hostile, tmp_path, signum):
    server = hostile("silent")
    db, log = tmp_path / "runs.db", tmp_path / "stderr.txt"
    proc = start_run(db, server.spec(), log)
    try:
        wait_until_stepping(db, proc, log)
        time.sleep(1.0)  # well inside the Step: the request is out, the server holds it
        sent = time.monotonic()
        proc.send_signal(signum)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            proc.wait(10)
            stacks = log.read_text().split("\nExtension modules:")[0]  # the threads' stacks, not the module list
            pytest.fail(f"{signum.name} did not stop the run in 10 s; where it was:\n{stacks[-6000:]}")
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    err = log.read_text()
    assert took < 5, f"stopped after {took:.1f} s"
    assert code == 130, err[-2000:]
    assert "Traceback" not in err
    assert "run 1 keeps epochs 0 to 0; epoch 1 was not stored" in err
    store = Store(db, read_only=True)
    assert store.last_epoch(1) == 0, "the stored epoch is kept"
    assert store.step_lock(1) is None, "the lock was released"


def test_sigkill_leaves_whole_epochs_and_a_lock_that_is_known_to_be_dead(hostile, tmp_path, capsys):
    server = hostile("silent")
    db, log = tmp_path / "runs.db", tmp_path / "stderr.txt"
    proc = start_run(db, server.spec(), log)
    try:
        wait_until_stepping(db, proc, log)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = Store(db, read_only=True)
    lock = store.step_lock(1)
    assert store.last_epoch(1) == 0 and lock is not None and lock.alive is False and lock.stale
    assert main(["runs", "--db", str(db)]) == 0
    assert "lock of a process that no longer exists" in capsys.readouterr().out
