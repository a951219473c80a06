"""Two jobs at once in one process (a Step in the sidebar, a comparison on the Compare page) give exactly the
results each gives alone: each job has its own runtime (reward model, caches, random streams); only loaded
models are shared, read-only. The Step is held inside its epoch until the comparison has finished a run, so
the two really interleave."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from mars_core.compare.comparison import CompareSpec, start_comparison
from mars_core.run.config import DataConfig, RefineConfig, RunConfig, with_overrides
from mars_core.run.jobs import Job, JobRunner, start_steps, wait_for
from mars_core.run.refine import RefinementRun
from mars_core.store.sqlite import Store

TIMINGS = {"stage_seconds", "seconds", "wall_seconds"}


def step_snapshot(store: Store, run_id: int) -> dict[str, Any]:
    """Everything a Step stores, less its timings."""
    table = store.epoch_table(run_id)
    return {
        "epochs": [{k: v for k, v in row.items() if k not in TIMINGS}
                   | {"metrics": {k: v for k, v in row["metrics"].items() if k not in TIMINGS}} for row in table],
        "margins": [(r["epoch"], r["pair_id"], r["split"], r["margin"], r["count"], r["curvature"])
                    for r in store.margin_rows(run_id)],
        "paraphrases": sorted((p.id, p.text, p.status, p.similarity) for p in store.get_paraphrases(run_id)),
        "pairs": sorted((p.id, p.chosen, p.rejected) for p in store.training_pairs(run_id, "auto")),
    }


def comparison_snapshot(out: Path) -> dict[str, Any]:
    """Every run's result file, less its timings."""
    snapshot = {}
    for path in sorted((out / "results").glob("*.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        result = {k: v for k, v in result.items() if k not in TIMINGS}
        result["metrics"] = {k: v for k, v in result["metrics"].items() if k not in TIMINGS}
        snapshot[path.name] = result
    return snapshot


def step_and_compare(tmp: Path, run_config: RunConfig, epochs: int, spec: CompareSpec, together: bool,
                     ) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, float, float]]]:
    """Step a fresh run ``epochs`` times and run the comparison, one after the other or at the same time."""
    tmp.mkdir()
    store = Store(tmp / "run.db")
    run_id = RefinementRun.create(store, run_config, name="sidebar run").run_id
    runner = JobRunner()
    comparison: list[Job] = []
    held = threading.Event()

    def hold_inside_the_epoch(stage: str, done: int, total: int, detail: str) -> None:
        """In the Step's first generating stage (its prefix cache and store caches in use), wait for the
        comparison to finish one of its runs; then both go on side by side."""
        if together and stage == "generating" and not held.is_set():
            held.set()
            while not comparison or (comparison[0].running and comparison[0].parts_done < 1):
                threading.Event().wait(0.05)

    step = start_steps(runner, store.path, run_id, epochs, listener=hold_inside_the_epoch)
    if not together:
        wait_for(step, lambda _: None, interval=0.05, timeout=900)
    comparison.append(start_comparison(runner, spec, tmp / "compare"))
    for job in (step, comparison[0]):
        wait_for(job, lambda _: None, interval=0.05, timeout=900)
        assert job.error is None and job.warning is None, job.error or job.warning
    assert [o.epoch for o in step.results] == list(range(1, epochs + 1))
    spans = [(job.key, job.started, job.finished_at) for job in (step, comparison[0])]
    for row in store.epoch_table(run_id):  # the stored stages add up to the epoch, alone or beside another job
        stages = row["metrics"]["stage_seconds"]
        print(f"{'together' if together else 'alone'} epoch {row['epoch']}: {sum(stages.values()):.3f} s of "
              f"{row['seconds']:.3f} s: {stages}")
        assert sum(stages.values()) == pytest.approx(row["seconds"], rel=0.02)
    if together:
        assert held.is_set(), "the Step reached its generating stage"
        (_, s0, s1), (_, c0, c1) = spans
        assert c0 < s1 and s0 < c1, "the two jobs ran at the same time"
    return step_snapshot(store, run_id), comparison_snapshot(tmp / "compare"), spans


def assert_same_alone_and_together(tmp_path: Path, run_config: RunConfig, epochs: int, spec: CompareSpec) -> None:
    alone = step_and_compare(tmp_path / "alone", run_config, epochs, spec, together=False)
    together = step_and_compare(tmp_path / "together", run_config, epochs, spec, together=True)
    assert alone[0]["paraphrases"], "the Step paraphrased something"
    assert len(alone[1]) == len(spec.strategies) * spec.seeds
    assert together[0] == alone[0], "the Step's stored results changed when a comparison ran beside it"
    assert together[1] == alone[1], "the comparison's results changed when a Step ran beside it"


def test_a_toy_step_and_a_toy_comparison_at_once_give_what_each_gives_alone(tmp_path):
    run_config = with_overrides(
        RunConfig(data=DataConfig(source="demo:toy", n_pairs=120, seed=2),
                  refine=RefineConfig(epochs=3, budget_per_epoch=30, cross_fit_folds=3, seed=2)),
        allocation={"strategy": "mars"})
    spec = CompareSpec(base=RunConfig(data=DataConfig(source="demo:toy", n_pairs=120),
                                      refine=RefineConfig(epochs=2, budget_per_epoch=20, cross_fit_folds=3)),
                       strategies=("uniform", "mars"), seeds=2, best_of_n=8)
    assert_same_alone_and_together(tmp_path, run_config, 3, spec)


@pytest.mark.slow
def test_a_text_step_and_a_text_comparison_at_once_give_what_each_gives_alone(tmp_path):
    """The real packaged paraphraser and encoder, shared by both jobs: their caches and the LM's prompt-prefix
    cache stay each job's own. Both jobs ask for rows of the same texts with the same seed.

    The transformers engine: it seeds every row on its own. The CTranslate2 engine draws from one stream per
    process (augment/ct2_paraphraser.py), so with it two jobs agree only through the store's generation cache."""
    refine = RefineConfig(epochs=1, budget_per_epoch=3, cross_fit_folds=0, seed=0)
    run_config = with_overrides(RunConfig(data=DataConfig(source="demo:text", n_pairs=40), refine=refine),
                                allocation={"strategy": "mars"},
                                paraphrase={"generations_per_unit": 4, "engine": "transformers"})
    spec = CompareSpec(base=with_overrides(RunConfig(data=DataConfig(source="demo:text", n_pairs=40), refine=refine),
                                           paraphrase={"generations_per_unit": 4, "engine": "transformers"}),
                       strategies=("uniform", "mars"), seeds=1, best_of_n=0)
    assert_same_alone_and_together(tmp_path, run_config, 1, spec)
