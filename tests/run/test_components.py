"""Components: the paraphraser's language model loads only when a step first asks for paraphrases."""

from __future__ import annotations

import pytest

from mars_core.augment.paraphraser import ParaphraseConfig
from mars_core.model.encoders import ModelNotFoundError
from mars_core.run.components import LazyParaphraser, load_paraphraser


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
