"""`compare` under hostile use: someone else's folder, sweep values that cannot run, a paraphraser that fails."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mars_core.cli.main import main

SMALL = ["--data", "demo", "--pairs", "40", "--folds", "0", "--seeds", "1", "--epochs", "1", "--budget", "4",
         "--best-of-n", "0", "--remote-deadline", "30"]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_out_refuses_a_folder_that_holds_someone_elses_comparison(tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "comparison.json").write_text(json.dumps({"owner": "another tool", "rows": [1, 2, 3]}))
    (theirs / "runs.db").write_bytes(b"SQLite format 3\0" + b"\0" * 1000)
    before = snapshot(theirs)
    code = main(["compare", *SMALL, "--strategies", "none", "--out", str(theirs)])
    err = capsys.readouterr().err
    assert code == 2 and "is not empty and is not a comparison of ours" in err and "comparison.json, runs.db" in err
    assert snapshot(theirs) == before, "not one byte written"


@pytest.mark.parametrize(("sweep", "values", "message"), [
    ("budget", "-1", "a budget fraction must be > 0, got -1.0"),
    ("budget", "0", "a budget fraction must be > 0, got 0.0"),
    ("budget", "nan", "nan is not a finite number"),
    ("budget", "0.01", "0.01 of --budget 4 is less than one unit"),
    ("tau", "1,-1", "tau must be a finite number ≥ 0"),
    ("tau", "inf", "inf is not a finite number"),
    ("margin-mode", "abs,sideways", "margin_mode must be 'abs'"),
    ("noise", "0.7", "label noise must be in [0, 0.5)"),
])
def test_every_sweep_value_is_checked_before_the_first_run(tmp_path, capsys, sweep, values, message):
    out = tmp_path / "cmp"
    code = main(["compare", *SMALL, "--strategies", "none,mars", "--sweep", sweep, "--sweep-values", values,
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"--sweep-values ({sweep})" in err and message in err, err
    assert not out.exists(), "nothing ran, nothing was written"


def test_a_failed_run_is_never_cached_and_a_rerun_redoes_it(hostile, tmp_path, capsys):
    server = hostile("reset")
    out = tmp_path / "cmp"
    argv = ["compare", *SMALL, "--strategies", "mars", "--paraphraser", server.spec(), "--out", str(out)]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 3, err
    assert "comparison stopped, its current run not stored as a result: the paraphraser failed" in err
    assert list((out / "results").glob("*.json")) == []
    server.mode = "ok"  # the server is back at the same address: the same comparison continues
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (result_file,) = (out / "results").glob("*.json")
    result = json.loads(result_file.read_text())
    assert result["epochs"] == 1 and result["metrics"]["lm_generations"] > 0
