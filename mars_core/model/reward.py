"""Reward models behind one protocol, so the refinement loop never knows which one it drives.

The first implementation is a linear head on frozen features (MiniLM or the toy's φ): its BT
Hessian has a closed form, which is what makes the curvature argument checkable exactly. A
fine-tuned transformer plugs in by implementing the same methods (its curvature through the
iterative estimators in curvature.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from mars_core.analysis.curvature import SpectrumSummary, curvature_contributions, linear_curvature_summary
from mars_core.data.pairs import PreferencePair
from mars_core.model.features import Featurizer, pair_features
from mars_core.model.train import FitReport, TrainConfig, fit_linear_bt


class RewardModel(Protocol):
    name: str

    def fit(self, pairs: Sequence[PreferencePair], progress: Callable[..., None] | None = None) -> FitReport:
        """Fit on these pairs (warm or cold start per the model's config).

        ``progress(stage, done, total, detail="")``, where given, hears "training" as batches finish
        (detail e.g. "loss 0.612"); a model that fits in one call may never call it.
        """
        ...

    def rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray: ...

    def margins(self, pairs: Sequence[PreferencePair]) -> np.ndarray:
        """Δ = r(x, y+) − r(x, y−) per pair."""
        ...

    def pair_curvature(self, pairs: Sequence[PreferencePair]) -> np.ndarray:
        """Each pair's curvature contribution σ'(Δ)·‖∂Δ/∂θ‖² under the current parameters."""
        ...

    def spectrum(self, pairs: Sequence[PreferencePair], k: int = 10) -> SpectrumSummary:
        """Hessian spectrum summary of the BT loss on these pairs."""
        ...

    def fresh(self) -> RewardModel:
        """An untrained copy with the same settings (for cross-fitting)."""
        ...

    def state(self) -> dict[str, np.ndarray]: ...

    def load_state(self, state: dict[str, np.ndarray]) -> None: ...

    def use_checkpoint_dir(self, folder: str | Path) -> None:
        """Where state() may write weight files (the run's folder); a model held in the store ignores it."""
        ...


class LinearRewardModel:
    """r(x, y) = wᵀφ(x, y) + b on frozen features, trained with Bradley-Terry and L2."""

    def __init__(self, featurizer: Featurizer, config: TrainConfig | None = None) -> None:
        self.featurizer = featurizer
        self.config = config or TrainConfig()
        self.name = f"linear[{featurizer.name}]"
        self.weights = np.zeros(featurizer.dim, dtype=np.float32)
        self.bias = 0.0  # cancels in every margin; kept so rewards read on a familiar scale

    def delta_features(self, pairs: Sequence[PreferencePair]) -> np.ndarray:
        plus, minus = pair_features(self.featurizer, pairs)
        return plus - minus

    def fit(self, pairs: Sequence[PreferencePair], progress: Callable[..., None] | None = None) -> FitReport:
        self.weights, report = fit_linear_bt(self.delta_features(pairs), self.config, init=self.weights)
        return report

    def rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return self.featurizer.features(prompts, responses) @ self.weights + self.bias

    def margins(self, pairs: Sequence[PreferencePair]) -> np.ndarray:
        return self.delta_features(pairs) @ self.weights

    def pair_curvature(self, pairs: Sequence[PreferencePair]) -> np.ndarray:
        delta_phi = self.delta_features(pairs)
        return curvature_contributions(delta_phi, delta_phi @ self.weights)

    def spectrum(self, pairs: Sequence[PreferencePair], k: int = 10) -> SpectrumSummary:
        delta_phi = self.delta_features(pairs)
        return linear_curvature_summary(delta_phi, delta_phi @ self.weights, self.config.l2, k=k)

    def fresh(self) -> LinearRewardModel:
        return LinearRewardModel(self.featurizer, self.config)

    def state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights.copy(), "bias": np.array([self.bias], dtype=np.float32)}

    def use_checkpoint_dir(self, folder: str | Path) -> None:
        return None  # a few hundred floats: the store holds them

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        weights = np.asarray(state["weights"], dtype=np.float32)
        if weights.shape != (self.featurizer.dim,):
            raise ValueError(
                f"stored weights have shape {weights.shape}, but {self.featurizer.name} gives {self.featurizer.dim}-d features"
            )
        self.weights = weights.copy()
        self.bias = float(np.asarray(state.get("bias", [0.0]))[0])


def cross_fitted_margins(
    model: RewardModel, originals: Sequence[PreferencePair], extra: Sequence[PreferencePair], folds: int, seed: int
) -> np.ndarray:
    """Margins of each original pair from a model that never trained on it (k-fold).

    In-sample margins of a mislabelled pair are pulled towards zero by the fit, so allocating
    on them steers the budget to label noise; cross-fitting removes that pull. Synthetic pairs
    (``extra``) follow their parent into the held-out fold, so no paraphrase leaks its parent.
    """
    n = len(originals)
    if folds < 2 or n < folds:
        raise ValueError(f"cross-fitting needs 2 <= folds <= number of pairs, got folds={folds}, pairs={n}")
    order = np.random.default_rng(seed).permutation(n)
    fold_of = np.empty(n, dtype=int)
    fold_of[order] = np.arange(n) % folds
    fold_by_id = {p.id: int(f) for p, f in zip(originals, fold_of)}
    extra_folds = np.array([fold_by_id.get(p.parent_id or "", -1) for p in extra], dtype=int)
    out = np.empty(n, dtype=np.float64)
    for fold in range(folds):
        held = fold_of == fold
        train = [p for p, h in zip(originals, held) if not h] + [p for p, f in zip(extra, extra_folds) if f != fold]
        scorer = model.fresh()
        scorer.fit(train)
        out[held] = scorer.margins([p for p, h in zip(originals, held) if h])
    return out
