"""How an epoch's paraphrase budget is split over the training pairs.

Budget unit: one unit is ONE KEPT paraphrase of one response (the paper's B_t counts augmented
samples; how a unit is filled, with a cap on LM generations, is in `augment.selection`). A pair given
c units gets up to n+ = ceil(c/2) paraphrases of its chosen response and n− = floor(c/2) of its
rejected one, or the other way round (`split_sides`: an odd unit goes to a seeded coin's side), which
`augment.cross_pairs` turns into up to (n+ + 1)(n− + 1) − 1 new pairs. Every strategy is given the same
number of units; the LM generations each spent are reported beside them, so strategies can also be
compared at equal language-model cost.

Strategies (one interface, `allocate`):
  mars     q ∝ exp(−τ·m/scale): most budget to the pairs the model is least sure of
  uniform  q = 1/N
  won      West-of-N, q ∝ exp(+τ·m/scale): most budget to the most confident pairs
  none     no augmentation: zero counts (the baseline)
with m = |Δ| (margin_mode "abs", the paper) or m = Δ ("signed", the authors' code, which also
favours mis-ranked pairs), and scale = 1 (tau_scale "raw") or std(Δ) ("std", scale-free).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import entr, softmax

STRATEGIES = ("mars", "uniform", "won", "none")
MARGIN_MODES = ("abs", "signed")
TAU_SCALES = ("raw", "std")
ROUNDINGS = ("largest_remainder", "multinomial")


@dataclass(frozen=True)
class AllocationConfig:
    """Which pairs get the paraphrase budget, and how the real-valued shares become integers."""

    strategy: str = field(
        default="mars",
        metadata={
            "help": "mars (least confident first), uniform, won (West-of-N: most confident first), none",
            "flag": "--strategy", "choices": STRATEGIES,
        },
    )
    tau: float = field(
        default=1.0,
        metadata={"help": "temperature ≥ 0: 0 spreads the budget evenly, large values concentrate it", "flag": "--tau"},
    )
    margin_mode: str = field(
        default="abs",
        metadata={"help": "abs: m = |Δ| (paper); signed: m = Δ (authors' code: mis-ranked pairs get more)",
                  "flag": "--margin-mode", "choices": MARGIN_MODES},
    )
    tau_scale: str = field(
        default="raw",
        metadata={"help": "raw: τ acts on Δ as is; std: on Δ/std(Δ), so τ keeps its meaning as margins grow",
                  "flag": "--tau-scale", "choices": TAU_SCALES},
    )
    rounding: str = field(
        default="largest_remainder",
        metadata={"help": "largest_remainder (deterministic) or multinomial (a seeded random draw)",
                  "flag": "--rounding", "choices": ROUNDINGS},
    )
    cap_per_pair: int | None = field(
        default=None,
        metadata={"help": "at most this many budget units (kept paraphrases) per pair; unset: no cap", "flag": "--cap-per-pair"},
    )

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {self.strategy!r}")
        if self.margin_mode not in MARGIN_MODES:
            raise ValueError(
                f"margin_mode must be 'abs' (m = |Δ|) or 'signed' (m = Δ); got {self.margin_mode!r}"
            )
        if self.tau_scale not in TAU_SCALES:
            raise ValueError(
                f"tau_scale must be 'raw' (τ on Δ) or 'std' (τ on Δ/std(Δ)); got {self.tau_scale!r}"
            )
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}; got {self.rounding!r}")
        if isinstance(self.tau, bool) or not isinstance(self.tau, int | float | np.floating | np.integer):
            raise ValueError(f"tau must be a number, got {self.tau!r}")
        if not math.isfinite(self.tau) or self.tau < 0:
            raise ValueError(
                f"tau must be a finite number ≥ 0 (0 = uniform; use a large value to concentrate); got {self.tau!r}"
            )
        if self.cap_per_pair is not None:
            if not _is_int(self.cap_per_pair) or self.cap_per_pair < 1:
                raise ValueError(
                    f"cap_per_pair must be a whole number ≥ 1 or None (no cap); got {self.cap_per_pair!r}. "
                    "To augment nothing, use strategy 'none'."
                )


def _is_int(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def split_sides(count: int, odd_to_rejected: bool = False) -> tuple[int, int]:
    """(n+, n−): c budget units split as evenly as possible between the two responses.

    The odd unit goes to the chosen response unless ``odd_to_rejected``; the refinement loop tosses a
    seeded coin per pair. Always giving it to the chosen side would, at budgets below one unit per
    pair (every count 0 or 1), make every synthetic pair "paraphrased y+ vs original y−": a style cue
    the reward model could learn instead of the content.
    """
    if not _is_int(count) or count < 0:
        raise ValueError(f"count must be a whole number ≥ 0, got {count!r}")
    big, small = (int(count) + 1) // 2, int(count) // 2
    return (small, big) if odd_to_rejected else (big, small)


def _as_margins(margins: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(margins, dtype=float).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError("margins contain nan/inf: rescore the pairs before allocating")
    return arr


def margin_scale(margins: Sequence[float] | np.ndarray, config: AllocationConfig) -> float:
    """The divisor applied to m: 1 for "raw", std(Δ) for "std" (1 when Δ has no spread, e.g. one pair)."""
    d = _as_margins(margins)
    if config.tau_scale == "raw" or d.size == 0:
        return 1.0
    top = float(np.max(np.abs(d)))
    if top == 0:
        return 1.0
    # Normalise before squaring so tiny or huge margins neither underflow nor overflow: keeps the
    # "std" mode exactly invariant to rescaling by powers of two.
    rel_std = float(np.std(d / top))
    # Equal margins give a std of float noise (~1e-16 |Δ|), not a spread: treat it as zero.
    return top * rel_std if rel_std > 1e-12 else 1.0


def allocation_scores(margins: Sequence[float] | np.ndarray, config: AllocationConfig) -> np.ndarray:
    """m per pair: |Δ| (abs) or Δ (signed), before scaling. mars favours small m, won large m."""
    d = _as_margins(margins)
    return np.abs(d) if config.margin_mode == "abs" else d.copy()


def allocation_weights(margins: Sequence[float] | np.ndarray, config: AllocationConfig) -> np.ndarray:
    """q, the share of the budget per pair (sums to 1; all zeros for "none")."""
    m = allocation_scores(margins, config)
    n = m.size
    if config.strategy == "none" or n == 0:
        return np.zeros(n)
    if config.strategy == "uniform" or config.tau == 0:
        return np.full(n, 1.0 / n)
    # Distance from the favoured pair (smallest m for mars, largest for won), in units of the scale:
    # the favoured pair's logit is exactly 0, so no τ overflows; exp(−inf) = 0 elsewhere.
    with np.errstate(over="ignore"):
        gap = (m - m.min()) if config.strategy == "mars" else (m.max() - m)
        logits = -config.tau * (gap / margin_scale(margins, config))
    return softmax(logits)


def effective_number(q: Sequence[float] | np.ndarray) -> float:
    """exp(entropy(q)): how many pairs the budget is effectively spread over (N uniform, 1 one-hot, 0 none)."""
    q = np.asarray(q, dtype=float)
    total = q.sum()
    if total <= 0:
        return 0.0
    return float(np.exp(entr(q / total).sum()))


def _priority_rank(q: np.ndarray, priority: np.ndarray | None) -> np.ndarray:
    """Order in which pairs win ties: the given order, else larger q first, then lower index."""
    order = np.asarray(priority, dtype=int) if priority is not None else np.lexsort((np.arange(q.size), -q))
    if sorted(order.tolist()) != list(range(q.size)):
        raise ValueError("priority must be a permutation of the pair indices")
    rank = np.empty(q.size, dtype=int)
    rank[order] = np.arange(q.size)
    return rank


def _hand_out(counts: np.ndarray, units: int, cap: float, order: np.ndarray, step: int | None = None) -> None:
    """Give `units` to pairs in `order` (in place), `step` at a time per pass (None: fill each to the
    cap), cycling until all are placed; the callers guarantee the cap leaves room for them."""
    while units > 0:
        progressed = False
        for i in order:
            if units == 0:
                break
            room = cap - counts[i]
            if room > 0:
                take = int(min(room, units, step if step is not None else units))
                counts[i] += take
                units -= take
                progressed = True
        if not progressed:
            raise RuntimeError("no pair below the cap is left to take the remaining budget")


def _water_fill(q: np.ndarray, target: int, cap: float, rank: np.ndarray) -> np.ndarray:
    """Expected counts: target·q, with pairs over the cap clipped and their excess re-spread over the
    uncapped pairs in proportion to q. Where those hold no q mass (q underflowed to 0) the rest goes
    to them in priority order, i.e. to the next-highest-q pairs."""
    e = np.zeros(q.size)
    free = np.ones(q.size, dtype=bool)
    remaining = float(target)
    while remaining > 0 and free.any():
        mass = q[free].sum()
        if mass <= 0:
            ints = np.zeros(q.size, dtype=np.int64)
            _hand_out(ints, int(round(remaining)), cap, np.argsort(np.where(free, rank, q.size + rank)))
            return e + ints
        share = np.zeros(q.size)
        share[free] = remaining * (q[free] / mass)
        over = free & (share > cap)
        if not over.any():
            return e + share
        e[over] = cap
        remaining -= cap * int(over.sum())
        free &= ~over
    return e


def integer_counts(
    q: Sequence[float] | np.ndarray,
    budget: int,
    rounding: str = "largest_remainder",
    cap_per_pair: int | None = None,
    seed: int = 0,
    priority: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Whole paraphrase counts per pair from shares q.

    The counts sum to the budget exactly unless the cap makes that impossible; then they sum to
    min(budget, N·cap), and what capped pairs cannot take goes to the next-highest-q pairs
    (in proportion to q) rather than being dropped. With no pairs nothing can be placed.

    largest_remainder: floor(budget·q), then one extra unit each in order of the largest
    fractional part; ties go by `priority` (a permutation of indices, first wins), by default
    larger q first, then lower index, so the result is deterministic and monotone in q.
    multinomial: a draw with numpy's seeded generator (same seed, same counts; mean budget·q).
    """
    q = np.asarray(q, dtype=float).reshape(-1)
    if not _is_int(budget) or budget < 0:
        raise ValueError(f"budget must be a whole number ≥ 0 of budget units (kept paraphrases), got {budget!r}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}; got {rounding!r}")
    if cap_per_pair is not None and (not _is_int(cap_per_pair) or cap_per_pair < 1):
        raise ValueError(f"cap_per_pair must be a whole number ≥ 1 or None, got {cap_per_pair!r}")
    n = q.size
    cap = math.inf if cap_per_pair is None else int(cap_per_pair)
    target = int(budget) if cap_per_pair is None else min(int(budget), n * int(cap_per_pair))
    counts = np.zeros(n, dtype=np.int64)
    if target == 0 or n == 0:
        return counts
    if not np.all(np.isfinite(q)) or np.any(q < 0) or not math.isclose(q.sum(), 1.0, abs_tol=1e-6):
        raise ValueError(f"q must be non-negative shares summing to 1 (sum is {q.sum():.6g})")
    rank = _priority_rank(q, priority)
    expected = _water_fill(q, target, cap, rank)

    if rounding == "largest_remainder":
        counts[:] = np.minimum(np.floor(expected + 1e-9), cap).astype(np.int64)
        remainder = np.where(counts < cap, expected - counts, -np.inf)
        order = np.lexsort((rank, -remainder))  # largest remainder first, ties by priority
        _hand_out(counts, target - int(counts.sum()), cap, order, step=1)
    else:
        rng = np.random.default_rng(seed)
        counts[:] = rng.multinomial(target, expected / expected.sum())
        # The expected counts respect the cap, but a draw can overshoot it: re-draw the excess
        # among the pairs still below the cap, weighted by q.
        excess = int(np.maximum(counts - cap, 0).sum()) if math.isfinite(cap) else 0
        while excess > 0:
            counts[:] = np.minimum(counts, cap)
            open_ = counts < cap
            w = np.where(open_, q, 0.0)
            if w.sum() <= 0:
                _hand_out(counts, excess, cap, np.argsort(np.where(open_, rank, n + rank)))
                break
            counts += rng.multinomial(excess, w / w.sum())
            excess = int(np.maximum(counts - cap, 0).sum())
    return counts


@dataclass(frozen=True)
class Allocation:
    """One epoch's allocation, with everything needed to show how it was reached."""

    scores: np.ndarray  # m per pair (|Δ| or Δ), before scaling
    q: np.ndarray  # share of the budget per pair
    counts: np.ndarray  # budget units (kept paraphrases) per pair; split with split_sides
    config: AllocationConfig
    budget: int  # requested budget units
    tau_in_force: float  # τ actually applied to m: τ ("raw"), τ/std(Δ) ("std"); 0 for uniform/none
    effective_n: float  # exp(entropy(q))

    @property
    def total(self) -> int:
        """Paraphrase generations actually allocated (below budget only when the cap forces it)."""
        return int(self.counts.sum())


def allocate(
    margins: Sequence[float] | np.ndarray, budget: int, config: AllocationConfig, seed: int = 0
) -> Allocation:
    """Split `budget` units (kept paraphrases) over pairs with these margins.

    Rounding ties follow the strategy's own order: mars gives leftover units to the smallest m
    first, won to the largest m first (the most confident pairs), uniform by index.
    """
    if not _is_int(budget) or budget < 0:
        raise ValueError(f"budget must be a whole number ≥ 0 of budget units (kept paraphrases), got {budget!r}")
    m = allocation_scores(margins, config)
    q = allocation_weights(margins, config)
    # uniform and none apply no temperature at all: report 0, the τ that gives uniform shares.
    tau_in_force = config.tau / margin_scale(margins, config) if config.strategy in ("mars", "won") else 0.0
    if config.strategy == "none":
        counts = np.zeros(m.size, dtype=np.int64)
    else:
        idx = np.arange(m.size)
        priority = {
            "mars": np.lexsort((idx, m)),
            "won": np.lexsort((idx, -m)),
            "uniform": idx,
        }[config.strategy]
        counts = integer_counts(q, budget, config.rounding, config.cap_per_pair, seed, priority)
    return Allocation(
        scores=m,
        q=q,
        counts=counts,
        config=config,
        budget=int(budget),
        tau_in_force=tau_in_force,
        effective_n=effective_number(q),
    )
