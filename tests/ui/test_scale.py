"""Every page at 20,000 pairs (a real 2-D toy run, one Step): densities instead of one marker per pair, WebGL
where points stay, tables paged with the total shown, and a figure the browser can draw (bounded JSON).

The store is built in seconds (the toy needs no model); the timed browser figures are in bench/app.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mars_core.present import dense, figures
from mars_core.present.page_data import TABLE_ROWS
from mars_core.run.config import DataConfig, RefineConfig, RunConfig
from mars_core.run.refine import RefinementRun
from mars_core.store.sqlite import Store
from tests.ui.test_app import APP, chart

PAIRS = 20_000
TRAIN = 16_000  # the toy's default 20 % test split
BUDGET = 40
SPEC_BYTES = 600_000  # one figure as sent to the browser: 20,000 markers would be several MB


@pytest.fixture(scope="module")
def big_toy(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("scale") / "scale.db")
    config = RunConfig(data=DataConfig(source="demo:toy", n_pairs=PAIRS),
                       refine=RefineConfig(cross_fit_folds=0, budget_per_epoch=BUDGET, epochs=3))
    run = RefinementRun.create(store, config, name="20k toy")
    run.step()
    return store, run.run_id


@pytest.fixture(scope="module")
def at(big_toy):
    store, run_id = big_toy
    app = AppTest.from_file(APP, default_timeout=300)
    app.session_state["db_path"] = str(store.path)
    app.session_state["run_id"] = run_id
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def visit(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def spec_size(at: AppTest, key: str) -> int:
    found = [c for c in at.get("plotly_chart") if c.key == key]
    return len(found[0].proto.spec)


def traces(spec: dict, kind: str) -> list[dict]:
    return [t for t in spec["data"] if t.get("type") == kind]


def density_total(trace: dict) -> int:
    return int(np.asarray(trace["customdata"]).sum())  # Plotly sends the 2-D counts flat (bdata)


def test_margins_histogram_is_binned_on_the_server(at):
    visit(at, "margins")
    spec = chart(at, "margin_histogram")
    assert all(t["type"] == "bar" for t in spec["data"])
    assert sum(spec["data"][0]["y"]) == PAIRS - TRAIN  # every test pair counted, in 40 bars
    assert spec_size(at, "margin_histogram") < SPEC_BYTES


def test_curvature_is_a_density_with_the_largest_and_allocated_pairs_as_webgl_points(at, big_toy):
    visit(at, "curvature")
    spec = chart(at, "curvature_scatter")
    (heat,) = traces(spec, "heatmap")
    assert density_total(heat) == TRAIN
    (points,) = traces(spec, "scattergl")
    assert figures.HARDEST_SHOWN <= len(points["x"]) <= figures.HARDEST_SHOWN + BUDGET
    store, run_id = big_toy
    largest = max(r["curvature"] for r in store.margin_rows(run_id, 1, "train"))
    assert max(points["y"]) == pytest.approx(largest)  # the pair carrying the most curvature is still a point
    assert not traces(spec, "scatter") or all(len(t["x"]) <= 200 for t in traces(spec, "scatter"))
    assert spec_size(at, "curvature_scatter") < SPEC_BYTES


def test_budget_draws_only_what_can_be_seen_and_the_what_if_in_webgl(at):
    visit(at, "budget")
    stored = chart(at, "stored_allocation")
    (bars,) = traces(stored, "bar")
    assert 0 < len(bars["x"]) <= BUDGET and all(c > 0 for c in bars["y"])
    (line,) = traces(stored, "scatter")
    assert len(line["x"]) <= dense.LINE_POINTS + 500 and line["x"][0] == 1 and line["x"][-1] == TRAIN
    comparison = chart(at, "strategy_comparison")
    assert {t["name"] for t in traces(comparison, "scattergl")} == {"mars counts", "uniform counts", "won counts"}
    assert "pairs at 0 not drawn" in json.dumps(comparison["layout"]["annotations"])
    for key in ("stored_allocation", "whatif_allocation", "strategy_comparison"):
        assert spec_size(at, key) < SPEC_BYTES, key


def test_teach_plane_is_a_density_with_the_pairs_near_the_boundary_and_the_picked_ones_drawn(at):
    visit(at, "teach")
    spec = chart(at, "toy_figure")
    (heat,) = traces(spec, "heatmap")
    assert density_total(heat) == TRAIN
    gl = {t["name"]: t for t in traces(spec, "scattergl")}
    near = [t for name, t in gl.items() if "nearest the boundary" in name]
    assert sum(len(t["x"]) for t in near) == dense.POINTS_MAX // 2
    picked = next(t for name, t in gl.items() if name.startswith("picked this epoch"))
    assert 0 < len(picked["x"]) <= BUDGET
    assert spec_size(at, "toy_figure") < SPEC_BYTES


def test_the_pairs_table_is_paged_and_says_how_many_there_are(at):
    visit(at, "data")
    table = at.dataframe[0]  # the pairs of the run (AppTest does not expose dataframe keys)
    assert len(table.value) == TABLE_ROWS
    assert any(f"{TRAIN:,} train pairs" in c.value for c in at.caption)
    at.number_input(key="data_pairs_page").set_value(TRAIN // TABLE_ROWS).run()
    table = at.dataframe[0]  # the pairs of the run (AppTest does not expose dataframe keys)
    assert len(table.value) == TABLE_ROWS and any(f"rows {TRAIN - TABLE_ROWS + 1:,}–{TRAIN:,}" in c.value
                                                  for c in at.caption)


@pytest.mark.parametrize("page", ["pairs", "review", "compare"])
def test_the_other_pages_render_at_this_size(at, page):
    visit(at, page)
    assert at.title
