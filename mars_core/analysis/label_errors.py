"""Which preference labels are likely wrong, scored from out-of-fold margins, and how to apply a correction.

Score: s_i = σ(−Δ_i^oof), the Bradley-Terry probability, under a model that never trained on pair i,
that the *other* response is the better one. Why this and not a fancier variant:
  * out-of-fold, never in-sample: a fit pulls a mislabelled pair's own margin towards its (wrong) label,
    so in-sample margins hide exactly the errors we look for (cleanlab's "out-of-sample probabilities");
  * the ranking equals confident learning's default ranking ("self-confidence", the out-of-sample
    probability of the given label, lowest first), since σ(Δ) is that probability for a pair;
  * a pair's two "classes" (y+ ≻ y− and its swap) are one class seen from either side, so confident
    learning's per-class threshold collapses to one number: t = mean_i σ(Δ_i^oof), the average confidence
    in the given labels. A pair is *flagged* when s_i ≥ t (the other order is at least as likely as a
    typical label is); the number flagged is confident learning's estimate of how many labels are wrong.
A posterior P(flipped | Δ) would need the noise rate, which is what we do not know; the score ranks, the
threshold counts, and the bench (bench/label_errors.py) measures both against the gold suites.

Corrections (a reviewer's keep / swap / drop / unsure per original pair) are applied here as a pure
function, so the store's training set, the export and the bench all correct the data the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np
from scipy.special import expit
from scipy.stats import rankdata

from mars_core.data.pairs import PreferencePair

LABEL_DECISIONS = ("keep", "swap", "drop", "unsure")  # unsure and keep train the pair as labelled


def _margins(margins: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(margins, dtype=float).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError("out-of-fold margins contain nan/inf: were they cross-fitted (folds ≥ 2)?")
    return arr


def label_error_scores(oof_margins: Sequence[float] | np.ndarray) -> np.ndarray:
    """s_i = σ(−Δ_i^oof) ∈ (0, 1): the out-of-fold probability that the label is the wrong way round."""
    return expit(-_margins(oof_margins))


def confident_threshold(oof_margins: Sequence[float] | np.ndarray) -> float:
    """Confident learning's threshold for a pair's swapped class: the mean confidence in the given labels."""
    m = _margins(oof_margins)
    return float(np.mean(expit(m))) if m.size else float("nan")


def flagged(oof_margins: Sequence[float] | np.ndarray) -> np.ndarray:
    """Pairs whose swapped order is at least as likely as the average given label (s_i ≥ t)."""
    m = _margins(oof_margins)
    return label_error_scores(m) >= confident_threshold(m) if m.size else np.zeros(0, dtype=bool)


def rank_suspects(scores: Sequence[float] | np.ndarray, ids: Sequence[str]) -> np.ndarray:
    """Indices from the most to the least suspicious; ties broken by pair id so the order is stable."""
    s = np.asarray(scores, dtype=float)
    if s.size != len(ids):
        raise ValueError(f"{s.size} scores for {len(ids)} pair ids")
    return np.array(sorted(range(s.size), key=lambda i: (-s[i], ids[i])), dtype=int)


# -- measuring a score against known errors ----------------------------------------------------------
def precision_at_k(scores: Sequence[float] | np.ndarray, is_error: Sequence[bool] | np.ndarray, k: int) -> float:
    """Share of true errors among the k highest scores (ties broken by position)."""
    s, e = np.asarray(scores, dtype=float), np.asarray(is_error, dtype=bool)
    if not 1 <= k <= s.size:
        raise ValueError(f"k must be between 1 and {s.size}, got {k}")
    top = np.argsort(-s, kind="stable")[:k]
    return float(np.mean(e[top]))


def roc_auc(scores: Sequence[float] | np.ndarray, is_error: Sequence[bool] | np.ndarray) -> float:
    """P(score of a random error > score of a random clean pair), ties counted half (Mann-Whitney U)."""
    s, e = np.asarray(scores, dtype=float), np.asarray(is_error, dtype=bool)
    n_pos, n_neg = int(e.sum()), int((~e).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[e].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# -- applying corrections ----------------------------------------------------------------------------
def swapped(pair: PreferencePair) -> PreferencePair:
    """The pair with its label reversed (texts, their paraphrase ids and the gold margin's sign)."""
    return pair.with_changes(
        chosen=pair.rejected, rejected=pair.chosen,
        chosen_paraphrase_id=pair.rejected_paraphrase_id, rejected_paraphrase_id=pair.chosen_paraphrase_id,
        gold_margin=None if pair.gold_margin is None else -pair.gold_margin,
    )


def apply_label_decisions(
    pairs: Iterable[PreferencePair], decisions: Mapping[str, str], reversed_children: Collection[str] = (),
) -> list[PreferencePair]:
    """The pairs as the reviewers corrected them: swap reverses, drop leaves out, keep/unsure change nothing.

    A synthetic pair inherited its label from its parent, so it follows the parent's decision. Those in
    ``reversed_children`` were built while their parent trained swapped (they already carry the corrected
    label): they stay as they are under a swap and are reversed back if the swap is later withdrawn.
    """
    out: list[PreferencePair] = []
    for pair in pairs:
        decision = decisions.get(pair.parent_id if pair.is_synthetic else pair.id)
        if decision is not None and decision not in LABEL_DECISIONS:
            raise ValueError(f"unknown label decision {decision!r} for {pair.id}; expected one of {LABEL_DECISIONS}")
        if decision == "drop":
            continue
        reverse = (decision == "swap") != (pair.id in reversed_children)
        out.append(swapped(pair) if reverse else pair)
    return out
