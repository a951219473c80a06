"""The whole app through Streamlit's AppTest on real toy runs: every page, Step, the what-if slider, locks, escaping."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mars_core.present import sidebar
from mars_core.run.config import DataConfig, RefineConfig, RunConfig, with_overrides
from mars_core.run.demos import TEXT_DEMO_NAME, TOY_DEMO_NAME
from mars_core.run.refine import RefinementRun
from mars_core.store.sqlite import Store
from tests.ui.app_jobs import finish_jobs
from tests.ui.hostile_run import HOSTILE, SCRIPT, create_hostile_run
from tests.ui.toy_runs import TOY_BUDGET, toy_config

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
PAGES = ["pages/data.py", "pages/margins.py", "pages/budget.py", "pages/curvature.py", "pages/pairs.py",
         "pages/teach.py", "pages/review.py"]
BUDGET = TOY_BUDGET


def open_app(store: Store, run_id: int | None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["db_path"] = str(store.path)
    at.session_state["run_id"] = run_id
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _decode(node):
    """Plotly 7 writes numeric arrays as {"dtype", "bdata"}; turn them back into lists."""
    if isinstance(node, dict):
        if "bdata" in node and "dtype" in node:
            return np.frombuffer(base64.b64decode(node["bdata"]), dtype=np.dtype(node["dtype"])).tolist()
        return {k: _decode(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_decode(v) for v in node]
    return node


def chart(at: AppTest, key: str) -> dict:
    """The figure JSON of the plotly chart with this key, as the browser receives it."""
    found = [c for c in at.get("plotly_chart") if c.key == key]
    assert len(found) == 1, [c.key for c in at.get("plotly_chart")]
    return _decode(json.loads(found[0].proto.spec))


def step(at: AppTest) -> AppTest:
    at.button(key="step").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return finish_jobs(at)


def test_the_pages_tested_here_are_every_page_of_the_app():
    files = {f"pages/{path.name}" for path in (ROOT / "pages").glob("*.py")}
    assert set(PAGES) | {"pages/compare.py"} == files, "a page without a test here, or a test without a page"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_before_and_after_a_step(toy, page):
    store, run_id = toy
    assert (ROOT / page).is_file(), f"{page} is missing: a page the app navigates to must exist"
    at = open_app(store, run_id, page)
    assert at.session_state["run_id"] == run_id
    step(at)
    assert store.epochs(run_id) == [0, 1]
    assert not at.exception, [e.value for e in at.exception]


def test_step_moves_the_histogram_and_the_allocation(toy):
    store, run_id = toy
    at = open_app(store, run_id, "pages/margins.py")
    before = chart(at, "margin_histogram")
    assert [t["name"] for t in before["data"] if t["type"] == "bar"] == ["epoch 0"]
    assert any(m.label == "Epoch" and m.value == "0 / 4" for m in at.sidebar.get("metric"))

    step(at)
    after = chart(at, "margin_histogram")
    bars = [t for t in after["data"] if t["type"] == "bar"]
    assert [t["name"] for t in bars] == ["epoch 1"], "the page follows the new epoch"
    test_margins = [r["margin"] for r in store.margin_rows(run_id, 1, "test")]
    assert sum(bars[0]["y"]) == len(test_margins)
    assert bars[0]["y"] != [t for t in before["data"] if t["type"] == "bar"][0]["y"]
    assert any(m.label == "Epoch" and m.value == "1 / 4" for m in at.sidebar.get("metric"))
    assert any(m.label == "Budget left" and m.value == str(4 * BUDGET - BUDGET) for m in at.sidebar.get("metric"))
    statuses = [e.label for e in at.sidebar if type(e).__name__ == "Status"]
    assert any(label.startswith("Epoch 1 done") for label in statuses), statuses

    at.multiselect(key="margins_overlay").set_value([0]).run()
    overlay = chart(at, "margin_histogram")
    assert [t["name"] for t in overlay["data"] if t["type"] == "bar"] == ["epoch 0", "epoch 1"]
    at.select_slider(key="margins_epoch__1").set_value(0).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Epoch 0" in [h.value for h in at.subheader]
    at.select_slider(key="margins_epoch__1").set_value(1).run()

    at.switch_page("pages/budget.py").run()
    assert not at.exception
    stored = chart(at, "stored_allocation")
    counts = next(t for t in stored["data"] if t["type"] == "bar")["y"]
    assert sum(counts) == BUDGET
    assert counts == sorted(counts, reverse=True), "largest share first, and counts are monotone in q"
    what_if_before = next(t for t in chart(at, "whatif_allocation")["data"] if t["type"] == "scatter")["y"]

    at.switch_page("pages/margins.py").run()
    back = [t["name"] for t in chart(at, "margin_histogram")["data"] if t["type"] == "bar"]
    assert back == ["epoch 1"], "coming back to a page keeps showing the newest epoch"
    at.switch_page("pages/budget.py").run()

    step(at)
    assert store.epochs(run_id) == [0, 1, 2]
    stored2 = chart(at, "stored_allocation")
    assert "Epoch 2" in stored2["layout"]["title"]["text"]
    what_if_after = next(t for t in chart(at, "whatif_allocation")["data"] if t["type"] == "scatter")["y"]
    assert what_if_after != what_if_before, "the what-if follows the newest epoch's margins"


def test_budget_before_any_allocation_and_the_live_tau_slider(toy):
    store, run_id = toy
    at = open_app(store, run_id, "pages/budget.py")
    assert any("nothing was allocated yet" in i.value for i in at.info)
    n_pairs = len(store.get_pairs(run_id, split="train"))
    sharp = chart(at, "whatif_allocation")
    q_sharp = next(t for t in sharp["data"] if t["type"] == "scatter")["y"]
    at.slider(key="whatif_tau").set_value(0.0).run()
    flat = chart(at, "whatif_allocation")
    q_flat = next(t for t in flat["data"] if t["type"] == "scatter")["y"]
    assert q_flat == pytest.approx([1 / n_pairs] * n_pairs)
    assert max(q_sharp) > max(q_flat)
    effective = next(m.value for m in at.metric if m.label.startswith("MARS effective"))
    assert float(effective) == pytest.approx(n_pairs, abs=0.05)
    comparison = chart(at, "strategy_comparison")
    totals = {t["legendgroup"]: sum(t["y"]) for t in comparison["data"] if t.get("mode") == "markers"}
    assert totals == {"mars": BUDGET, "uniform": BUDGET, "won": BUDGET}
    assert store.epochs(run_id) == [0], "a what-if never steps"


def test_run_n_epochs_then_the_run_is_finished(toy):
    store, run_id = toy
    at = open_app(store, run_id)
    at.number_input(key="run_n").set_value(10).run()
    at.button(key="run_n_button").click().run()
    assert not at.exception, [e.value for e in at.exception]
    finish_jobs(at)
    assert store.epochs(run_id) == [0, 1, 2, 3, 4]
    assert any("reached the last epoch" in i.value for i in at.sidebar.info)
    assert at.button(key="step").disabled


def test_a_step_held_elsewhere_is_a_warning_not_a_second_step(toy):
    store, run_id = toy
    assert store.acquire_step_lock(run_id, "otherhost:4242:deadbeef")
    at = open_app(store, run_id, "pages/margins.py")
    assert any("locked by otherhost" in w.value for w in at.sidebar.warning)
    step(at)
    assert store.epochs(run_id) == [0]
    assert any("being stepped elsewhere" in w.value for w in at.sidebar.warning)
    assert store.step_lock_owner(run_id) == "otherhost:4242:deadbeef", "another owner's lock is never taken"


def test_a_stale_lock_of_a_dead_process_can_be_cleared(toy):
    import socket

    store, run_id = toy
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = f"{socket.gethostname()}:{dead.pid}:cafe0000"
    assert store.acquire_step_lock(run_id, owner)
    at = open_app(store, run_id)
    assert any("no longer exists" in w.value for w in at.sidebar.warning)
    at.button(key="clear_lock").click().run()
    assert store.step_lock_owner(run_id) is None
    step(at)
    assert store.epochs(run_id) == [0, 1]


def test_first_launch_builds_the_demo_runs_once(tmp_path, monkeypatch):
    """The real demo (MiniLM + SmolLM2) is built in the browser test; here toy stand-ins keep it fast."""
    monkeypatch.setattr(sidebar, "demo_configs", lambda: [(TEXT_DEMO_NAME, toy_config()),
                                                          (TOY_DEMO_NAME, toy_config())])
    store = Store(tmp_path / "fresh.db")
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["db_path"] = str(store.path)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    finish_jobs(at)
    runs = store.list_runs()
    assert [r.name for r in runs] == [TEXT_DEMO_NAME, TOY_DEMO_NAME]
    assert at.session_state["run_id"] == runs[0].id
    at.run()
    at.switch_page("pages/teach.py").run()
    assert len(store.list_runs()) == 2, "reruns and page switches never build them again"


def test_a_run_created_while_the_sidebar_draws_shows_on_the_next_draw(tmp_path, monkeypatch):
    """The first launch's race (seen once in a CI replica): the demo job stores its first run after the page
    chose its run (none yet) and before the sidebar lists the runs. The page must draw, not fail on run None."""
    store = Store(tmp_path / "fresh.db")
    chosen = sidebar.current_run_id
    monkeypatch.setattr(sidebar, "ensure_demo_runs", lambda: None)

    def choose_then_a_job_creates_a_run() -> int | None:
        run_id = chosen()
        if not store.list_runs():
            RefinementRun.create(store, toy_config(), name="made by a job meanwhile")
        return run_id

    monkeypatch.setattr(sidebar, "current_run_id", choose_then_a_job_creates_a_run)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["db_path"] = str(store.path)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["run_id"] == store.list_runs()[0].id
    assert at.sidebar.selectbox(key="_run_picker").value == at.session_state["run_id"]


def test_teach_page_draws_the_toy_and_what_mars_picked(toy):
    store, run_id = toy
    at = open_app(store, run_id, "pages/teach.py")
    assert len(at.latex) == 3
    names0 = [t["name"] for t in chart(at, "toy_figure")["data"]]
    assert "boundary wᵀΔφ = 0" in names0 and not any(n.startswith("picked") for n in names0)
    step(at)
    figure = chart(at, "toy_figure")
    names = [t["name"] for t in figure["data"]]
    picked = sum(1 for r in store.margin_rows(run_id, 1, "train") if r["count"])
    assert f"picked this epoch ({picked})" in names
    assert {"Hessian ellipse", "Hessian ellipse before", "boundary before this epoch (the model that picked)"} <= set(names)
    w = store.get_epoch(run_id, 1, with_model=True).model_state["weights"]
    line = next(t for t in figure["data"] if t["name"] == "boundary wᵀΔφ = 0")
    assert abs((line["x"][1] - line["x"][0]) * w[0] + (line["y"][1] - line["y"][0]) * w[1]) < 1e-6


def test_teach_page_offers_the_toy_when_a_text_run_is_selected(toy):
    store, toy_id = toy
    text_id = create_hostile_run(store)
    at = open_app(store, text_id, "pages/teach.py")
    assert any("not one" in i.value for i in at.info)
    at.button(key="to_toy").click().run()
    assert at.session_state["run_id"] == toy_id
    assert chart(at, "toy_figure")


def test_curvature_page_compares_runs(toy):
    store, run_id = toy
    other = RefinementRun.create(store, toy_config(), name="second")
    other.step()
    at = open_app(store, run_id, "pages/curvature.py")
    at.multiselect(key="curvature_runs").set_value([run_id, other.run_id]).run()
    trend = chart(at, "curvature_trend")
    assert len({t["name"] for t in trend["data"]}) == 2
    scatter = chart(at, "curvature_scatter")
    assert scatter["data"][0]["marker"]["colorbar"]["title"]["text"] == "‖Δφ‖"


def test_data_page_loads_a_file_with_a_column_map_and_reports_errors(toy, tmp_path):
    store, run_id = toy
    at = open_app(store, run_id, "pages/data.py")
    at.radio(key="data_how").set_value("Path on the server").run()
    at.text_input(key="data_path").input(str(ROOT / "tests/fixtures/data/generic_renamed.csv")).run()
    at.selectbox(key="data_format").set_value("generic").run()
    for ours, theirs in (("prompt", "question"), ("chosen", "good_answer"), ("rejected", "bad_answer")):
        at.selectbox(key=f"data_map_{ours}").set_value(theirs).run()
    at.button(key="data_load").click().run()
    assert not at.exception and not at.error
    assert any("pairs loaded" in s.value for s in at.success)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a"}\n')
    at.text_input(key="data_path").input(str(bad)).run()
    at.button(key="data_load").click().run()
    shown = [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]  # messages are shown markdown-escaped
    assert any("bad.jsonl" in m and "'rejected'" in m for m in shown), shown


def test_hostile_text_is_shown_as_text_never_as_markup(tmp_path, monkeypatch):
    store = Store(tmp_path / "hostile.db")
    run_id = create_hostile_run(store)
    monkeypatch.setenv("MARS_DB", str(store.path))
    for page in ("pages/pairs.py", "pages/data.py", "pages/margins.py", "pages/budget.py"):
        at = open_app(store, run_id, page)
        for md in at.markdown:
            assert not md.proto.allow_html, f"{page}: markdown with HTML allowed: {md.value[:80]}"
        rendered = [*at.markdown, *at.caption, *at.info, *at.warning, *at.error, *at.success]
        for element in rendered:  # every element that renders markdown got escaped text
            assert SCRIPT not in element.value and "**bold**" not in element.value, (page, element.value)
            assert "$x$" not in element.value, (page, element.value)
        assert not at.get("html")
    texts = [t.value for t in at.text] if (at := open_app(store, run_id, "pages/pairs.py")) else []
    assert f"Good answer {HOSTILE}" in texts and f"Prompt {HOSTILE}" in texts
    escaped = [md.value for md in at.markdown if "script" in md.value]
    assert escaped and all("\\<script\\>" in v for v in escaped)


@pytest.mark.slow
def test_a_fine_tuned_run_steps_through_the_app(tmp_path, monkeypatch):
    """Issue 10: the fine-tuned reward model behind the same sidebar, Step and Curvature page as the linear one."""
    config = with_overrides(
        RunConfig(data=DataConfig(source="demo:text", n_pairs=40),
                  refine=RefineConfig(cross_fit_folds=0, budget_per_epoch=0, epochs=2)),
        allocation={"strategy": "none"}, reward={"kind": "finetune", "max_length": 64, "batch_size": 8},
    )
    store = Store(tmp_path / "finetune.db")
    run_id = RefinementRun.create(store, config, name="fine-tuned").run_id
    monkeypatch.setenv("MARS_DB", str(store.path))
    at = open_app(store, run_id)
    assert any("reward model fine-tuned packaged:minilm" in c.value for c in at.sidebar.caption)
    step(at)
    assert store.epochs(run_id) == [0, 1]
    statuses = [e.label for e in at.sidebar if type(e).__name__ == "Status"]
    assert any(label.startswith("Epoch 1 done") for label in statuses), statuses
    assert store.get_epoch(run_id, 1).metrics["fit_details"]["optimizer_steps"] > 0
    at.switch_page("pages/curvature.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "gauss-newton" in store.get_epoch(run_id, 1).curvature["method"]
