"""The runtime: the paraphraser's language model loads only when a step first asks for paraphrases, and
loaded models are shared between runs while their caches are not."""

from __future__ import annotations

import numpy as np
import pytest

from mars_core.augment.paraphraser import ParaphraseConfig
from mars_core.model.encoders import ModelNotFoundError, text_key
from mars_core.run.components import LazyParaphraser, build_runtime, load_encoder, load_paraphraser
from mars_core.run.config import DataConfig, RunConfig
from mars_core.store.sqlite import Store
from tests.dict_cache import DictCache


def test_the_lazy_paraphraser_loads_nothing_until_asked_for_text(tmp_path):
    missing = str(tmp_path / "no-such-model.gguf")
    lazy = LazyParaphraser(ParaphraseConfig(model=missing))
    misses = load_paraphraser.cache_info().misses
    assert lazy.name.startswith(f"lm:{missing}|"), "the name (cache keys, provenance) needs no model"
    assert lazy.paraphrase([], 2, 0).texts == []
    assert not lazy.loaded and load_paraphraser.cache_info().misses == misses
    with pytest.raises(ModelNotFoundError, match="no-such-model.gguf"):
        lazy.paraphrase(["a text"], 1, 0)  # the first real request loads it


@pytest.mark.slow
def test_lazy_name_matches_the_loaded_paraphraser():
    lazy = LazyParaphraser(ParaphraseConfig())
    assert lazy.name == load_paraphraser(ParaphraseConfig()).name



@pytest.mark.slow
def test_two_runtimes_share_the_loaded_encoder_but_not_its_caches(tmp_path):
    config = RunConfig(data=DataConfig(source="demo:text", n_pairs=20))
    first, second = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    a, b = build_runtime(config, first), build_runtime(config, second)
    assert a.encoder._model is b.encoder._model is load_encoder(config.refine.encoder)._model, "one network"
    vector = a.encoder.encode(["a sentence only the first run saw"])
    key = text_key(a.encoder.name, "a sentence only the first run saw")
    assert list(first.get_features([key])) == [key], "the first run's store caches its features"
    assert second.get_features([key]) == {} and b.encoder.encoded_count == 0, "the second run's caches are untouched"
    assert load_encoder(config.refine.encoder)._persist is None, "the shared encoder is never pointed at a store"
    np.testing.assert_array_equal(b.encoder.encode(["a sentence only the first run saw"]), vector)
    assert b.encoder.encoded_count == 1 and list(second.get_features([key])) == [key]


@pytest.mark.slow
def test_a_runs_paraphraser_is_a_view_with_its_own_cache_and_prefix_cache():
    config = ParaphraseConfig(batch_size=2, max_new_tokens=24, engine="transformers")  # the engine with a KV prefix
    shared = load_paraphraser(config)
    cache_a, cache_b = DictCache(), DictCache()
    a, b = LazyParaphraser(config, cache_a), LazyParaphraser(config, cache_b)
    got = a.paraphrase(["The shop opens at nine and closes at five."], 2, seed=0)
    assert len(got.texts[0]) == 2 and len(cache_a.rows) == 2 and cache_b.rows == {}
    view_a, view_b = a.model(), b.model()
    assert view_a.model is view_b.model is shared.model and view_a.tokenizer is shared.tokenizer, "weights shared"
    assert view_a.cache is cache_a and view_b.cache is cache_b and shared.cache is None, "no rewiring"
    assert view_a._prefix is not None and view_b._prefix is None and shared._prefix is None, "prefix caches per run"
    again = b.paraphrase(["The shop opens at nine and closes at five."], 2, seed=0)
    assert again.texts == got.texts and again.cache_hits == 0, "the second run generated the same rows itself"


@pytest.mark.slow
def test_a_runs_ct2_paraphraser_is_a_view_on_the_one_loaded_generator():
    config = ParaphraseConfig(batch_size=2, max_new_tokens=24, engine="ct2")
    shared = load_paraphraser(config)
    cache_a, cache_b = DictCache(), DictCache()
    a, b = LazyParaphraser(config, cache_a), LazyParaphraser(config, cache_b)
    got = a.paraphrase(["The shop opens at nine and closes at five."], 2, seed=0)
    assert len(got.texts[0]) == 2 and len(cache_a.rows) == 2 and cache_b.rows == {}
    view_a, view_b = a.model(), b.model()
    assert view_a.generator is view_b.generator is shared.generator, "one converted model in memory"
    assert view_a.cache is cache_a and view_b.cache is cache_b and shared.cache is None, "no rewiring"
    again = b.paraphrase(["The shop opens at nine and closes at five."], 2, seed=0)
    # CTranslate2 rows are not seeded per row (ct2_paraphraser.py): the second run generates its own, caches its own
    assert again.cache_hits == 0 and len(again.texts[0]) == 2 and len(cache_b.rows) == 2 and len(cache_a.rows) == 2
