"""The CLI end to end on the 2-D toy (no model loads): run, runs, export, delete, and its error paths."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from mars_core.cli.main import main
from mars_core.data.pairs import PreferencePair
from mars_core.run.components import load_encoder, load_paraphraser
from mars_core.run.config import DataConfig, RefineConfig, RunConfig
from mars_core.run.refine import RefinementRun
from mars_core.store.sqlite import Store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY = ["--data", "toy", "--pairs", "60", "--budget", "20", "--folds", "0"]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_toy_run_then_runs_export_and_delete(capsys, tmp_path):
    db = tmp_path / "runs" / "mars.db"
    code, out, err = cli(capsys, "run", *TOY, "--epochs", "2", "--strategy", "mars", "--tau", "2", "--db", db)
    assert code == 0, err
    assert "run 1 in" in out and "epochs done: 2; budget spent 40 of 40" in out
    config = Store(db).get_run(1).config
    assert config["allocation"]["tau"] == 2.0 and config["data"]["source"] == "demo:toy"
    code, out, _ = cli(capsys, "runs", "--db", db)
    assert code == 0 and "epoch   2" in out and "mars" in out and "being stepped" not in out
    code, out, _ = cli(capsys, "export", "--db", db, "--run", 1, "--out", tmp_path / "aug.jsonl")
    assert code == 0 and "wrote" in out
    rows = [json.loads(line) for line in (tmp_path / "aug.jsonl").read_text().splitlines()]
    assert any(r["parent_id"] for r in rows), "the export holds the synthetic pairs"
    code, out, _ = cli(capsys, "delete", "--db", db, "--run", 1)
    assert code == 0 and "deleted run 1" in out
    assert Store(db).list_runs() == []
    code, _, err = cli(capsys, "delete", "--db", db, "--run", 1)
    assert code == 2 and "no run with id 1" in err


def test_fewer_pairs_than_folds_is_refused_before_anything_is_stored(capsys, tmp_path):
    db = tmp_path / "mars.db"
    code, _, err = cli(capsys, "run", "--data", "toy", "--pairs", "4", "--folds", "5", "--db", db)
    assert code == 2
    assert "5-fold cross-fitting needs at least 5 training pairs, but there are 3" in err and "--folds 0" in err
    assert Store(db).list_runs() == [], "no half run is left behind"


def test_strategy_none_needs_no_cross_fitting(capsys, tmp_path):
    db = tmp_path / "mars.db"
    code, out, err = cli(capsys, "run", "--data", "toy", "--pairs", "4", "--folds", "5", "--strategy", "none",
                         "--epochs", "1", "--db", db)
    assert code == 0, err
    assert Store(db).epochs(1) == [0, 1]
    assert Store(db).get_epoch(1, 1).allocation["margin_source"] == "in-sample"


def test_skipped_rows_are_shown_with_reasons_and_listed_in_full(capsys, tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(6)]
    rows[1]["rejected"] = rows[1]["chosen"]
    rows[4]["chosen"] = 7
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = tmp_path / "store" / "mars.db"
    # 4 usable pairs: the load report comes first, then the refusal (3 training pairs < 5 folds), before any model
    code, _, err = cli(capsys, "run", "--data", data, "--db", db)
    assert code == 2
    assert "pairs.jsonl: 6 rows read, 2 skipped" in err
    assert "row 2, field 'rejected': same text as 'chosen'" in err and "row 5, field 'chosen'" in err
    listing = tmp_path / "store" / "pairs.jsonl.problems.csv"
    assert f"every skipped and duplicate row: {listing}" in err and listing.read_text().count("\n") == 3
    code, _, err = cli(capsys, "run", "--data", data, "--strict", "--db", db)
    assert code == 2 and "pairs.jsonl row 2" in err and "skipped" not in err


@pytest.mark.parametrize("argv, message", [
    (["run", "--data", "toy", "--axis", "harmless"], "--axis applies to data files only"),
    (["run", "--data", "demo", "--test-data", "x.jsonl"], "--test-data applies to data files only"),
    (["run", "--data", "toy", "--noise", "0.8"], "--noise: label noise must be in [0, 0.5)"),
    (["run", "--data", "missing/file.jsonl"], "file.jsonl"),
])
def test_bad_settings_are_one_line_errors(capsys, tmp_path, argv, message):
    code, _, err = cli(capsys, *argv, "--db", tmp_path / "mars.db")
    assert code == 2 and message in err and "Traceback" not in err
    assert err.startswith("error: ")


def test_resume_refuses_flags_that_would_change_the_run(capsys, tmp_path):
    db = tmp_path / "mars.db"
    assert cli(capsys, "run", *TOY, "--epochs", "1", "--db", db)[0] == 0
    code, _, err = cli(capsys, "run", "--resume", 1, "--tau", "5", "--budget", "3", "--db", db)
    assert code == 2 and "--budget, --tau cannot change a stored run" in err


def test_db_under_a_file_is_a_clear_error(capsys, tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    code, _, err = cli(capsys, "run", *TOY, "--db", blocker / "mars.db")
    assert code == 2
    assert err.strip() == f"error: cannot create the store {blocker / 'mars.db'}: {blocker} is a file, not a folder"


def test_export_errors_name_the_path_asked_for(capsys, tmp_path):
    db = tmp_path / "mars.db"
    assert cli(capsys, "run", *TOY, "--epochs", "1", "--db", db)[0] == 0
    folder = tmp_path / "out.jsonl"
    folder.mkdir()
    code, _, err = cli(capsys, "export", "--db", db, "--run", 1, "--out", folder)
    assert code == 2 and f"cannot export to {folder}: it is a folder" in err and ".tmp" not in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = cli(capsys, "export", "--db", db, "--run", 1, "--out", blocker / "a.jsonl")
    assert code == 2 and f"{blocker} is a file, not a folder" in err
    assert not list(tmp_path.rglob("*.tmp"))
    code, _, err = cli(capsys, "export", "--db", tmp_path / "none.db", "--run", 1, "--out", tmp_path / "a.jsonl")
    assert code == 2 and "does not exist" in err and not (tmp_path / "none.db").exists()


_KILLED_WHILE_CREATING = textwrap.dedent(
    """
    import os, signal, sys
    from mars_core.run.config import DataConfig, RefineConfig, RunConfig
    from mars_core.run.refine import RefinementRun
    from mars_core.store.sqlite import Store

    def progress(stage, done, total, detail=""):
        if stage == "evaluating":  # epoch 0 is fitted, not yet stored
            os.kill(os.getpid(), signal.SIGKILL)

    config = RunConfig(data=DataConfig(source="demo:toy", n_pairs=40), refine=RefineConfig(cross_fit_folds=0))
    RefinementRun.create(Store(sys.argv[1]), config, progress=progress)
    """
)


def test_a_run_killed_while_being_created_leaves_nothing(capsys, tmp_path):
    db = tmp_path / "mars.db"
    child = subprocess.run([sys.executable, "-c", _KILLED_WHILE_CREATING, str(db)], cwd=ROOT, timeout=120,
                           env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert Store(db).list_runs() == [], "no run without epoch 0"
    code, out, _ = cli(capsys, "runs", "--db", db)
    assert code == 0 and out == ""


def test_an_interrupted_run_from_an_older_release_is_listed_and_deleted(capsys, tmp_path):
    db = tmp_path / "mars.db"
    Store(db).create_run("half", {"allocation": {"strategy": "mars"}}, "demo", [PreferencePair("p", "x", "a", "b")], [])
    code, out, _ = cli(capsys, "runs", "--db", db)
    assert "incomplete (no epoch 0)" in out and f"delete --db {db} --run 1" in out
    code, _, err = cli(capsys, "run", "--resume", 1, "--db", db)
    assert code == 2 and "delete --run 1" in err
    assert cli(capsys, "delete", "--db", db, "--run", 1)[0] == 0
    assert Store(db).list_runs() == []


_HOLD_THEN_DIE = textwrap.dedent(
    """
    import sys, time
    from mars_core.store.locks import new_owner
    from mars_core.store.sqlite import Store

    owner = new_owner()
    assert Store(sys.argv[1]).acquire_step_lock(1, owner)  # what a Step does first
    print(owner, flush=True)
    time.sleep(120)
    """
)


def test_a_step_killed_with_sigkill_resumes_at_once(capsys, tmp_path):
    db = tmp_path / "mars.db"
    config = RunConfig(data=DataConfig(source="demo:toy", n_pairs=60), refine=RefineConfig(cross_fit_folds=0))
    RefinementRun.create(Store(db), config)  # epoch 0 of 3
    child = subprocess.Popen([sys.executable, "-c", _HOLD_THEN_DIE, str(db)], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": ROOT})
    try:
        owner = child.stdout.readline().strip()
        code, out, _ = cli(capsys, "runs", "--db", db)
        assert f"being stepped by {owner}" in out
        code, _, err = cli(capsys, "run", "--resume", 1, "--epochs", 1, "--db", db)
        assert code == 2 and "being stepped elsewhere" in err, "a live holder keeps the run"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    code, out, err = cli(capsys, "run", "--resume", 1, "--epochs", 1, "--db", db)
    assert code == 0, err
    assert "epochs done: 1" in out
    assert Store(db).step_lock_owner(1) is None



@pytest.mark.slow
def test_a_run_without_augmentation_loads_no_paraphraser_and_logs_no_length_warning(
    capsys, tmp_path, transformers_warnings
):
    long_prompt = " ".join(f"context{i}" for i in range(400))  # over MiniLM's 256 word pieces: cut on purpose
    rows = [{"prompt": f"{long_prompt} question {i}?", "chosen": f"A careful answer {i}.", "rejected": f"No. {i}"}
            for i in range(12)]
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    load_encoder(RefineConfig().encoder).tokenizer.deprecation_warnings.clear()  # it warns once per tokenizer
    misses = load_paraphraser.cache_info().misses
    code, out, err = cli(capsys, "run", "--data", data, "--strategy", "none", "--budget", "0", "--epochs", "1",
                         "--db", tmp_path / "mars.db")
    assert code == 0, err
    assert "epochs done: 1" in out
    assert load_paraphraser.cache_info().misses == misses, "no paraphraser was loaded"
    assert not [m for m in transformers_warnings if "sequence length" in m], transformers_warnings


def test_resume_of_a_finished_run_extends_it_by_epochs_more(capsys, tmp_path):
    db = tmp_path / "mars.db"
    code, out, _ = cli(capsys, "run", *TOY, "--epochs", "1", "--db", db)
    assert code == 0 and "epochs done: 1; budget spent 20 of 20; reached the last epoch" in out
    code, out, err = cli(capsys, "run", "--resume", 1, "--epochs", 2, "--db", db)
    assert code == 0, err
    assert "extending run 1: its epoch cap goes from 1 to 3 (2 more from epoch 1)" in err
    assert "is finished" not in out and "epochs done: 3; budget spent 60 of 60" in out
    assert Store(db).get_run(1).config["refine"]["epochs"] == 3, "the stored cap says what the run now allows"


def test_help_of_a_flag_with_a_percent_sign_reads_as_written(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "recompute activations in the backward pass (less memory, ~30% slower) (default: False)" in text
    assert "option_strings" not in text


def test_runs_on_an_empty_file_is_an_error_and_writes_nothing(capsys, tmp_path):
    empty = tmp_path / "zero.db"
    empty.touch()
    code, _, err = cli(capsys, "runs", "--db", empty)
    assert code == 2 and f"{empty} is an empty file, not a MARS store" in err
    assert empty.stat().st_size == 0 and [p.name for p in tmp_path.iterdir()] == ["zero.db"]
