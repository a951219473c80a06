"""The Compare page through AppTest: a stored comparison's numbers and figures, a sweep's curves, and a small
comparison started from the page in the background."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mars_core.compare.comparison import CompareSpec, run_comparison
from mars_core.run.config import DataConfig, RefineConfig, RunConfig
from mars_core.store.sqlite import Store
from tests.ui.app_jobs import finish_jobs
from tests.ui.test_app import chart

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


def _toy_spec(**changes) -> CompareSpec:
    base = RunConfig(data=DataConfig(source="demo:toy", n_pairs=150), refine=RefineConfig(epochs=1, budget_per_epoch=10))
    return CompareSpec(**{"base": base, "strategies": ("none", "uniform", "mars"), "seeds": 3, "best_of_n": 4,
                          **changes})


@pytest.fixture
def compare_root(tmp_path, monkeypatch):
    root = tmp_path / "compare"
    monkeypatch.setenv("MARS_COMPARE_DIR", str(root))
    monkeypatch.setenv("MARS_DB", str(tmp_path / "ui.db"))
    Store(tmp_path / "ui.db")
    return root


def _open(root: Path) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["db_path"] = str(root.parent / "ui.db")
    at.run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_stored_comparison_shows_its_numbers(compare_root):
    comparison = run_comparison(_toy_spec(), compare_root / "toy-a")
    at = _open(compare_root)
    assert at.selectbox(key="compare_folder").value.endswith("toy-a/comparison.json")
    table = at.dataframe[0].value
    assert list(table["strategy"]) == ["none", "uniform", "mars"]
    mars = comparison.points[0]["strategies"]["mars"]["test_accuracy"]
    assert table.set_index("strategy").loc["mars", "mean"] == pytest.approx(mars["mean"])
    diff = chart(at, "compare_difference")["data"][0]
    stored = comparison.points[0]["vs"]["uniform"]
    assert dict(zip(diff["y"], diff["x"])) == pytest.approx({s: stored[s]["test_accuracy"]["estimate"]
                                                              for s in ("none", "mars")})
    boxes = chart(at, "compare_distribution")["data"]
    assert [b["name"] for b in boxes] == ["none", "uniform", "mars"] and all(len(b["y"]) == 3 for b in boxes)
    assert not [c for c in at.get("plotly_chart") if c.key == "compare_sweep"]  # no sweep, no curve

    at.selectbox(key="compare_metric:toy-a").set_value("test_gold_accuracy").run()
    gold = comparison.points[0]["strategies"]["mars"]["test_gold_accuracy"]["mean"]
    assert at.dataframe[0].value.set_index("strategy").loc["mars", "mean"] == pytest.approx(gold)


def test_a_sweep_draws_a_curve_with_error_bars(compare_root):
    comparison = run_comparison(_toy_spec(seeds=2, sweep="budget", sweep_values=(0.5, 1.0)), compare_root / "sweep")
    at = _open(compare_root)
    curves = {t["name"]: t for t in chart(at, "compare_sweep")["data"]}
    assert set(curves) == {"none", "uniform", "mars"}
    assert curves["mars"]["x"] == [0.5, 1.0]
    expected = [p["strategies"]["mars"]["test_accuracy"]["std"] for p in comparison.points]
    assert curves["mars"]["error_y"]["array"] == pytest.approx(expected)


def test_a_small_comparison_runs_from_the_page(compare_root):
    at = _open(compare_root)
    assert any("No stored comparison" in i.value for i in at.info)
    at.multiselect(key="compare_strategies").set_value(["none", "mars"])
    at.number_input(key="compare_seeds").set_value(2)
    at.number_input(key="compare_epochs").set_value(1)
    at.number_input(key="compare_budget").set_value(6)
    at.text_input(key="compare_name").set_value("from-page")
    at.button(key="compare_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(type(e).__name__ == "Status" for e in at.main), "the page shows the running comparison's progress"
    finish_jobs(at, timeout=180)
    assert (compare_root / "from-page" / "comparison.json").exists()
    assert at.selectbox(key="compare_folder").value.endswith("from-page/comparison.json")
    assert list(at.dataframe[0].value["strategy"]) == ["none", "mars"]
    assert any("Comparison done" in s.value for s in at.success)
