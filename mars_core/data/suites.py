"""What every built-in demo suite shares: validated settings, Bradley-Terry labels with flips, the returned record.

Labels come from Bradley-Terry on the gold margin g = r*(a) − r*(b): a is chosen with probability
σ(g / temperature); then, with probability ``noise``, chosen and rejected are swapped. The three random streams
(which pairs, the BT draws, the flips) are independent children of one seed, so raising ``noise`` at a fixed
seed flips a superset of the pairs and changes nothing else. ``gold_margin`` is stored as
r*(chosen) − r*(rejected): negative where the label disagrees with the gold.
"""

from __future__ import annotations

import math
import numbers
import operator
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from mars_core.data.pairs import PreferencePair


def real_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def whole_number(value: object, name: str, minimum: int) -> int:
    try:
        number = operator.index(value)  # accepts numpy integers, rejects floats and strings
    except TypeError:
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if isinstance(value, bool) or number < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return number


@dataclass(frozen=True)
class SuiteSettings:
    """What every demo suite needs to draw its pairs and labels."""

    n_pairs: int = 600  # number of preference pairs
    noise: float = 0.0  # probability of swapping chosen and rejected after the Bradley-Terry draw
    seed: int = 0  # one seed drives everything; same seed, same suite
    temperature: float = 1.0  # P(a chosen) = σ(g / temperature); small = labels follow the gold sign

    def __post_init__(self) -> None:
        whole_number(self.n_pairs, "n_pairs", 1)
        whole_number(self.seed, "seed", 0)
        if not (real_number(self.noise) and 0.0 <= self.noise <= 1.0):
            raise ValueError(f"noise is a flip probability and must lie in [0, 1], got {self.noise!r}")
        if not (real_number(self.temperature) and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number, got {self.temperature!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (it divides the gold margin), got {self.temperature!r}")


@dataclass(frozen=True)
class SuiteDraw:
    """A suite plus how its labels came about, so tests and the UI can measure the noise."""

    pairs: list[PreferencePair]
    flipped: np.ndarray  # bool (N,): the noise step swapped chosen and rejected
    bt_disagrees: np.ndarray  # bool (N,): the Bradley-Terry draw (before flips) preferred the gold-worse side
    families: tuple[str, ...]  # prompt family of each pair ("toy" for the toy suite)

    @property
    def gold_margins(self) -> np.ndarray:
        return np.array([p.gold_margin for p in self.pairs], dtype=float)


def label_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent generators for (pair content, BT draws, flips)."""
    draw, bt, flip = np.random.SeedSequence(seed).spawn(3)
    return np.random.default_rng(draw), np.random.default_rng(bt), np.random.default_rng(flip)


def bradley_terry_labels(
    gold_ab: np.ndarray, temperature: float, noise: float, rng_bt: np.random.Generator, rng_flip: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a_is_chosen, flipped, bt_disagrees) for gold margins g = r*(a) − r*(b).

    P(a wins) = σ(g / T), then each label is swapped with probability ``noise``.
    """
    gold_ab = np.asarray(gold_ab, dtype=float)
    a_wins = rng_bt.random(gold_ab.shape) < expit(gold_ab / temperature)
    bt_disagrees = np.where(a_wins, gold_ab < 0, gold_ab > 0)
    flipped = rng_flip.random(gold_ab.shape) < noise
    return a_wins ^ flipped, flipped, bt_disagrees


# --------------------------------------------------------------------------------------------------
