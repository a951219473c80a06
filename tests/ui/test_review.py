"""The review page driven by Streamlit's AppTest on a real toy run; the store is checked after each click."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mars_core.data.toy import format_toy_vector, parse_toy_vector
from mars_core.review import paraphrases as review
from mars_core.run.config import DataConfig, RefineConfig, RunConfig
from mars_core.run.refine import RefinementRun
from mars_core.store.sqlite import Store

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def toy(tmp_path):
    store = Store(tmp_path / "ui.db")
    config = RunConfig(
        data=DataConfig(source="demo:toy", n_pairs=100),
        refine=RefineConfig(cross_fit_folds=0, budget_per_epoch=48, epochs=3),
    )
    run = RefinementRun.create(store, config)
    run.step()
    return store, run.run_id


def open_page(store: Store, run_id: int, reviewer: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["db_path"] = str(store.path)
    at.session_state["run_id"] = run_id
    at.run()
    at.switch_page("pages/review.py").run()
    assert not at.exception, [e.value for e in at.exception]
    if reviewer is not None:
        at.text_input(key="review_reviewer").input(reviewer).run()
    return at


def shown_item(at: AppTest) -> str:
    """The paraphrase the focus view shows (its edit box is keyed by the paraphrase id)."""
    keys = [t.key for t in at.text_area if t.key and t.key.startswith("review_edit_")]
    assert len(keys) == 1, keys
    return keys[0].removeprefix("review_edit_")


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_mode_progress_and_no_decision_without_a_name(toy):
    store, run_id = toy
    at = open_page(store, run_id)
    assert any("auto" in i.value for i in at.info)
    assert any("Enter your name" in w.value for w in at.warning)
    assert all(at.button(key=f"review_{a}").disabled for a in ("accept", "reject", "edit"))
    pending = len(store.get_paraphrases(run_id, status="pending"))
    assert metric(at, "Pending") == str(pending)
    at.text_input(key="review_reviewer").input("   ").run()  # blanks are no name
    assert at.button(key="review_accept").disabled
    assert store.review_log(run_id) == []


def test_accept_reject_edit_each_reach_the_store_and_the_page_moves_on(toy):
    store, run_id = toy
    at = open_page(store, run_id, reviewer="ana")
    queue = review.review_queue(store, run_id)
    first = shown_item(at)
    assert first == queue["id"].iloc[0]  # most suspicious first

    at.button(key="review_accept").click().run()
    got = store.get_paraphrase(run_id, first)
    assert (got.status, got.reviewer) == ("accepted", "ana")
    second = shown_item(at)
    assert second != first and second == queue["id"].iloc[1]
    assert any("Accepted" in s.value for s in at.success)

    at.button(key="review_reject").click().run()
    assert store.get_paraphrase(run_id, second).status == "rejected"
    third = shown_item(at)

    generated = store.get_paraphrase(run_id, third).text
    new_text = format_toy_vector(parse_toy_vector(generated) + np.array([0.05, -0.05]))
    at.text_area(key=f"review_edit_{third}").input(new_text).run()
    at.button(key="review_edit").click().run()
    got = store.get_paraphrase(run_id, third)
    assert (got.status, got.text, got.edited_text, got.reviewer) == ("edited", generated, new_text, "ana")
    assert shown_item(at) not in (first, second, third)
    assert (metric(at, "Accepted"), metric(at, "Rejected"), metric(at, "Edited")) == ("1", "1", "1")

    skipped = shown_item(at)
    at.button(key="review_skip").click().run()
    assert store.get_paraphrase(run_id, skipped).status == "pending" and shown_item(at) != skipped


def test_a_bad_edit_is_refused_with_a_message(toy):
    store, run_id = toy
    at = open_page(store, run_id, reviewer="ana")
    pid = shown_item(at)
    at.text_area(key=f"review_edit_{pid}").input("just words").run()
    at.button(key="review_edit").click().run()
    assert any("toy vectors" in w.value for w in at.warning)
    assert store.get_paraphrase(run_id, pid).status == "pending" and shown_item(at) == pid


@pytest.mark.parametrize("statuses", [["pending"], ["pending", "rejected"]])
def test_item_decided_behind_the_reviewers_back_shows_who_and_moves_on(toy, statuses):
    store, run_id = toy
    at = open_page(store, run_id, reviewer="ana")
    at.multiselect(key="review_status").set_value(statuses).run()  # with "rejected" the item stays listed
    pid = shown_item(at)
    store.decide(run_id, pid, "rejected", "bob")  # a second reviewer, between two runs of this page
    at.button(key="review_accept").click().run()
    warnings = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "already decided by bob" in warnings
    got = store.get_paraphrase(run_id, pid)
    assert (got.status, got.reviewer) == ("rejected", "bob")  # nothing overwritten
    assert shown_item(at) != pid


def test_filters_and_order_change_the_queue(toy):
    store, run_id = toy
    at = open_page(store, run_id, reviewer="ana")
    table = lambda: at.dataframe[0].value  # noqa: E731
    everything = table()
    assert len(everything) == len(store.get_paraphrases(run_id, status="pending"))

    at.selectbox(key="review_side").select("rejected").run()
    rejected_side = table()
    assert 0 < len(rejected_side) < len(everything) and set(rejected_side["side"]) == {"rejected"}
    assert store.get_paraphrase(run_id, shown_item(at)).side == "rejected"
    at.selectbox(key="review_side").select("both").run()

    at.radio(key="review_order").set_value("oldest").run()
    oldest = [p.id for p in store.get_paraphrases(run_id, status="pending")]
    assert table()["id"].tolist() == oldest and shown_item(at) == oldest[0]

    at.button(key="review_accept").click().run()
    at.multiselect(key="review_status").set_value(["accepted"]).run()
    assert table()["id"].tolist() == [oldest[0]]

    at.multiselect(key="review_status").set_value(["pending"]).run()
    lo, hi = at.slider(key="review_margin").value
    at.slider(key="review_margin").set_value((lo, (lo + hi) / 2)).run()
    narrowed = table()
    assert len(narrowed) < len(everything) - 1 and (narrowed["margin"] <= (lo + hi) / 2 + 1e-9).all()


def test_export_buttons_offer_reviewed_data(toy):
    store, run_id = toy
    at = open_page(store, run_id, reviewer="ana")
    at.button(key="review_accept").click().run()
    assert not at.download_button, "nothing is exported before it is asked for (it reads every pair)"
    at.toggle(key="review_export_prepare").set_value(True).run()
    labels = [b.label for b in at.download_button]
    n = len(review.export_rows(store, run_id, "reviewed"))
    assert n > 0 and labels == [f"Download JSONL ({n} rows)", f"Download CSV ({n} rows)"]


def test_a_run_without_paraphrases_says_how_to_get_some(tmp_path):
    store = Store(tmp_path / "fresh.db")
    config = RunConfig(data=DataConfig(source="demo:toy", n_pairs=40), refine=RefineConfig(cross_fit_folds=0))
    run = RefinementRun.create(store, config)
    at = open_page(store, run.run_id, reviewer="ana")
    assert any("step the run" in i.value for i in at.info)
    assert not [b for b in at.button if (b.key or "").startswith("review_")] and not at.dataframe


def test_hard_pairs_picked_on_margins_narrow_the_queue(toy):
    store, run_id = toy
    everything = review.review_queue(store, run_id)
    picked = sorted(set(everything["pair_id"]))[:2]
    at = open_page(store, run_id)
    at.session_state["review_pair_ids"] = picked
    at.run()
    assert any("the 2 pairs picked" in i.value for i in at.info)
    table = at.dataframe[0].value
    expected = everything[everything["pair_id"].isin(picked)]
    assert 0 < len(table) == len(expected) < len(everything)
    assert set(table["id"]) == set(expected["id"])
    at.button(key="review_all_pairs").click().run()
    assert len(at.dataframe[0].value) == len(everything)
