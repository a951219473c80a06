"""The linear reward model on the toy's explicit features, and cross-fitting without leakage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from mars_core.data.pairs import PreferencePair
from mars_core.data.toy import toy_suite
from mars_core.model.features import ToyFeaturizer
from mars_core.model.reward import LinearRewardModel, cross_fitted_margins
from mars_core.model.train import TrainConfig


class RecordingModel:
    """A stand-in reward model: every copy remembers what it trained on; its margins name the copy."""

    name = "recording"

    def __init__(self, log: list[set[str]]) -> None:
        self.log = log
        self.index = len(log)
        log.append(set())

    def fresh(self) -> RecordingModel:
        return RecordingModel(self.log)

    def fit(self, pairs: Sequence[PreferencePair], progress=None) -> None:
        self.log[self.index] |= {p.id for p in pairs}

    def margins(self, pairs: Sequence[PreferencePair]) -> np.ndarray:
        return np.full(len(pairs), float(self.index))


def _family(n: int) -> tuple[list[PreferencePair], list[PreferencePair]]:
    originals = [PreferencePair(f"p{i}", f"x{i}", f"a{i}", f"b{i}") for i in range(n)]
    paraphrases = [PreferencePair(f"p{i}~e1~{k}", f"x{i}", f"a{i}'", f"b{i}", "synthetic", f"p{i}", 1)
                   for i in range(n) for k in range(i % 3)]
    return originals, paraphrases


@pytest.mark.parametrize("folds, seed", [(2, 0), (5, 1), (7, 3)])
def test_no_margin_comes_from_a_model_that_saw_the_pair_or_its_paraphrases(folds, seed):
    originals, paraphrases = _family(23)
    log: list[set[str]] = []
    out = cross_fitted_margins(RecordingModel(log), originals, paraphrases, folds, seed)
    scorers = out.astype(int)
    assert len(set(scorers)) == folds, "every fold's model scored its held-out pairs"
    for pair, scorer in zip(originals, scorers):
        seen = log[scorer]
        assert pair.id not in seen
        assert not {p.id for p in paraphrases if p.parent_id == pair.id} & seen, "no paraphrase leaks its parent"
        others = {p.id for p, s in zip(originals, scorers) if s != scorer}
        assert others <= seen, "each fold's model trains on every other fold"
    sizes = np.bincount(scorers)[np.unique(scorers)]
    assert sizes.max() - sizes.min() <= 1, "folds are balanced"


def test_cross_fitting_needs_enough_pairs():
    originals, _ = _family(4)
    with pytest.raises(ValueError, match="folds=5, pairs=4"):
        cross_fitted_margins(RecordingModel([]), originals, [], 5, 0)
    with pytest.raises(ValueError, match="folds=1"):
        cross_fitted_margins(RecordingModel([]), originals, [], 1, 0)


def test_cross_fitted_margins_of_the_linear_model_equal_held_out_fits():
    pairs = toy_suite(n_pairs=40, seed=2)
    model = LinearRewardModel(ToyFeaturizer(), TrainConfig(l2=1e-2, tolerance=1e-10))
    out = cross_fitted_margins(model, pairs, [], 4, seed=9)
    fold_of = np.empty(40, dtype=int)
    fold_of[np.random.default_rng(9).permutation(40)] = np.arange(40) % 4
    held = fold_of == 0
    scorer = model.fresh()
    scorer.fit([p for p, h in zip(pairs, held) if not h])
    np.testing.assert_allclose(out[held], scorer.margins([p for p, h in zip(pairs, held) if h]), atol=1e-5)
    assert np.all(model.weights == 0), "cross-fitting never trains the model it was given"


def test_linear_model_margins_curvature_and_state():
    pairs = toy_suite(n_pairs=60, seed=0)
    model = LinearRewardModel(ToyFeaturizer(), TrainConfig(l2=1e-3))
    report = model.fit(pairs)
    assert report.loss < np.log(2), "better than the untrained model's log 2"
    delta = model.delta_features(pairs)
    np.testing.assert_allclose(model.margins(pairs), delta @ model.weights, rtol=1e-6)
    m = model.margins(pairs)
    sig = 1 / (1 + np.exp(-m))
    np.testing.assert_allclose(model.pair_curvature(pairs), sig * (1 - sig) * (delta**2).sum(1), rtol=1e-5)
    assert (model.margins(pairs) > 0).mean() > 0.8, "the toy is learnable"
    copy = model.fresh()
    assert np.all(copy.weights == 0)
    copy.load_state(model.state())
    np.testing.assert_array_equal(copy.margins(pairs), model.margins(pairs))
    with pytest.raises(ValueError, match="stored weights have shape"):
        copy.load_state({"weights": np.zeros(3)})
