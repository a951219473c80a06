"""Best-of-N on the gold suites: does a reward model pick better responses, judged by the known gold reward?

Pairwise accuracy says how often a model orders two given responses; Best-of-N is what a reward model is used
for downstream (rerank N samples, keep the top one). On the demo suites the gold reward is known, so each pick
can be judged exactly: how often the model's pick is as good as the gold reward's own pick, how much gold reward
it gives up (regret), and how often it beats the pick of another model (the un-augmented one) on the same
candidates (a tie counts one half).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mars_core.data.text_suite import prompt_responses, text_prompts
from mars_core.data.toy import TOY_PROMPT, format_toy_vector, toy_gold_reward


@dataclass(frozen=True)
class CandidateSets:
    """M prompts × N candidate responses with their gold rewards."""

    prompts: list[str]  # M
    responses: list[list[str]]  # M × N
    gold: np.ndarray  # (M, N)

    def flat(self) -> tuple[list[str], list[str]]:
        """(prompts, responses) repeated per candidate, for one batched rewards() call."""
        prompts = [p for p, row in zip(self.prompts, self.responses) for _ in row]
        return prompts, [r for row in self.responses for r in row]

    def shape(self) -> tuple[int, int]:
        return self.gold.shape


def text_candidates(n: int = 8, seed: int = 0) -> CandidateSets:
    """For every text-suite prompt, n distinct responses drawn (seeded) from everything the suite can write."""
    if n < 2:
        raise ValueError(f"Best-of-N needs n ≥ 2 candidates, got {n}")
    rng = np.random.default_rng([seed, 4242])
    prompts, responses, gold = [], [], []
    for prompt in text_prompts():
        table = prompt_responses(prompt)
        texts = sorted(table)
        pick = rng.choice(len(texts), size=min(n, len(texts)), replace=False)
        if pick.size < n:
            continue
        chosen = [texts[i] for i in pick]
        prompts.append(prompt)
        responses.append(chosen)
        gold.append([table[t] for t in chosen])
    return CandidateSets(prompts, responses, np.asarray(gold, dtype=float))


def toy_candidates(n: int = 8, groups: int = 200, seed: int = 0, spread: float = 0.5, dim: int = 2) -> CandidateSets:
    """groups × n feature vectors from N(0, spread²·I), the toy's own distribution; gold = w*ᵀφ."""
    if n < 2:
        raise ValueError(f"Best-of-N needs n ≥ 2 candidates, got {n}")
    rng = np.random.default_rng([seed, 4243])
    vectors = rng.normal(0.0, spread, size=(groups, n, dim))
    responses = [[format_toy_vector(v) for v in row] for row in vectors]
    gold = np.array([toy_gold_reward(row) for row in responses])
    return CandidateSets([TOY_PROMPT] * groups, responses, gold)


@dataclass(frozen=True)
class BestOfNOutcome:
    """Per prompt: gold reward of the model's pick and of the best candidate."""

    picked_gold: np.ndarray  # (M,)
    best_gold: np.ndarray  # (M,)

    @property
    def match_rate(self) -> float:
        """Share of prompts where the pick is as good as gold's own pick (ties at the top count)."""
        return float(np.mean(self.picked_gold >= self.best_gold - 1e-12))

    @property
    def regret(self) -> float:
        """Mean gold reward given up against gold's pick."""
        return float(np.mean(self.best_gold - self.picked_gold))

    def win_rate_vs(self, other: BestOfNOutcome) -> float:
        """Share of prompts where this pick has more gold reward than ``other``'s; ties count ½."""
        if other.picked_gold.shape != self.picked_gold.shape:
            raise ValueError("Best-of-N outcomes compared on different candidate sets")
        return float(np.mean(win_scores(self.picked_gold, other.picked_gold)))


def win_scores(a: np.ndarray, b: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """Per prompt: 1 if a > b, ½ on a tie, 0 otherwise."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.where(a > b + tol, 1.0, np.where(np.abs(a - b) <= tol, 0.5, 0.0))


def best_of_n(rewards: np.ndarray, gold: np.ndarray) -> BestOfNOutcome:
    """Pick argmax of the model's rewards per prompt (first on ties) and read off gold rewards."""
    rewards, gold = np.asarray(rewards, dtype=float), np.asarray(gold, dtype=float)
    if rewards.shape != gold.shape or rewards.ndim != 2:
        raise ValueError(f"rewards {rewards.shape} and gold {gold.shape} must be the same (M, N) shape")
    if not np.all(np.isfinite(rewards)):
        raise ValueError("rewards contain nan/inf: did the reward model diverge?")
    picked = gold[np.arange(gold.shape[0]), np.argmax(rewards, axis=1)]
    return BestOfNOutcome(picked_gold=picked, best_gold=gold.max(axis=1))
