"""The comparison runner: equal budgets, paired test sets, honest CIs, sweeps that reuse runs, and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mars_core.analysis.bootstrap import minimum_detectable_difference
from mars_core.cli.main import main
from mars_core.compare.comparison import CompareSpec, plan, result_path, run_comparison
from mars_core.compare.results import load_comparison, summary_rows
from mars_core.run.config import DataConfig, RefineConfig, RunConfig
from mars_core.run.settings import config_from_values
from mars_core.store.sqlite import Store

STRATEGIES = ("none", "uniform", "won", "mars")


def _toy_spec(**changes) -> CompareSpec:
    base = RunConfig(data=DataConfig(source="demo:toy", n_pairs=150), refine=RefineConfig(epochs=2, budget_per_epoch=12))
    return CompareSpec(**{"base": base, "strategies": STRATEGIES, "seeds": 3, "best_of_n": 4, **changes})


def _results(out: Path, spec: CompareSpec) -> dict[str, dict]:
    return {key.name: json.loads(result_path(out, key).read_text()) for _, key in plan(spec)}


def test_every_strategy_spends_the_same_budget_on_the_same_split(tmp_path):
    spec = _toy_spec()
    comparison = run_comparison(spec, tmp_path)
    results = _results(tmp_path, spec)
    by_seed: dict[int, dict[str, dict]] = {}
    for r in results.values():
        by_seed.setdefault(r["seed"], {})[r["strategy"]] = r
    assert sorted(by_seed) == [0, 1, 2] and all(set(v) == set(STRATEGIES) for v in by_seed.values())
    for runs in by_seed.values():
        assert runs["none"]["metrics"]["budget_units"] == 0 and runs["none"]["metrics"]["synthetic_pairs"] == 0
        for strategy in ("uniform", "won", "mars"):
            assert runs[strategy]["metrics"]["budget_units"] == 2 * 12  # epochs × budget, every strategy alike
            assert runs[strategy]["metrics"]["synthetic_pairs"] > 0
            assert runs[strategy]["test_ids"] == runs["none"]["test_ids"]  # paired: one split per seed
    assert by_seed[0]["none"]["test_ids"] != by_seed[1]["none"]["test_ids"]  # the seed varies the split
    # each run's numbers are the store's numbers
    store = Store(tmp_path / "runs.db")
    mars0 = by_seed[0]["mars"]
    assert store.epoch_table(mars0["run_id"])[-1]["metrics"]["test_accuracy"] == mars0["metrics"]["test_accuracy"]
    # the report: every strategy's difference to uniform and none, with a CI around the estimate
    point = comparison.points[0]
    for baseline in ("uniform", "none"):
        for strategy in set(STRATEGIES) - {baseline}:
            diff = point["vs"][baseline][strategy]["test_accuracy"]
            assert diff["ci_low"] <= diff["estimate"] <= diff["ci_high"]
            assert diff["mdd"] == pytest.approx(minimum_detectable_difference(diff["se"], 0.95, 0.8))
            mean_a = point["strategies"][strategy]["test_accuracy"]["mean"]
            mean_b = point["strategies"][baseline]["test_accuracy"]["mean"]
            assert diff["estimate"] == pytest.approx(mean_a - mean_b)
    assert set(point["bon_win_vs_none"]) == {"uniform", "won", "mars"}
    assert 0.0 <= point["strategies"]["mars"]["bon_match_rate"]["mean"] <= 1.0
    stored = load_comparison(tmp_path)
    assert stored.points[0]["vs"]["uniform"]["mars"] == point["vs"]["uniform"]["mars"]
    assert len(stored.runs) == len(STRATEGIES) * 3
    csv_lines = (tmp_path / "comparison-runs.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + len(STRATEGIES) * 3 and "test_accuracy" in csv_lines[0]
    assert any(r["metric"] == "hessian_trace" for r in summary_rows(stored))


class _Killed(Exception):
    pass


def test_a_killed_comparison_resumes_without_redoing_finished_runs(tmp_path):
    spec = _toy_spec(strategies=("uniform", "mars"), seeds=2)
    calls = {"training": 0}

    def kill_in_the_third_run(stage, done, total, detail=""):
        if stage == "runs" and done == 2:
            calls["armed"] = True
        if stage == "training" and calls.get("armed"):
            calls["training"] += 1
            # a seed's runs are created, then step together: the third training is the third run's epoch 1,
            # with the third and fourth runs at epoch 0
            if calls["training"] == 3:
                raise _Killed

    with pytest.raises(_Killed):
        run_comparison(spec, tmp_path / "a", kill_in_the_third_run)
    keys = [key for _, key in plan(spec)]
    finished = [result_path(tmp_path / "a", k) for k in keys[:2]]
    assert all(p.exists() for p in finished) and not result_path(tmp_path / "a", keys[2]).exists()
    stamps = [p.stat().st_mtime_ns for p in finished]
    store = Store(tmp_path / "a" / "runs.db")
    half_done = [next(r for r in store.list_runs() if r.name == key.name) for key in keys[2:]]
    assert [store.last_epoch(run.id) for run in half_done] == [0, 0]

    run_comparison(spec, tmp_path / "a")
    assert [p.stat().st_mtime_ns for p in finished] == stamps  # finished runs were skipped, not redone
    names = [r.name for r in Store(tmp_path / "a" / "runs.db").list_runs()]
    assert sorted(names) == sorted(k.name for k in keys)  # the half-done run continued; none was started twice
    # and the resumed comparison equals one that was never interrupted
    run_comparison(spec, tmp_path / "b")
    resumed, clean = _results(tmp_path / "a", spec), _results(tmp_path / "b", spec)
    for name in resumed:
        assert resumed[name]["test_margins"] == pytest.approx(clean[name]["test_margins"], abs=1e-6)


def test_sweeps_reuse_runs_that_coincide(tmp_path):
    spec = _toy_spec(strategies=("none", "uniform", "mars"), seeds=2, sweep="budget", sweep_values=(0.5, 1.0))
    comparison = run_comparison(spec, tmp_path)
    names = [r.name for r in Store(tmp_path / "runs.db").list_runs()]
    assert len(names) == len(set(names)) == 2 * (1 + 2 + 2)  # `none` has no budget: one run per seed
    assert [p["value"] for p in comparison.points] == [0.5, 1.0]
    assert (tmp_path / "comparison-budget.json").exists() and not (tmp_path / "comparison.json").exists()
    units = {p["value"]: p["strategies"]["mars"]["budget_units"]["mean"] for p in comparison.points}
    assert units == {0.5: 2 * 6, 1.0: 2 * 12}
    # the base comparison in the same folder is the sweep's 100 % point: nothing new runs
    again = run_comparison(_toy_spec(strategies=("none", "uniform", "mars"), seeds=2), tmp_path)
    assert len(Store(tmp_path / "runs.db").list_runs()) == len(names)
    assert again.points[0]["strategies"]["mars"] == comparison.points[1]["strategies"]["mars"]
    assert load_comparison(tmp_path, "budget").points[0]["value"] == 0.5  # both summaries live side by side
    assert load_comparison(tmp_path).sweep == "none"


def test_noise_sweep_lowers_gold_accuracy_less_than_label_accuracy(tmp_path):
    base = RunConfig(data=DataConfig(source="demo:toy", n_pairs=500), refine=RefineConfig(epochs=1))
    spec = _toy_spec(base=base, strategies=("none",), seeds=2, sweep="noise", sweep_values=(0.0, 0.3))
    comparison = run_comparison(spec, tmp_path)
    clean, noisy = (p["strategies"]["none"] for p in comparison.points)
    # flipped test labels cost label accuracy directly; the gold reward sees through them
    drop_labels = clean["test_accuracy"]["mean"] - noisy["test_accuracy"]["mean"]
    drop_gold = clean["test_gold_accuracy"]["mean"] - noisy["test_gold_accuracy"]["mean"]
    assert drop_labels > 0.1 and drop_gold < drop_labels


def test_a_folder_keeps_its_settings(tmp_path):
    run_comparison(_toy_spec(strategies=("none",), seeds=1), tmp_path)
    other = _toy_spec(strategies=("none",), seeds=1, base=RunConfig(
        data=DataConfig(source="demo:toy", n_pairs=150), refine=RefineConfig(epochs=3, budget_per_epoch=12)))
    with pytest.raises(ValueError, match="other settings.*base"):
        run_comparison(other, tmp_path)
    with pytest.raises(ValueError, match="unknown strategies"):
        CompareSpec(strategies=("mars", "magic"))
    with pytest.raises(ValueError, match="demo suite"):
        CompareSpec(base=RunConfig(data=DataConfig(source="x.jsonl")), sweep="noise")


def test_cli_compare_prints_the_table_and_writes_files(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["compare", "--data", "toy", "--pairs", "120", "--strategies", "none,uniform,mars", "--seeds", "2",
                 "--epochs", "1", "--budget", "8", "--best-of-n", "0", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "− uniform [95% CI]" in printed and "mars" in printed
    assert {"comparison.json", "comparison-runs.csv", "comparison-summary.csv", "runs.db", "spec.json"} <= {
        p.name for p in out.iterdir()}
    assert main(["compare", "--data", "toy", "--strategies", "mars,bogus", "--out", str(out)]) == 2


@pytest.mark.slow
def test_text_demo_comparison_shares_lm_generations_between_strategies(tmp_path):
    """End to end on the text demo with the packaged LM: where uniform and MARS paraphrase the same response at
    one seed they get the same generations from the store's cache, so the LM work done is less than the sum."""
    base = config_from_values({"data": "demo:text", "pairs": 40, "epochs": 1, "budget": 10,
                               "candidates_per_unit": 1, "generations_per_unit": 1})
    spec = CompareSpec(base=base, strategies=("uniform", "mars"), seeds=1, best_of_n=4)
    comparison = run_comparison(spec, tmp_path)
    results = _results(tmp_path, spec)
    runs = {r["strategy"]: r for r in results.values()}
    store = Store(tmp_path / "runs.db")
    texts = {s: {} for s in runs}
    for strategy, r in runs.items():
        for rec in store.get_paraphrases(r["run_id"]):
            texts[strategy].setdefault(rec.source_text, set()).add(rec.text)
    shared = set(texts["uniform"]) & set(texts["mars"])
    assert shared, "uniform and MARS picked no common response at this seed; the test needs one"
    assert all(texts["uniform"][t] & texts["mars"][t] for t in shared)  # the same generations, not new ones
    asked = sum(r["metrics"]["lm_generations"] for r in runs.values())
    assert comparison.extra["lm_generations_computed"] < asked
    assert runs["uniform"]["test_ids"] == runs["mars"]["test_ids"]
    assert 0.0 <= comparison.points[0]["strategies"]["mars"]["bon_match_rate"]["mean"] <= 1.0
