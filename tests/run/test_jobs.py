"""The one background job runner without any UI: a real toy run stepped in a thread, its progress, refusals,
errors; a comparison through the same runner."""

from __future__ import annotations

import threading

import pytest

from mars_core.compare.comparison import CompareSpec, start_comparison
from mars_core.run.config import DataConfig, RefineConfig, RunConfig
from mars_core.run.jobs import Job, JobRefused, JobRunner, start_steps, step_key, wait_for
from mars_core.run.refine import STAGES, RefinementRun
from mars_core.store.sqlite import Store


def toy_run(store: Store, epochs: int = 3) -> int:
    config = RunConfig(data=DataConfig(source="demo:toy", n_pairs=80),
                       refine=RefineConfig(cross_fit_folds=0, budget_per_epoch=24, epochs=epochs))
    return RefinementRun.create(store, config, name="toy").run_id


def test_a_job_steps_one_epoch_in_the_background_and_a_second_start_is_refused(tmp_path):
    store = Store(tmp_path / "s.db")
    run_id = toy_run(store)
    jobs = JobRunner()
    reports: list[tuple[str, int, int, str]] = []
    inside, go = threading.Event(), threading.Event()

    def listener(stage: str, done: int, total: int, detail: str) -> None:
        reports.append((stage, done, total, detail))
        if stage == "scoring":  # inside the epoch: the step lock is held
            inside.set()
            assert go.wait(60), "the test never let the step go on"

    job = start_steps(jobs, store.path, run_id, 1, session="tab-1", listener=listener)
    assert inside.wait(60)
    assert job.running and jobs.get(step_key(store.path, run_id)) is job
    with pytest.raises(JobRefused):  # the same run is never stepped twice at once
        start_steps(jobs, store.path, run_id, 1, session="tab-1")
    with pytest.raises(JobRefused):  # another tab, the same store by another spelling of its path
        start_steps(jobs, tmp_path / "." / "s.db", run_id, 1, session="tab-2")
    lock = store.step_lock(run_id)
    assert lock is not None and lock.owner == job.owner and lock.alive, "the job holds the store's step lock"
    go.set()
    job.thread.join(120)

    assert not job.running and job.error is None and job.warning is None
    assert [o.epoch for o in job.results] == [1] and store.epochs(run_id) == [0, 1]
    stages = [r[0] for r in reports]
    order = ("loading models", *STAGES)
    assert [s for s in order if s in stages] == sorted(set(stages), key=stages.index), "stages reported in order"
    assert {"loading models", "scoring", "allocating", "training", "saving"} <= set(stages)
    assert stages[0] == "loading models", "the job loads its models itself, with progress"
    assert job.fraction() == 1.0 and job.finished_at is not None
    assert store.step_lock(run_id) is None, "the lock is released when the epoch is committed"
    second = start_steps(jobs, store.path, run_id, 1)  # a finished job does not block the next one
    second.thread.join(120)
    assert store.epochs(run_id) == [0, 1, 2]


def test_a_lock_held_by_another_process_ends_the_job_with_a_warning(tmp_path):
    store = Store(tmp_path / "s.db")
    run_id = toy_run(store)
    assert store.acquire_step_lock(run_id, "otherhost:4242:deadbeef")
    job = start_steps(JobRunner(), store.path, run_id, 2)
    job.thread.join(120)
    assert "being stepped elsewhere" in job.warning and job.results == [] and job.error is None
    assert store.epochs(run_id) == [0] and store.step_lock_owner(run_id) == "otherhost:4242:deadbeef"


def test_run_n_stops_at_the_stop_rule_with_its_message(tmp_path):
    store = Store(tmp_path / "s.db")
    run_id = toy_run(store, epochs=2)
    job = start_steps(JobRunner(), store.path, run_id, 5)
    job.thread.join(120)
    assert [o.epoch for o in job.results] == [1, 2]
    assert "reached the last epoch (2)" in job.message and job.error is None


def test_a_failing_job_records_the_error_instead_of_raising(tmp_path):
    store = Store(tmp_path / "s.db")
    job = start_steps(JobRunner(), store.path, 99, 1)
    job.thread.join(60)
    assert job.error is not None and "99" in job.error and not job.results and job.finished_at is not None


@pytest.mark.parametrize(("report", "epochs", "label"), [
    (("loading models", 0, 1), 1, "one epoch: loading models"),
    (("scoring", 0, 1), 1, "one epoch: scoring"),
    (("generating", 5, 40), 3, "epoch 1 of 3: generating 5 of 40"),
    (("training", 12, 40, "loss 0.61"), 1, "one epoch: training 12 of 40 · loss 0.61"),
    (("training", 0, 1, "batch 12/40, loss 0.61"), 2, "epoch 1 of 2: training · batch 12/40, loss 0.61"),
])
def test_label_shows_the_stage_its_count_and_the_detail(report, epochs, label):
    job = Job("k", "t", parts_total=epochs, part_name="epoch")
    job.progress(*report)
    assert job.label() == label


def test_fraction_counts_finished_epochs_and_the_stage_reached():
    job = Job("k", "t", parts_total=2, part_name="epoch", stages=STAGES)
    assert job.fraction() == 0.0
    job.progress("generating", 10, 20)
    within = (STAGES.index("generating") + 0.5) / len(STAGES)
    assert job.fraction() == pytest.approx(within / 2)


def test_a_comparison_runs_through_the_same_runner_and_reports_its_runs(tmp_path):
    spec = CompareSpec(base=RunConfig(data=DataConfig(source="demo:toy", n_pairs=80),
                                      refine=RefineConfig(epochs=1, budget_per_epoch=8, cross_fit_folds=0)),
                       strategies=("none", "uniform"), seeds=1)
    runner = JobRunner()
    seen: list[str] = []
    job = start_comparison(runner, spec, tmp_path / "cmp", session="tab-1")
    assert runner.latest("compare:", "tab-1") is job and runner.latest("step:") is None
    wait_for(job, lambda j: seen.append(j.label()), interval=0.05, timeout=300)
    assert job.error is None and not job.running
    assert job.parts_total == 2 and job.parts_done == 2, "the comparison's runs are the job's parts"
    assert any(label.startswith("run 1 of 2") or label.startswith("run 2 of 2") for label in seen)
    assert (tmp_path / "cmp" / "comparison.json").exists()
    assert set(job.results[0].points[0]["strategies"]) == {"none", "uniform"}
