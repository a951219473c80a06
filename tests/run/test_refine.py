"""The epoch loop on the 2-D toy (milliseconds per step): storage, allocation, curvature, resume, failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mars_core.augment.paraphraser import ParaphraseConfig, PlainParaphraser
from mars_core.augment.selection import ParaphraserFailed
from mars_core.data.toy import ToyParaphraser
from mars_core.run.components import build_runtime
from mars_core.run.config import DataConfig, RefineConfig, RunConfig, with_overrides
from mars_core.run.refine import (
    EPOCH0_STAGES,
    STAGES,
    RefinementRun,
    RunFinished,
    StepInProgress,
    step_together,
)
from mars_core.store.sqlite import Store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def toy_config(strategy: str = "mars", seed: int = 0, **refine) -> RunConfig:
    base = RunConfig(
        data=DataConfig(source="demo:toy", n_pairs=200, seed=seed),
        refine=RefineConfig(**{"epochs": 3, "budget_per_epoch": 40, "cross_fit_folds": 0, "seed": seed, **refine}),
    )
    return with_overrides(base, allocation={"strategy": strategy, "tau": 2.0})


def test_two_mars_epochs_are_stored_whole(tmp_path):
    store = Store(tmp_path / "toy.db")
    run = RefinementRun.create(store, toy_config())
    stages: list[str] = []
    run.step(progress=lambda stage, done, total: stages.append(stage))
    run.step()
    assert store.epochs(run.run_id) == [0, 1, 2]
    # the toy has no language model to load, no contrast rewrites; its filters run inside the rounds
    reported = [s for s in STAGES if s not in ("loading paraphraser", "filtering", "sharpening")]
    assert list(dict.fromkeys(stages)) == reported, "every stage reported, in the order of STAGES"
    table = store.epoch_table(run.run_id)
    assert [row["allocation"].get("total", 0) for row in table] == [0, 40, 40]
    synthetic = store.get_pairs(run.run_id, synthetic=True)
    assert len(synthetic) == sum(row["metrics"]["pairs_added"] for row in table[1:]) > 0
    assert {p.epoch_added for p in synthetic} == {1, 2}
    assert all(p.parent_id and not p.parent_id.count("~") for p in synthetic)
    rows = store.margin_rows(run.run_id, epoch=1, split="train")
    assert sum(r["count"] for r in rows) == 40
    assert table[2]["curvature"]["top_k"], "the Hessian spectrum is recorded every epoch"
    assert run.budget_spent() == 80 and run.budget_left() == 40


def test_single_units_paraphrase_both_sides_so_paraphrasing_is_no_label_cue(tmp_path):
    store = Store(tmp_path / "toy.db")
    run = RefinementRun.create(store, toy_config("uniform"))  # 40 units over 160 pairs: every count is 0 or 1
    run.step()
    sides = [r.side for r in store.get_paraphrases(run.run_id, status="pending")]  # the kept ones
    assert len(sides) == 40
    assert 10 <= sides.count("rejected") <= 30, sides.count("rejected")


def test_mars_gives_low_margin_pairs_more_than_uniform(tmp_path):
    store = Store(tmp_path / "toy.db")
    picked_margin = {}
    for strategy in ("mars", "uniform"):
        run = RefinementRun.create(store, toy_config(strategy))
        run.step()
        rows = store.margin_rows(run.run_id, epoch=1, split="train")
        counts = np.array([r["count"] for r in rows], dtype=float)
        margins = np.abs([r["alloc_margin"] for r in rows])
        picked_margin[strategy] = float(np.average(margins, weights=counts))
        low = margins <= np.quantile(margins, 0.25)
        picked_margin[strategy + "_low_share"] = counts[low].sum() / counts.sum()
    assert picked_margin["mars"] < picked_margin["uniform"]
    assert picked_margin["mars_low_share"] > picked_margin["uniform_low_share"]


@pytest.mark.xfail(
    strict=True,
    reason=(
        "measured, not assumed: on the 2-D toy the pairs MARS adds carry LESS curvature than uniform's "
        "(mean σ'(Δ)‖Δφ‖² over 5 seeds ≈ 0.120 vs 0.135): a small |Δ| = |wᵀΔφ| mostly means a small ‖Δφ‖, "
        "and σ'(Δ)‖Δφ‖² → 0 as ‖Δφ‖ → 0. The claim holds only at fixed ‖Δφ‖ (see test_curvature). "
        "strict: if the claim starts to hold, this test fails and the finding must be revisited."
    ),
)
def test_mars_adds_higher_curvature_pairs_than_uniform_on_the_toy(tmp_path):
    """The paper's claim, measured: mean σ'(Δ)‖Δφ‖² of the pairs each strategy adds, over 5 seeds."""
    store = Store(tmp_path / "toy.db")
    picked = {"mars": [], "uniform": []}
    for seed in range(5):
        for strategy in picked:
            run = RefinementRun.create(store, toy_config(strategy, seed=seed))
            outcome = run.step()
            picked[strategy].append(outcome.metrics["added_curvature"])
    mars, uniform = np.mean(picked["mars"]), np.mean(picked["uniform"])
    print(f"mean curvature of added pairs over 5 seeds: mars {mars:.4f}, uniform {uniform:.4f}")
    assert mars > uniform


def test_stored_stage_seconds_name_every_stage_and_add_up_to_the_epoch(tmp_path):
    store = Store(tmp_path / "toy.db")
    run = RefinementRun.create(store, toy_config(cross_fit_folds=3))  # cross-fitting: scoring does real work
    outcome = run.step()
    table = store.epoch_table(run.run_id)
    assert list(table[0]["metrics"]["stage_seconds"]) == list(EPOCH0_STAGES)
    assert list(table[1]["metrics"]["stage_seconds"]) == [s for s in STAGES if s not in ("loading paraphraser",
                                                                                         "sharpening")]
    for row in table:
        stages = row["metrics"]["stage_seconds"]
        print(f"epoch {row['epoch']}: stages {sum(stages.values()):.4f} s of {row['seconds']:.4f} s: {stages}")
        assert sum(stages.values()) == pytest.approx(row["seconds"], rel=0.02)
    assert outcome.stage_seconds == table[1]["metrics"]["stage_seconds"]
    assert outcome.seconds == pytest.approx(table[1]["seconds"])


def test_runs_stepped_together_commit_what_each_commits_alone_and_time_their_own_stages(tmp_path):
    configs = [toy_config("mars", seed=2), toy_config("uniform", seed=2), toy_config("none", seed=2)]
    alone, together = Store(tmp_path / "alone.db"), Store(tmp_path / "together.db")
    for config in configs:
        RefinementRun.create(alone, config).step()
    runs = [RefinementRun.create(together, config) for config in configs]
    held = together.acquire_step_lock(runs[2].run_id, "other-tab")
    with pytest.raises(StepInProgress):  # one run held elsewhere: none of them steps
        step_together(runs)
    assert held and [together.last_epoch(run.run_id) for run in runs] == [0, 0, 0]
    together.release_step_lock(runs[2].run_id, "other-tab")
    outcomes = step_together(runs)
    assert [o.epoch for o in outcomes] == [1, 1, 1] and all(together.step_lock_owner(r.run_id) is None for r in runs)
    for run_id in (1, 2, 3):
        assert [r["margin"] for r in together.margin_rows(run_id, epoch=1)] == \
            [r["margin"] for r in alone.margin_rows(run_id, epoch=1)]
        row = together.epoch_table(run_id)[1]
        assert sum(row["metrics"]["stage_seconds"].values()) == pytest.approx(row["seconds"], rel=0.02)
    with pytest.raises(ValueError, match="listed twice"):
        step_together([runs[0], runs[0]])
    # a run whose paraphraser fails (default limit: the epoch is refused) does not keep the others from committing
    config = with_overrides(toy_config(budget_per_epoch=480), allocation={"tau": 0.0})
    runtime = build_runtime(config)
    runtime.paraphraser = PlainParaphraser(FlakyParaphraser())
    failing = RefinementRun.create(together, config, runtime=runtime)
    with pytest.raises(ParaphraserFailed):
        step_together([failing, *runs])
    assert together.epochs(failing.run_id) == [0] and [together.last_epoch(r.run_id) for r in runs] == [2, 2, 2]


def test_same_seed_same_results(tmp_path):
    results = []
    for name in ("a", "b"):
        store = Store(tmp_path / f"{name}.db")
        run = RefinementRun.create(store, toy_config(seed=3))
        run.step()
        results.append([r["margin"] for r in store.margin_rows(run.run_id, epoch=1)])
    np.testing.assert_array_equal(results[0], results[1])


def test_stop_rule_budget_and_epochs(tmp_path):
    store = Store(tmp_path / "toy.db")
    run = RefinementRun.create(store, toy_config(epochs=5, budget_per_epoch=30, total_budget=50))
    run.step()
    run.step()  # gets the last 20 units
    assert store.get_epoch(run.run_id, 2).allocation["total"] == 20
    assert "budget spent" in run.stop_reason()
    with pytest.raises(RunFinished, match="budget spent"):
        run.step()


def test_step_refused_while_another_holds_the_lock(tmp_path):
    store = Store(tmp_path / "toy.db")
    run = RefinementRun.create(store, toy_config())
    assert store.acquire_step_lock(run.run_id, "other-tab")
    with pytest.raises(StepInProgress, match="other-tab"):
        run.step()
    store.release_step_lock(run.run_id, "other-tab")
    run.step()
    assert store.step_lock_owner(run.run_id) is None


class FlakyParaphraser(ToyParaphraser):
    """A real toy paraphraser that fails on every call for the candidates of two-unit requests."""

    def paraphrase(self, texts, n, seed):
        if n > ParaphraseConfig().candidates_per_unit:
            raise RuntimeError("generation server went away")
        return super().paraphrase(texts, n, seed)


def test_a_failing_paraphraser_does_not_stop_the_epoch(tmp_path):
    store = Store(tmp_path / "toy.db")
    # τ = 0 and 3 units per pair: every pair asks for 2 chosen and 1 rejected paraphrase
    # the flaky paraphraser fails on most rows: a run that accepts that (--max-paraphrase-failures 0.9) goes on;
    # under the default limit the epoch is refused (tests/hostile/test_remote_paraphraser.py)
    config = with_overrides(toy_config(budget_per_epoch=480, max_failed_share=0.9), allocation={"tau": 0.0})
    runtime = build_runtime(config)
    runtime.paraphraser = PlainParaphraser(FlakyParaphraser())
    run = RefinementRun.create(store, config, runtime=runtime)
    outcome = run.step()
    assert outcome.metrics["paraphrase_failures"] > 0
    assert outcome.metrics["pairs_added"] > 0, "the texts in the healthy calls were still augmented"
    assert store.epochs(run.run_id) == [0, 1]


_CHILD = textwrap.dedent(
    """
    import sys, time
    from mars_core.run.refine import RefinementRun
    from mars_core.store.sqlite import Store

    run = RefinementRun.open(Store(sys.argv[1]), 1)

    def progress(stage, done, total):
        if stage == "saving":
            print("saving", flush=True)
            time.sleep(60)

    run.step(progress=progress)
    """
)


def test_killed_step_resumes_to_the_same_result(tmp_path):
    reference = Store(tmp_path / "reference.db")
    ref = RefinementRun.create(reference, toy_config(seed=1))
    ref.step()
    ref.step()

    path = tmp_path / "killed.db"
    store = Store(path)
    RefinementRun.create(store, toy_config(seed=1))
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert child.stdout.readline().strip() == "saving"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    store = Store(path)
    assert store.epochs(1) == [0]
    resumed = RefinementRun.open(store, 1)
    assert store.step_lock_owner(1) is not None  # the dead process's lock is still there ...
    store.release_step_lock(1, store.step_lock_owner(1))  # ... and the app offers to clear it
    resumed.step()
    resumed.step()
    for epoch in (1, 2):
        got = [r["margin"] for r in store.margin_rows(1, epoch=epoch)]
        want = [r["margin"] for r in reference.margin_rows(ref.run_id, epoch=epoch)]
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_rejected_paraphrases_leave_the_next_training_set(tmp_path):
    store = Store(tmp_path / "toy.db")
    run = RefinementRun.create(store, toy_config())
    run.step()
    before = {p.id for p in store.training_pairs(run.run_id, "auto")}
    victim = store.get_paraphrases(run.run_id, status="pending")[0]
    store.decide(run.run_id, victim.id, "rejected", "ana")
    after = {p.id for p in store.training_pairs(run.run_id, "auto")}
    removed = before - after
    assert removed and all(p.startswith(victim.pair_id + "~e1") for p in removed)
    outcome = run.step()
    assert outcome.metrics["pairs_trained"] == len(after) + outcome.metrics["pairs_added"]


def test_gated_policy_trains_only_on_accepted(tmp_path):
    store = Store(tmp_path / "toy.db")
    run = RefinementRun.create(store, toy_config(review_policy="gated"))
    first = run.step()
    n_train = len(store.get_pairs(run.run_id, split="train", synthetic=False))
    assert first.metrics["pairs_trained"] == n_train  # nothing reviewed yet: originals only
    pending = store.get_paraphrases(run.run_id, status="pending")
    store.decide(run.run_id, pending[0].id, "accepted", "ana")
    allowed = store.training_pairs(run.run_id, "gated")
    assert len(allowed) > n_train
    second = run.step()
    assert second.metrics["pairs_trained"] == len(allowed)
