"""The Review page's Labels tab and the Margins page's "likely mislabeled" ranking, driven by AppTest on a real
toy run with out-of-fold margins; the store is checked after each click."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mars_core.present.safe_markdown import escape_markdown
from mars_core.review import labels
from mars_core.run.config import DataConfig, RefineConfig, RunConfig
from mars_core.run.refine import RefinementRun
from mars_core.store.sqlite import Store

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def noisy(tmp_path):
    store = Store(tmp_path / "ui.db")
    config = RunConfig(data=DataConfig(source="demo:toy", n_pairs=100, noise=0.2),
                       refine=RefineConfig(cross_fit_folds=5, budget_per_epoch=16, epochs=2))
    return store, RefinementRun.create(store, config).run_id


def open_page(store: Store, run_id: int, page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["db_path"] = str(store.path)
    at.session_state["run_id"] = run_id
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_swap_from_the_labels_tab_is_stored_signed_and_the_next_pair_shows(noisy):
    store, run_id = noisy
    at = open_page(store, run_id, "pages/review.py")
    assert at.button(key="labels_swap").disabled  # no name yet
    at.text_input(key="review_reviewer").input("ana").run()
    first = labels.suspects(store, run_id, top=1)["pair_id"].iloc[0]
    assert any(f"· {escape_markdown(first)} ·" in c.value for c in at.caption)
    at.button(key="labels_swap").click().run()
    assert not at.exception
    decision = store.label_decisions(run_id)[first]
    assert (decision.decision, decision.reviewer) == ("swap", "ana")
    assert decision.score == pytest.approx(float(labels.suspects(store, run_id, top=1)["score"].iloc[0]))
    assert any(escape_markdown(f"Swapped the label of {first}") in s.value for s in at.success)
    second = labels.suspects(store, run_id, undecided_only=True, top=1)["pair_id"].iloc[0]
    assert any(f"· {escape_markdown(second)} ·" in c.value for c in at.caption)
    at.button(key="labels_drop").click().run()
    assert store.label_decisions(run_id)[second].decision == "drop"
    assert next(m.value for m in at.metric if m.label == "Swap") == "1"


def test_margins_page_ranks_likely_mislabeled_pairs(noisy):
    store, run_id = noisy
    at = open_page(store, run_id, "pages/margins.py")
    table = next(d for d in at.dataframe if d.key == "mislabeled_table" or "score" in d.value.columns).value
    assert table["pair_id"].tolist() == labels.suspects(store, run_id, top=20)["pair_id"].tolist()
    assert table["score"].is_monotonic_decreasing
