"""The heavy parts of a run (encoder, paraphraser, reward model), built from its config.

Models load once per process: the loaders are memoised here, and the app wraps them in
st.cache_resource as well. The store's caches are attached per run, so features and
generations survive a restart.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from mars_core.augment.paraphrase import LMParaphraser, ParaphraseConfig, Paraphraser
from mars_core.data.synthetic import ToyParaphraser
from mars_core.model.encoders import TextEncoder
from mars_core.model.features import Featurizer, TextFeaturizer, ToyFeaturizer
from mars_core.model.reward import LinearRewardModel, RewardModel
from mars_core.run.config import RunConfig
from mars_core.run.store import Store


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


def build_reward_model(config: RunConfig, store: Store | None = None) -> LinearRewardModel:
    """The run's reward model alone (untrained): what review and plots need, without the paraphraser."""
    if config.data.is_toy:
        featurizer: Featurizer = ToyFeaturizer()
    else:
        encoder = load_encoder(config.refine.encoder)
        if store is not None:
            encoder.attach_persistent_cache(store.get_features, store.put_features)
        featurizer = TextFeaturizer(encoder, config.refine.feature_mode)
    return LinearRewardModel(featurizer, config.train)


def build_components(config: RunConfig, store: Store | None = None) -> Components:
    """Everything a RefinementRun needs; caches in ``store`` are attached where it is given."""
    model = build_reward_model(config, store)
    if config.data.is_toy:
        return Components(model.featurizer, model, ToyParaphraser(), None)
    paraphraser = load_paraphraser(config.paraphrase)
    if store is not None:
        paraphraser.cache = store
    return Components(model.featurizer, model, paraphraser, load_encoder(config.refine.encoder))
