"""The heavy parts of a run (encoder, paraphraser, reward model), built from its config.

Models load once per process: the loaders are memoised here, and the app wraps them in
st.cache_resource as well. The store's caches are attached per run, so features and
generations survive a restart.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .config import RunConfig
from .encoders import TextEncoder
from .features import Featurizer, TextFeaturizer, ToyFeaturizer
from .models import LinearRewardModel, RewardModel
from .paraphrase import LMParaphraser, ParaphraseConfig, Paraphraser
from .store import Store


@dataclass
class Components:
    featurizer: Featurizer
    model: RewardModel
    paraphraser: Paraphraser
    encoder: TextEncoder | None  # None for the toy: its "texts" are vectors, text filters do not apply


@functools.lru_cache(maxsize=4)
def load_encoder(name: str) -> TextEncoder:
    return TextEncoder(name)


@functools.lru_cache(maxsize=2)
def load_paraphraser(config: ParaphraseConfig) -> LMParaphraser:
    return LMParaphraser(config)


def build_components(config: RunConfig, store: Store | None = None) -> Components:
    """Everything a RefinementRun needs; caches in ``store`` are attached where it is given."""
    if config.data.is_toy:
        from .synthetic import ToyParaphraser

        featurizer: Featurizer = ToyFeaturizer()
        return Components(featurizer, LinearRewardModel(featurizer, config.train), ToyParaphraser(), None)
    encoder = load_encoder(config.refine.encoder)
    if store is not None:
        encoder.attach_persistent_cache(store.get_features, store.put_features)
    featurizer = TextFeaturizer(encoder, config.refine.feature_mode)
    paraphraser = load_paraphraser(config.paraphrase)
    if store is not None:
        paraphraser.cache = store
    return Components(featurizer, LinearRewardModel(featurizer, config.train), paraphraser, encoder)
