"""The store under hostile use: delete removes what a run wrote beside it, --force under a live stepper stops that
stepper with a message, and read-only commands never create or change a file that is not (yet) a store."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from mars_core.cli.main import main
from mars_core.data.pairs import PreferencePair
from mars_core.model.checkpoints import checkpoint_state, new_run_folder
from mars_core.store.sqlite import EpochRecord, Store
from tests.hostile.test_signals import start_run, wait_until_stepping


def pairs(n: int, prefix: str) -> list[PreferencePair]:
    return [PreferencePair(id=f"{prefix}{i}", prompt="Q?", chosen=f"good {i}", rejected=f"bad {i}") for i in range(n)]


def checkpoint(folder: Path) -> dict:
    """A real checkpoint folder on disk (config + weights files) and the state the store keeps for it."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0" * 4096)
    return checkpoint_state(folder, 1, "packaged:minilm")


def run_with_checkpoints(store: Store, folder: Path, epochs: int = 2) -> int:
    run_id = store.create_run("ft", {}, "demo", pairs(4, "p"), pairs(2, "t"),
                              epoch0=EpochRecord(0, {}, model_state=checkpoint(folder / "epoch-0")))
    for epoch in range(1, epochs):
        store.commit_epoch(run_id, EpochRecord(epoch, {}, model_state=checkpoint(folder / f"epoch-{epoch}")))
    return run_id


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_delete_removes_the_runs_checkpoints_and_nothing_of_other_runs(tmp_path, capsys):
    db = tmp_path / "mars.db"
    store = Store(db)
    mine, other = new_run_folder(db), new_run_folder(db)
    first = run_with_checkpoints(store, mine)
    second = run_with_checkpoints(store, other)
    elsewhere = tmp_path / "kept-by-the-user" / "run-x"
    third = run_with_checkpoints(store, elsewhere, epochs=1)
    assert main(["delete", "--db", str(db), "--run", str(first)]) == 0
    out = capsys.readouterr().out
    assert f"deleted run {first}" in out and "and its checkpoints" in out and str(mine.resolve()) in out
    assert not mine.exists() and (other / "epoch-1" / "model.safetensors").exists()
    assert [r.id for r in store.list_runs()] == [second, third]
    assert main(["delete", "--db", str(db), "--run", str(third)]) == 0
    assert (elsewhere / "epoch-0" / "config.json").exists(), "a checkpoint outside <db>-runs/ is the user's"


def test_delete_force_during_a_step_stops_the_stepper_with_a_message_not_a_traceback(hostile, tmp_path, capsys):
    server = hostile("delay", delay_s=3.0)  # answers, slowly: the step is inside epoch 1 when the delete comes
    db, log = tmp_path / "runs.db", tmp_path / "stderr.txt"
    proc = start_run(db, server.spec(), log)
    try:
        wait_until_stepping(db, proc, log)
        assert main(["delete", "--db", str(db), "--run", "1"]) == 2
        assert "is being stepped by" in capsys.readouterr().err
        assert main(["delete", "--db", str(db), "--run", "1", "--force"]) == 0
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    err = log.read_text()
    assert code == 3, err[-2000:]
    assert "epoch 1 not stored: run 1 was deleted from" in err
    assert "Traceback" not in err and "IntegrityError" not in err
    assert Store(db, read_only=True).list_runs() == []


@pytest.mark.parametrize("command", [["runs"], ["export", "--run", "1", "--out", "x.jsonl"], ["delete", "--run", "1"]])
def test_a_read_only_or_delete_command_never_writes_a_store_into_a_file_that_is_not_one(tmp_path, capsys, command):
    empty = tmp_path / "empty.db"
    empty.touch()
    text = tmp_path / "notes.db"
    text.write_text("my notes, not a database\n" * 50)
    before = digest(text)
    for path, why in ((empty, "is an empty file, not a MARS store"), (text, "is not a MARS store")):
        assert main([*command, "--db", str(path)]) == 2
        assert why in capsys.readouterr().err
    assert empty.stat().st_size == 0 and digest(text) == before
    missing = tmp_path / "missing" / "mars.db"
    assert main([*command, "--db", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err and not missing.parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "notes.db"], "no -wal, -shm or export left"


def test_reading_a_real_store_leaves_its_file_unchanged(tmp_path, capsys):
    db = tmp_path / "mars.db"
    run_with_checkpoints(Store(db), new_run_folder(db), epochs=1)
    time.sleep(0.05)
    before, mtime = digest(db), os.stat(db).st_mtime_ns
    assert main(["runs", "--db", str(db)]) == 0 and "ft" in capsys.readouterr().out
    assert main(["export", "--db", str(db), "--run", "1", "--out", str(tmp_path / "out.jsonl")]) == 0
    assert digest(db) == before and os.stat(db).st_mtime_ns == mtime
    with pytest.raises(Exception, match="readonly"):  # SQLite itself refuses a write through a read-only store
        Store(db, read_only=True).delete_run(1)
