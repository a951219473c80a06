"""The Review page's reward-model cache is bounded: one model per run, two runs per server."""

from __future__ import annotations

import gc
import weakref

from mars_core.present.model_cache import LatestPerRun
from mars_core.review.paraphrases import load_reward_model
from mars_core.run.refine import RefinementRun
from mars_core.store.sqlite import Store
from tests.ui.toy_runs import toy_config


def test_one_model_per_run_and_at_most_two_runs(tmp_path):
    store = Store(tmp_path / "cache.db")
    runs = [RefinementRun.create(store, toy_config(), name=f"toy {i}") for i in range(3)]
    first = runs[0]
    first.step()
    first.step()
    cache = LatestPerRun(max_runs=2)
    db = str(store.path)
    loads: list[tuple[int, int]] = []

    def get(run_id: int, epoch: int):
        def load():
            loads.append((run_id, epoch))
            return load_reward_model(Store(db), run_id, epoch)
        return cache.get(db, run_id, epoch, load)

    models = [get(first.run_id, e) for e in (0, 1, 2)]  # a Step per visit, as on the Review page
    gone = [weakref.ref(m) for m in models[:2]]
    assert models[0].weights.tolist() != models[2].weights.tolist()  # epochs really differ
    del models
    gc.collect()
    assert cache.entries() == [(db, first.run_id, 2)]
    assert all(ref() is None for ref in gone)  # older epochs' models were really let go
    assert get(first.run_id, 2) is get(first.run_id, 2) and loads.count((first.run_id, 2)) == 1

    get(runs[1].run_id, 0)
    get(runs[2].run_id, 0)  # a third run pushes out the least recently used one
    assert cache.entries() == [(db, runs[1].run_id, 0), (db, runs[2].run_id, 0)]
