"""The app's shell through AppTest: page frame in Streamlit's legacy mode, ?run= in the address, delete, New run."""

from __future__ import annotations

import json
import os
import re
import socket

import pytest
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from mars_core.run.refine import RefinementRun
from mars_core.run.settings import form_settings
from tests.ui.app_jobs import finish_jobs
from tests.ui.test_app import APP, ROOT, open_app
from tests.ui.toy_runs import toy_config


def form_widgets(at: AppTest) -> dict:
    widgets = [*at.sidebar.selectbox, *at.sidebar.number_input, *at.sidebar.text_input, *at.sidebar.checkbox]
    return {w.key: w for w in widgets if w.key}


def submit(at: AppTest, label: str = "Create run") -> AppTest:
    next(b for b in at.sidebar.button if b.label == label).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown(elements) -> list[str]:
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]  # messages are shown markdown-escaped


@pytest.mark.parametrize("page", ["pages/pairs.py", "pages/margins.py", "pages/review.py"])
def test_a_deep_link_in_the_legacy_pages_mode_shows_the_page_once_inside_the_app(toy, page, monkeypatch,
                                                                                 navigation_like_the_server):
    """A server's first request on /pairs runs pages/pairs.py on its own; page_frame moves it into the app."""
    monkeypatch.setattr(PagesManager, "__init__", navigation_like_the_server)  # every run starts legacy
    store, run_id = toy
    at = open_app(store, run_id)
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.title) == 1, [t.value for t in at.title]
    assert any(m.label == "Epoch" for m in at.sidebar.get("metric")), "the sidebar is drawn around the page"
    assert at.query_params.get("run") == str(run_id)


def test_the_selected_run_stays_in_the_address_and_the_address_selects_a_run(toy):
    store, first = toy
    second = RefinementRun.create(store, toy_config(), name="second").run_id
    at = open_app(store, first, "pages/budget.py")
    assert at.query_params.get("run") == str(first)
    at.selectbox(key="_run_picker").set_value(second).run()
    assert at.session_state["run_id"] == second and at.query_params.get("run") == str(second)
    at.switch_page("pages/curvature.py").run()
    assert at.query_params.get("run") == str(second), "a page switch keeps ?run="

    shared = AppTest.from_file(APP, default_timeout=120)  # someone opens the shared address
    shared.session_state["db_path"] = str(store.path)
    shared.query_params["run"] = str(first)
    shared.run()
    assert shared.session_state["run_id"] == first and shared.title[0].value == "Margins"


def test_deleting_a_run_asks_first_and_then_removes_it(toy):
    store, run_id = toy
    other = RefinementRun.create(store, toy_config(), name="keep me").run_id
    at = open_app(store, run_id)
    at.button(key="delete_run").click().run()
    assert any(f"Delete run #{run_id}" in w for w in shown(at.sidebar.warning))
    assert len(store.list_runs()) == 2, "nothing is deleted before the confirmation"
    at.button(key="delete_cancel").click().run()
    assert [r.id for r in store.list_runs()] == [run_id, other]
    assert not [b for b in at.sidebar.button if b.key == "delete_confirm"], "cancel closes the question"
    at.button(key="delete_run").click().run()
    at.button(key="delete_confirm").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [r.id for r in store.list_runs()] == [other] and store.epochs(run_id) == []
    assert at.session_state["run_id"] == other and at.query_params.get("run") == str(other)


def test_a_run_being_stepped_elsewhere_is_not_deleted(toy):
    store, run_id = toy
    at = open_app(store, run_id)
    at.button(key="delete_run").click().run()
    assert store.acquire_step_lock(run_id, f"{socket.gethostname()}:{os.getppid()}:live0000")  # a live process
    at.button(key="delete_confirm").click().run()
    assert any("being stepped" in e for e in shown(at.sidebar.error))
    assert [r.id for r in store.list_runs()] == [run_id]


def test_the_new_run_form_offers_every_setting_with_the_clis_help(toy):
    store, run_id = toy
    at = open_app(store, run_id)
    widgets = form_widgets(at)
    for spec in form_settings():
        widget = widgets.get(f"new_{spec.dest}")
        assert widget is not None, f"{spec.flag} has no field in the New-run form"
        assert widget.help == f"{spec.help} ({spec.flag})"
    assert "new_test_data" in widgets, "a held-out file can be given"


def test_the_new_run_form_creates_the_run_it_describes(toy):
    store, run_id = toy
    at = open_app(store, run_id)
    at.text_input(key="new_name").input("from the form")
    at.selectbox(key="new_source").set_value("demo:toy")
    at.number_input(key="new_pairs").set_value(60)
    at.selectbox(key="new_strategy").set_value("uniform")
    at.number_input(key="new_budget").set_value(16)
    at.number_input(key="new_epochs").set_value(2)
    at.number_input(key="new_folds").set_value(0)
    at.number_input(key="new_seed").set_value(7)
    finish_jobs(submit(at))
    created = store.list_runs()[-1]
    assert created.name == "from the form" and created.id != run_id
    cfg = created.config
    assert cfg["data"]["source"] == "demo:toy" and cfg["data"]["n_pairs"] == 60
    assert cfg["allocation"]["strategy"] == "uniform"
    assert (cfg["refine"]["budget_per_epoch"], cfg["refine"]["epochs"], cfg["refine"]["cross_fit_folds"]) == (16, 2, 0)
    assert cfg["data"]["seed"] == cfg["refine"]["seed"] == 7, "--seed sets both, as on the command line"
    assert store.epochs(created.id) == [0]
    assert at.session_state["run_id"] == created.id


def test_the_new_run_form_names_the_setting_a_bad_value_comes_from(toy):
    store, run_id = toy
    at = open_app(store, run_id)
    at.selectbox(key="new_source").set_value("demo:toy")
    at.text_input(key="new_test_data").input("held_out.jsonl")
    submit(at)
    assert any("--test-data" in e for e in shown(at.sidebar.error))
    at.text_input(key="new_test_data").input("")
    at.text_input(key="new_column_map").input("prompt")
    submit(at)
    assert any("prompt=question" in e for e in shown(at.sidebar.error))
    assert [r.id for r in store.list_runs()] == [run_id], "nothing is stored for a refused form"


@pytest.mark.slow
def test_a_file_run_with_a_held_out_file_from_the_form(toy, tmp_path):
    """Loads the packaged MiniLM encoder (strategy none: no paraphraser)."""
    store, run_id = toy

    def write(name: str, n: int) -> str:
        path = tmp_path / name
        path.write_text("".join(json.dumps({"prompt": f"{name} question {i}?", "chosen": f"A careful answer {i}.",
                                            "rejected": f"no {i}"}) + "\n" for i in range(n)))
        return str(path)

    at = open_app(store, run_id)
    at.selectbox(key="new_source").set_value("file path…")
    at.text_input(key="new_path").input(write("train.jsonl", 12))
    at.text_input(key="new_test_data").input(write("held.jsonl", 5))
    at.selectbox(key="new_strategy").set_value("none")
    at.number_input(key="new_folds").set_value(0)
    finish_jobs(submit(at))
    assert not shown(at.sidebar.error)
    created = store.list_runs()[-1].id
    assert len(store.get_pairs(created, split="train")) == 12, "with a held-out file every pair of --data trains"
    test = store.get_pairs(created, split="test")
    assert len(test) == 5 and all(p.prompt.startswith("held.jsonl") for p in test)


@pytest.mark.parametrize("page", ["pages/review.py", "pages/margins.py"])
def test_a_page_file_run_on_its_own_says_how_to_start_the_app(toy, page, monkeypatch, navigation_like_the_server):
    """`streamlit run pages/review.py` (or AppTest on a page file) used to rerun forever: now it explains."""
    monkeypatch.setattr(PagesManager, "__init__", navigation_like_the_server)  # as a fresh server starts
    at = AppTest.from_file(str(ROOT / page), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.title, "the page did not draw itself outside the app"
    assert len(at.error) == 1 and "streamlit run app.py" in at.error[0].value
