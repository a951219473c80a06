"""Likely label errors of a run: their ranking from stored out-of-fold margins, and reviewers' corrections.

The score is analysis.label_errors' σ(−Δ_oof), read from the margins the store already keeps: an epoch's
``alloc_margin`` rows are out-of-fold when its allocation was cross-fitted (epochs ≥ 1 of a run whose
strategy reads margins, with folds ≥ 2), and at epoch 0 when the run was created with a linear head and
folds ≥ 2. No new column: the score is a pure function of a stored margin.

Decisions (keep / swap / drop / unsure) go to the store in one transaction each, with the reviewer, the
time and the score they saw, and a log line; the next Step trains on the corrected labels (the store's
training_pairs applies them). Pure functions over the store, so the page only renders what these return.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from mars_core.analysis.label_errors import (
    LABEL_DECISIONS,
    confident_threshold,
    flagged,
    label_error_scores,
    rank_suspects,
)
from mars_core.store.sqlite import LabelConflict, LabelDecision, Store, StoreError

DECISION_EXPLAINED = {
    "keep": "the label is right: train the pair as labelled",
    "swap": "the label is reversed: train the pair (and its paraphrased children) the other way round",
    "drop": "the pair cannot be judged or is broken: leave it (and its children) out of training",
    "unsure": "recorded for a second look; the pair trains as labelled",
}
SCORE_COLUMNS = ["rank", "pair_id", "score", "oof_margin", "confidence", "flagged"]


@dataclass(frozen=True)
class LabelScores:
    """One epoch's label-error scores, most suspicious first."""

    epoch: int
    frame: pd.DataFrame  # SCORE_COLUMNS; confidence = σ(Δ_oof), the model's belief in the label
    threshold: float  # confident learning's t: pairs with score ≥ t are flagged
    folds: str  # where the margins came from, in words

    @property
    def n_flagged(self) -> int:
        return int(self.frame["flagged"].sum())


def scored_epochs(store: Store, run_id: int) -> list[int]:
    """Epochs whose stored allocation margins are out-of-fold (so a label-error score can be read)."""
    out = []
    for rec in store.epoch_table(run_id):
        epoch, source = rec["epoch"], str((rec.get("allocation") or {}).get("margin_source", ""))
        if epoch >= 1 and "cross-fitted" in source:
            out.append(epoch)
        elif epoch == 0 and store.margins_complete(run_id, 0, "train", "alloc_margin"):
            out.append(0)
    return out


def why_no_scores(store: Store, run_id: int) -> str:
    config = store.get_run(run_id).config
    folds = config.get("refine", {}).get("cross_fit_folds", 0)
    if folds < 2:
        return ("Label-error scores need out-of-fold margins, and this run uses in-sample ones (--folds 0). "
                "Create a run with --folds 5 (the default) to score its labels.")
    return ("No epoch of this run has out-of-fold margins yet: a linear run has them from creation; a "
            "fine-tuned one from its first Step with a strategy that cross-fits (mars, uniform, won).")


def label_scores(store: Store, run_id: int, epoch: int | None = None) -> LabelScores | None:
    """Scores from the latest out-of-fold epoch at or before ``epoch`` (default: the latest); None if none."""
    epochs = [e for e in scored_epochs(store, run_id) if epoch is None or e <= epoch]
    if not epochs:
        return None
    chosen = epochs[-1]
    rows = store.margin_rows(run_id, chosen, "train")
    ids = [r["pair_id"] for r in rows]
    margins = np.array([r["alloc_margin"] for r in rows], dtype=float)
    scores = label_error_scores(margins)
    order = rank_suspects(scores, ids)
    frame = pd.DataFrame({
        "rank": np.arange(1, len(order) + 1),
        "pair_id": [ids[i] for i in order],
        "score": scores[order],
        "oof_margin": margins[order],
        "confidence": expit(margins[order]),
        "flagged": flagged(margins)[order],
    })
    config = store.get_run(run_id).config
    folds = f"{config.get('refine', {}).get('cross_fit_folds')}-fold out-of-fold margins of epoch {chosen}"
    return LabelScores(chosen, frame, confident_threshold(margins), folds)


def suspects(
    store: Store, run_id: int, top: int | None = None, epoch: int | None = None, undecided_only: bool = False,
    scores: LabelScores | None = None,
) -> pd.DataFrame:
    """The ranking with each pair's texts (as stored) and any decision on it; empty if no scores exist.

    ``scores``: label_scores' answer when the caller already has it (the app keeps it per stored epoch)."""
    return with_texts(store, run_id, ranking(store, run_id, top, epoch, undecided_only, scores))


def ranking(
    store: Store, run_id: int, top: int | None = None, epoch: int | None = None, undecided_only: bool = False,
    scores: LabelScores | None = None,
) -> pd.DataFrame:
    """suspects without the texts: cheap at 100,000 pairs, so a page can pick its rows before reading texts."""
    scores = scores if scores is not None else label_scores(store, run_id, epoch)
    if scores is None:
        return pd.DataFrame(columns=[*SCORE_COLUMNS, "decision", "reviewer"])
    frame = scores.frame
    decisions = store.label_decisions(run_id)
    if undecided_only:
        frame = frame[~frame["pair_id"].isin(decisions)]
    if top is not None:
        if top < 1:
            raise ValueError(f"top must be at least 1, got {top}")
        frame = frame.head(top)
    out = frame.copy()
    out["decision"] = [decisions[i].decision if i in decisions else None for i in out["pair_id"]]
    out["reviewer"] = [decisions[i].reviewer if i in decisions else None for i in out["pair_id"]]
    return out.reset_index(drop=True)


def with_texts(store: Store, run_id: int, ranked: pd.DataFrame) -> pd.DataFrame:
    """``ranked`` (rows of ranking) with each pair's prompt, responses and gold margin, read for those rows only."""
    pairs = {p.id: p for p in store.get_pairs(run_id, split="train", synthetic=False,
                                              ids=ranked["pair_id"].tolist())}
    out = ranked.copy()
    for column in ("prompt", "chosen", "rejected", "gold_margin"):
        out[column] = [getattr(pairs[i], column) if i in pairs else None for i in out["pair_id"]]
    return out[[*SCORE_COLUMNS, "decision", "reviewer", "prompt", "chosen", "rejected", "gold_margin"]]


def progress(store: Store, run_id: int, scores: LabelScores | None = None) -> dict[str, int]:
    """Decisions so far, per kind, and how many pairs the threshold flags (``scores``: as in suspects)."""
    decided = store.label_decisions(run_id)
    counts = {d: sum(1 for x in decided.values() if x.decision == d) for d in LABEL_DECISIONS}
    scores = scores if scores is not None else label_scores(store, run_id)
    counts["decided"] = len(decided)
    counts["flagged"] = scores.n_flagged if scores else 0
    return counts


# -- decisions ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelOutcome:
    pair_id: str
    ok: bool
    message: str
    conflict: bool = False  # someone else decided it first; the UI moves on
    decision: LabelDecision | None = None


def decide(
    store: Store, run_id: int, pair_id: str, decision: str, reviewer: str, expected: str | None = None,
    score: float | None = None,
) -> LabelOutcome:
    """Record a verdict; ``expected`` is the decision the reviewer saw (None: undecided)."""
    if not reviewer or not reviewer.strip():
        return LabelOutcome(pair_id, False, "Enter your name before deciding: every decision is signed.")
    try:
        record = store.decide_label(run_id, pair_id, decision, reviewer, expected, score)
    except LabelConflict as exc:
        who = exc.reviewer or "someone else"
        return LabelOutcome(
            pair_id, False, f"{pair_id} was already decided by {who} ({exc.decision}); moving on.", conflict=True)
    except (ValueError, StoreError) as exc:
        return LabelOutcome(pair_id, False, str(exc))
    verb = {"keep": "Kept the label of", "swap": "Swapped the label of", "drop": "Dropped",
            "unsure": "Marked as unsure:"}[decision]
    return LabelOutcome(pair_id, True, f"{verb} {pair_id}.", decision=record)
