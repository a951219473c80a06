"""The pages' shared copies of store data are the store's data, and a new epoch is seen at once."""

from __future__ import annotations

import pandas as pd

from mars_core.present import page_data, views
from mars_core.run.refine import RefinementRun
from mars_core.store.sqlite import Store
from tests.ui.toy_runs import toy_config


def test_shared_margins_and_pairs_match_the_store_and_follow_new_epochs(tmp_path):
    store = Store(tmp_path / "shared.db")
    run = RefinementRun.create(store, toy_config(), name="toy")
    before = page_data.margins(store, run.run_id)
    pd.testing.assert_frame_equal(before, views.margins_frame(store.margin_rows(run.run_id)))
    run.step()
    after = page_data.margins(store, run.run_id)  # a new epoch is a new key, never a stale copy
    pd.testing.assert_frame_equal(after, views.margins_frame(store.margin_rows(run.run_id)))
    assert sorted(after["epoch"].unique()) == [0, 1]
    one = page_data.margins(store, run.run_id, 1, "train")
    # a slice of the run's frame: counts stay float (NaN at epoch 0), the same values
    pd.testing.assert_frame_equal(one, views.margins_frame(store.margin_rows(run.run_id, 1, "train")), check_dtype=False)
    for split, synthetic in (("train", False), ("test", False), ("train", True), (None, None)):
        assert page_data.pairs(store, run.run_id, split, synthetic) == store.get_pairs(run.run_id, split, synthetic)
    assert page_data.pairs(store, run.run_id, "train", True), "the step added synthetic pairs"
