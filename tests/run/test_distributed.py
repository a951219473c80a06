"""Two real processes (torchrun, gloo on CPU): one run stored once, the same metrics as one process, and a
failure on either rank ends both."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mars_core.store.sqlite import Store

ROOT = Path(__file__).resolve().parents[2]
RUN = ["run", "--data", "demo:text", "--pairs", "48", "--reward-model", "finetune", "--epochs", "1", "--budget", "4",
       "--folds", "0", "--max-length", "64", "--batch-size", "8", "--min-steps", "4", "--max-passes", "2",
       "--validation-fraction", "0.25", "--min-validation-pairs", "8", "--seed", "0",
       "--no-cpu-bf16",  # float32: the 1e-3 tolerances below are for float reduction order, not bfloat16
       # float32 paraphrases: torchrun gives each rank one thread, and int8 rounding (the CPU default) turns the
       # other thread count's last-bit differences into other paraphrases, so other synthetic pairs
       "--paraphrase-dtype", "float32"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_on_main_hands_the_main_process_error_to_every_rank_and_a_dead_rank_stops_the_others(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(textwrap.dedent("""
        import sys
        from mars_core.run import distributed as d
        if sys.argv[1] == "result":
            value = d.on_main(lambda: {"from": d.rank()})
            assert value == {"from": 0}, value
            try:
                d.on_main(lambda: 1 / 0)
            except (ZeroDivisionError, d.MainProcessError) as exc:
                print(f"rank {d.rank()} got {type(exc).__name__}: {exc}", flush=True)
                d.barrier()  # both report before either exits (torchrun stops the rest at the first exit != 0)
        else:  # rank 1 dies outside any collective while rank 0 waits at a barrier
            if d.rank() == 1:
                raise SystemExit("rank 1 failed on purpose")
            d.barrier()
            print("rank 0 passed the barrier", flush=True)
    """))
    shared = torchrun([str(script), "result"], timeout=180)
    assert shared.returncode == 0, shared.stderr[-2000:]
    assert "rank 0 got ZeroDivisionError: division by zero" in shared.stdout
    assert "rank 1 got MainProcessError: the main process failed: division by zero" in shared.stdout
    dead = torchrun([str(script), "dead"], timeout=180)  # torchrun's agent stops rank 0: no hang
    assert dead.returncode != 0 and "rank 0 passed the barrier" not in dead.stdout
    assert "rank 1 failed on purpose" in dead.stderr


@pytest.mark.slow
def test_a_two_process_finetune_run_is_stored_once_with_the_one_process_metrics(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    one = subprocess.run([sys.executable, "-m", "mars_core", *RUN, "--db", str(tmp_path / "one.db")], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=900)
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(["-m", "mars_core", *RUN, "--db", str(tmp_path / "two.db")], timeout=900)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("epochs done: 1") == 1  # one table, from the main process
    for name in ("one.db", "two.db"):
        with sqlite3.connect(tmp_path / name) as con:
            assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    single, double = Store(tmp_path / "one.db"), Store(tmp_path / "two.db")
    (run_one,), (run_two,) = [r.id for r in single.list_runs()], [r.id for r in double.list_runs()]
    assert single.epochs(run_one) == double.epochs(run_two) == [0, 1]
    for epoch in (0, 1):
        a, b = single.get_epoch(run_one, epoch).metrics, double.get_epoch(run_two, epoch).metrics
        assert a["pairs_trained"] == b["pairs_trained"]
        assert a["fit_details"]["optimizer_steps"] == b["fit_details"]["optimizer_steps"]
        assert b["fit_loss"] == pytest.approx(a["fit_loss"], abs=1e-3)
        margins = [np.array([r["margin"] for r in s.margin_rows(i, epoch, "test")])
                   for s, i in ((single, run_one), (double, run_two))]
        np.testing.assert_allclose(margins[1], margins[0], atol=1e-3)  # float reduction order only
        assert b["test_accuracy"] == pytest.approx(a["test_accuracy"], abs=1e-9)
    assert not list(tmp_path.glob("two-runs/*/epoch-*.partial"))
