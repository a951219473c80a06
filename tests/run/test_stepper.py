"""The background step runner without any UI: a real toy run stepped in a thread, its progress, refusals, errors."""

from __future__ import annotations

import threading

import pytest

from mars_core.run.config import DataConfig, RefineConfig, RunConfig
from mars_core.run.refine import STAGES, RefinementRun
from mars_core.run.stepper import StepJob, StepJobs
from mars_core.run.store import Store


def toy_run(store: Store, epochs: int = 3) -> int:
    config = RunConfig(data=DataConfig(source="demo:toy", n_pairs=80),
                       refine=RefineConfig(cross_fit_folds=0, budget_per_epoch=24, epochs=epochs))
    return RefinementRun.create(store, config, name="toy").run_id


def test_a_job_steps_one_epoch_in_the_background_and_a_second_start_is_refused(tmp_path):
    store = Store(tmp_path / "s.db")
    run_id = toy_run(store)
    jobs = StepJobs()
    reports: list[tuple[str, int, int, str]] = []
    inside, go = threading.Event(), threading.Event()

    def listener(stage: str, done: int, total: int, detail: str) -> None:
        reports.append((stage, done, total, detail))
        inside.set()
        assert go.wait(60), "the test never let the step go on"

    job = jobs.start(store, run_id, 1, session="tab-1", listener=listener)
    assert job is not None and inside.wait(60)
    assert job.running and jobs.get(store, run_id) is job
    assert jobs.start(store, run_id, 1, session="tab-1") is None, "the same run is never stepped twice at once"
    assert jobs.start(Store(store.path), run_id, 1, session="tab-2") is None, "another tab on the same store"
    lock = store.step_lock(run_id)
    assert lock is not None and lock.owner == job.owner and lock.alive, "the job holds the store's step lock"
    go.set()
    job.thread.join(120)

    assert not job.running and job.error is None and job.warning is None
    assert [o.epoch for o in job.outcomes] == [1] and store.epochs(run_id) == [0, 1]
    stages = [r[0] for r in reports]
    assert [s for s in STAGES if s in stages] == sorted(set(stages), key=stages.index), "stages reported in order"
    assert {"scoring", "allocating", "training", "saving"} <= set(stages)
    assert job.fraction() == 1.0 and job.finished_at is not None
    assert store.step_lock(run_id) is None, "the lock is released when the epoch is committed"
    second = jobs.start(store, run_id, 1)
    assert second is not None, "a finished job does not block the next one"
    second.thread.join(120)
    assert store.epochs(run_id) == [0, 1, 2]


def test_a_lock_held_by_another_process_ends_the_job_with_a_warning(tmp_path):
    store = Store(tmp_path / "s.db")
    run_id = toy_run(store)
    assert store.acquire_step_lock(run_id, "otherhost:4242:deadbeef")
    job = StepJobs().start(store, run_id, 2)
    job.thread.join(120)
    assert "being stepped elsewhere" in job.warning and job.outcomes == [] and job.error is None
    assert store.epochs(run_id) == [0] and store.step_lock_owner(run_id) == "otherhost:4242:deadbeef"


def test_run_n_stops_at_the_stop_rule_with_its_message(tmp_path):
    store = Store(tmp_path / "s.db")
    run_id = toy_run(store, epochs=2)
    job = StepJobs().start(store, run_id, 5)
    job.thread.join(120)
    assert [o.epoch for o in job.outcomes] == [1, 2]
    assert "reached the last epoch (2)" in job.message and job.error is None


def test_a_failing_job_records_the_error_instead_of_raising(tmp_path):
    store = Store(tmp_path / "s.db")
    job = StepJobs().start(store, 99, 1)
    job.thread.join(60)
    assert job.error is not None and "99" in job.error and not job.outcomes and job.finished_at is not None


@pytest.mark.parametrize(("report", "epochs", "label"), [
    (("scoring", 0, 1), 1, "one epoch: scoring"),
    (("paraphrasing", 5, 40), 3, "epoch 1 of 3: paraphrasing 5 of 40"),
    (("training", 12, 40, "loss 0.61"), 1, "one epoch: training 12 of 40 · loss 0.61"),
    (("training", 0, 1, "batch 12/40, loss 0.61"), 2, "epoch 1 of 2: training · batch 12/40, loss 0.61"),
])
def test_label_shows_the_stage_its_count_and_the_detail(report, epochs, label):
    job = StepJob("db", 1, epochs)
    job.progress(*report)
    assert job.label() == label


def test_fraction_counts_finished_epochs_and_the_stage_reached():
    job = StepJob("db", 1, 2)
    assert job.fraction() == 0.0
    job.progress("paraphrasing", 10, 20)
    within = (STAGES.index("paraphrasing") + 0.5) / len(STAGES)
    assert job.fraction() == pytest.approx(within / 2)
