"""The heavy parts of a run (encoder, paraphraser, reward model), built from its config.

Models load once per process: the loaders are memoised here, and the app wraps them in
st.cache_resource as well. The store's caches are attached per run, so features and
generations survive a restart.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from mars_core.augment.ct2_paraphraser import load_local, local_name
from mars_core.augment.openai_paraphraser import OpenAIParaphraser, openai_name
from mars_core.augment.paraphraser import (
    ParaphraseCache,
    ParaphraseConfig,
    Paraphraser,
    ParaphraseResult,
    PlainParaphraser,
    RowParaphraser,
)
from mars_core.data.toy import ToyParaphraser
from mars_core.model.encoders import TextEncoder
from mars_core.model.features import Featurizer, TextFeaturizer, ToyFeaturizer
from mars_core.model.finetune import FinetuneRewardModel
from mars_core.model.reward import LinearRewardModel, RewardModel
from mars_core.run.config import RunConfig
from mars_core.store.sqlite import Store


@dataclass
class Components:
    featurizer: Featurizer | None  # None for the fine-tuned model: it reads the text itself
    model: RewardModel
    paraphraser: Paraphraser
    encoder: TextEncoder | None  # None for the toy: its "texts" are vectors, text filters do not apply


@functools.lru_cache(maxsize=4)
def load_encoder(name: str) -> TextEncoder:
    return TextEncoder(name)


@functools.lru_cache(maxsize=2)
def load_paraphraser(config: ParaphraseConfig) -> RowParaphraser:
    """The in-process model (engine per config.engine), or a client of an OpenAI-compatible server for openai:BASE_URL#MODEL."""
    return OpenAIParaphraser(config) if config.is_openai else load_local(config)


class LazyParaphraser:
    """The language-model paraphraser, loaded on first use.

    Loading takes ~20 s; a run that never paraphrases (strategy none, budget 0, the last epoch
    reached) should not pay it. The name depends on the config only, so it is known unloaded.
    """

    def __init__(self, config: ParaphraseConfig, cache: ParaphraseCache | None = None) -> None:
        self.config = config
        self.cache = cache
        self.name = openai_name(config) if config.is_openai else local_name(config)
        self._model: RowParaphraser | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def model(self) -> RowParaphraser:
        if self._model is None:
            self._model = load_paraphraser(self.config)
        self._model.cache = self.cache  # the loaded model is shared between runs; this run's cache
        return self._model

    def paraphrase(
        self, texts: Sequence[str], n: int | Sequence[int], seed: int, *,
        first: int | Sequence[int] = 0, instruction: str | None = None,
    ) -> ParaphraseResult:
        if not texts:
            return ParaphraseResult(texts=[])
        return self.model().paraphrase(texts, n, seed, first=first, instruction=instruction)


def build_reward_model(config: RunConfig, store: Store | None = None) -> RewardModel:
    """The run's reward model alone (untrained): what review and plots need, without the paraphraser."""
    if config.reward.kind == "finetune":
        if config.data.is_toy:
            raise ValueError("the fine-tuned reward model reads text, and the 2-D toy's 'texts' are vectors: "
                             "use --reward-model linear for the toy")
        return FinetuneRewardModel(config.reward)
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
        return Components(model.featurizer, model, PlainParaphraser(ToyParaphraser()), None)
    paraphraser = LazyParaphraser(config.paraphrase, store)
    return Components(getattr(model, "featurizer", None), model, paraphraser, load_encoder(config.refine.encoder))
