"""One job's runtime: the models a run uses, and the state that belongs to that run alone.

Loaded models (the sentence encoder's network, the paraphraser's LM weights and tokenizer) cost seconds to
load and are only read, so one process shares them between jobs: ``load_encoder`` and ``load_paraphraser``
are the registry (memoised here; the app wraps them in st.cache_resource as well), and each loaded model
serialises its own calls with a lock. Everything that belongs to one run lives in the ``Runtime`` built for
it and is never reached from another job: the reward model being trained, the encoder's and paraphraser's
views of the shared models (their caches read from and write to this run's store; the LM's prompt-prefix
KV cache is the view's own), and the run's random streams, which are generators seeded from (run seed,
epoch) and passed down, never the global ones. So two jobs running at once give the results each gives alone
(with the default transformers engine; the CTranslate2 engine has one random stream per process, so there two
jobs agree only through the store's generation cache: see augment/ct2_paraphraser.py).
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
    RowFeed,
    RowParaphraser,
)
from mars_core.data.toy import ToyParaphraser
from mars_core.model.encoders import TextEncoder
from mars_core.model.features import TextFeaturizer, ToyFeaturizer
from mars_core.model.finetune import FinetuneRewardModel
from mars_core.model.reward import LinearRewardModel, RewardModel
from mars_core.run.config import RunConfig
from mars_core.store.sqlite import Store


@dataclass
class Runtime:
    """What one job advances a run with; built per job (``build_runtime``), never shared between jobs."""

    model: RewardModel  # trained by this run alone
    paraphraser: Paraphraser  # this run's view: its generation cache is the run's store
    encoder: TextEncoder | None  # this run's view of the shared encoder; None for the toy (its "texts" are vectors)


@functools.lru_cache(maxsize=4)
def load_encoder(name: str) -> TextEncoder:
    """The process's sentence encoder of this name (shared read-only: use ``run_encoder`` in a run)."""
    return TextEncoder(name)


@functools.lru_cache(maxsize=2)
def load_paraphraser(config: ParaphraseConfig) -> RowParaphraser:
    """The in-process model (engine per ``config.engine``), or a client of an OpenAI-compatible server for
    openai:BASE_URL#MODEL.

    Shared read-only between jobs; a run paraphrases through ``.for_run(its cache)``, never through this object.
    """
    return OpenAIParaphraser(config) if config.is_openai else load_local(config)


def run_encoder(name: str, store: Store | None) -> TextEncoder:
    """One run's view of the shared encoder: the same network, caches of its own backed by the run's store."""
    return load_encoder(name).for_run(None if store is None else (store.get_features, store.put_features))


class LazyParaphraser:
    """One run's language-model paraphraser, loaded on first use.

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
        """This run's view of the shared model, made once: its cache and prefix cache are this run's."""
        if self._model is None:
            self._model = load_paraphraser(self.config).for_run(self.cache)
        return self._model

    def paraphrase(
        self, texts: Sequence[str], n: int | Sequence[int], seed: int, *,
        first: int | Sequence[int] = 0, instruction: str | None = None,
    ) -> ParaphraseResult:
        if not texts:
            return ParaphraseResult(texts=[])
        return self.model().paraphrase(texts, n, seed, first=first, instruction=instruction)

    def paraphrase_stream(self, feed: RowFeed, seed: int, *, instruction: str | None = None) -> ParaphraseResult:
        return self.model().paraphrase_stream(feed, seed, instruction=instruction)


def build_reward_model(config: RunConfig, store: Store | None = None, encoder: TextEncoder | None = None) -> RewardModel:
    """The run's reward model alone (untrained): what review and plots need, without the paraphraser."""
    if config.reward.kind == "finetune":
        if config.data.is_toy:
            raise ValueError("the fine-tuned reward model reads text, and the 2-D toy's 'texts' are vectors: "
                             "use --reward-model linear for the toy")
        return FinetuneRewardModel(config.reward)
    if config.data.is_toy:
        return LinearRewardModel(ToyFeaturizer(), config.train)
    encoder = encoder or run_encoder(config.refine.encoder, store)
    return LinearRewardModel(TextFeaturizer(encoder, config.refine.feature_mode), config.train)


def build_runtime(config: RunConfig, store: Store | None = None) -> Runtime:
    """A fresh runtime for one job on this run; caches in ``store`` back its views where it is given."""
    if config.data.is_toy:
        return Runtime(build_reward_model(config), PlainParaphraser(ToyParaphraser()), None)
    encoder = run_encoder(config.refine.encoder, store)
    return Runtime(build_reward_model(config, store, encoder), LazyParaphraser(config.paraphrase, store), encoder)
