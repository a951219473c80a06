"""Human review of generated paraphrases: the queue, its "most suspicious first" order, decisions.

A small paraphraser sometimes changes what a response says (a refusal becomes compliance), and
the synthetic pair then carries the original's label over a text that no longer deserves it.
The reviewer's job is to catch those; this module orders the queue so they come first and
turns store conflicts into messages. Pure functions over the store: the Streamlit page only
renders what these return, so everything here is testable without a browser.

Suspicion score (higher = look at it sooner), the sum of three terms each in [0, 1]:
  polarity       1 if the refusal/compliance reading flipped (refusal <-> compliance), 0.5 if it
                 changed in another way (a cue appeared or vanished) or if the paraphrase has a
                 different number of negations ("I'm not able to" -> "I'm able to": a dropped "not"
                 flips a refusal that the lexicon misread), 0 otherwise;
  dissimilarity  (1 − cosine) / (1 − the run's similarity floor), clipped to [0, 1]: 0 for a copy,
                 1 at the filter's lowest allowed similarity; 0 where no similarity was measured;
  shift          |margin shift| / (|margin shift| + s), where s is the median |Δ| of the run's
                 original training pairs under the same model: 0.5 when the paraphrase alone moves
                 its pair's margin by a typical margin. A fixed per-run scale (not the pair's own
                 margin) so low-margin pairs, which MARS picks on purpose, do not all look suspicious.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mars_core.augment.filters import polarity_flipped
from mars_core.data.toy import parse_toy_vector
from mars_core.model.reward import RewardModel
from mars_core.run.components import build_reward_model
from mars_core.run.config import RunConfig
from mars_core.store.export import export_rows, rows_to_bytes
from mars_core.store.sqlite import REVIEW_STATUSES, ParaphraseRecord, ReviewConflict, Store, StoreError

ORDERS = ("suspicious", "oldest")
DEFAULT_SIMILARITY_FLOOR = 0.75  # FilterConfig.min_similarity's default, for runs that do not record one

POLICY_EXPLAINED = {
    "auto": (
        "auto: paraphrases that passed the filters train at once; a rejection removes the synthetic "
        "pairs built from that paraphrase from the next step's training set."
    ),
    "gated": (
        "gated: nothing synthetic trains until a person accepts (or edits) it; pending and rejected "
        "paraphrases stay out of training."
    ),
}

QUEUE_COLUMNS = [
    "id", "pair_id", "side", "epoch", "status", "prompt", "original", "paraphrase", "other_response",
    "edited_text", "similarity", "other_similarity", "length_ratio", "polarity_source", "polarity_candidate",
    "negations", "reasons", "kind", "margin", "reward_original", "reward_paraphrase", "reward_shift",
    "margin_shift", "margin_after", "flips_margin", "polarity_score", "dissimilarity_score", "shift_score",
    "suspicion", "model", "reviewer", "reviewed_at", "created_at",
]


# -- the reward model the reviewer sees ------------------------------------------------------------
def load_reward_model(store: Store, run_id: int, epoch: int | None = None) -> RewardModel:
    """The run's reward model as of ``epoch`` (default: the last finished one), without the paraphraser.

    Review only needs rewards, so this builds the featurizer and loads the stored weights; loading
    the 135M paraphraser (as RefinementRun.open does) would cost seconds for nothing.
    """
    run = store.get_run(run_id)
    epoch = store.last_epoch(run_id) if epoch is None else epoch
    if epoch is None:
        raise StoreError(f"run {run_id} has no finished epoch, so it has no reward model yet")
    state = store.get_epoch(run_id, epoch, with_model=True).model_state
    if state is None:
        raise StoreError(f"run {run_id} epoch {epoch} stored no model weights")
    model = build_reward_model(RunConfig.from_dict(run.config), store)
    model.load_state(state)
    return model


def reward_shift(
    model: RewardModel, records: Sequence[ParaphraseRecord], prompts: Mapping[str, str]
) -> pd.DataFrame:
    """Reward of each paraphrase minus reward of the text it paraphrases, under ``model``.

    ``prompts`` maps pair id -> prompt (the reward is r(x, y), so the prompt matters). The
    paraphrase is the text that would train (the reviewer's edit where there is one). Columns:
    reward_original, reward_paraphrase, reward_shift, margin_shift. margin_shift is how much the
    pair's margin Δ = r(y+) − r(y−) moves when this paraphrase replaces its side: +shift for a
    chosen-side paraphrase, −shift for a rejected-side one; negative means "towards a flipped label".
    """
    if not records:
        return pd.DataFrame(columns=["reward_original", "reward_paraphrase", "reward_shift", "margin_shift"])
    missing = sorted({r.pair_id for r in records} - set(prompts))
    if missing:
        raise KeyError(f"no prompt for pair(s) {', '.join(missing[:5])}")
    batch_prompts = [prompts[r.pair_id] for r in records]
    texts = [r.source_text for r in records] + [r.final_text for r in records]
    rewards = np.asarray(model.rewards(batch_prompts + batch_prompts, texts), dtype=float)
    original, paraphrase = rewards[: len(records)], rewards[len(records) :]
    shift = paraphrase - original
    sign = np.array([1.0 if r.side == "chosen" else -1.0 for r in records])
    return pd.DataFrame({
        "reward_original": original, "reward_paraphrase": paraphrase, "reward_shift": shift,
        "margin_shift": sign * shift,
    })


# -- the suspicion score (see the module docstring) ------------------------------------------------
_NEGATION = re.compile(r"\b(?:not|no|never|none|nothing|nobody|neither|nor|cannot)\b|n't\b")


def negation_count(text: str) -> int:
    """Negation words in a text ("can't", "cannot", "do not" count once each)."""
    return len(_NEGATION.findall(text.casefold().replace("\u2019", "'")))


def polarity_score(
    source: str | None, candidate: str | None, source_text: str = "", candidate_text: str = ""
) -> float:
    """1: refusal <-> compliance; 0.5: another change of reading, or of the number of negations; else 0."""
    if source and candidate and polarity_flipped(source, candidate):  # type: ignore[arg-type]
        return 1.0
    if source and candidate and source != candidate:
        return 0.5
    return 0.5 if negation_count(source_text) != negation_count(candidate_text) else 0.0


def dissimilarity_score(similarity: float | None, floor: float = DEFAULT_SIMILARITY_FLOOR) -> float:
    if similarity is None or not np.isfinite(similarity):
        return 0.0
    return float(np.clip((1.0 - similarity) / max(1.0 - floor, 1e-6), 0.0, 1.0))


def shift_score(margin_shift: float, typical_margin: float) -> float:
    size = abs(float(margin_shift))
    if size == 0.0:
        return 0.0
    return size / (size + max(float(typical_margin), 1e-12))


# -- the queue -------------------------------------------------------------------------------------
def review_queue(
    store: Store,
    run_id: int,
    status: str | Iterable[str] = ("pending",),
    side: str | None = None,
    epoch: int | None = None,
    min_similarity: float | None = None,
    max_similarity: float | None = None,
    margin_range: tuple[float, float] | None = None,
    order: str = "suspicious",
    model: RewardModel | None = None,
    pair_ids: Iterable[str] | None = None,
    typical_margin: float | None = None,
) -> pd.DataFrame:
    """Paraphrases to review, joined with their pair (prompt, the other response) and its margin.

    Margins and rewards come from ``model`` (default: the run's last epoch, the model the next
    step allocates with). A similarity bound drops items without a measured similarity (the toy,
    contrast rewrites): pass no bound to see them. ``margin_range`` is inclusive, on the parent
    pair's margin Δ. ``pair_ids`` keeps the paraphrases of those original pairs only (the hardest
    pairs picked on the Margins page). Order "suspicious": highest suspicion first; "oldest": generation order.
    ``typical_margin`` scales the shift score (default: median |Δ| of every original pair under ``model``);
    the app passes the median of the margins stored with the model's epoch, so it scores only the pairs
    that have paraphrases (at 20,000 text pairs, scoring all of them cost seconds per page visit).
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if side is not None and side not in ("chosen", "rejected"):
        raise ValueError(f"side must be 'chosen', 'rejected' or None, got {side!r}")
    records = store.get_paraphrases(run_id, status=status, side=side, epoch=epoch)
    if not records:
        return pd.DataFrame(columns=QUEUE_COLUMNS)
    config = store.get_run(run_id).config
    floor = float(config.get("filters", {}).get("min_similarity", DEFAULT_SIMILARITY_FLOOR))
    originals = store.get_pairs(run_id, split="train", synthetic=False)
    by_id = {p.id: p for p in originals}
    wanted = by_id.keys() if pair_ids is None else set(pair_ids) & by_id.keys()
    records = [r for r in records if r.pair_id in wanted]
    if min_similarity is not None or max_similarity is not None:
        lo = -np.inf if min_similarity is None else min_similarity
        hi = np.inf if max_similarity is None else max_similarity
        records = [r for r in records if r.similarity is not None and lo <= r.similarity <= hi]
    if not records:
        return pd.DataFrame(columns=QUEUE_COLUMNS)

    model = model or load_reward_model(store, run_id)
    parents = [by_id[i] for i in dict.fromkeys(r.pair_id for r in records)]
    margin_of = dict(zip([p.id for p in parents], np.asarray(model.margins(parents), dtype=float), strict=True))
    if typical_margin is None:
        typical_margin = float(np.median(np.abs(model.margins(originals)))) if originals else 1.0
    typical = typical_margin
    rewards = reward_shift(model, records, {p.id: p.prompt for p in originals})

    rows = []
    for rec, rw in zip(records, rewards.itertuples(index=False), strict=True):
        pair = by_id[rec.pair_id]
        verdicts = rec.verdicts or {}
        margin = float(margin_of[rec.pair_id])
        scores = (
            polarity_score(verdicts.get("polarity_source"), verdicts.get("polarity_candidate"),
                           rec.source_text, rec.final_text),
            dissimilarity_score(rec.similarity, floor),
            shift_score(rw.margin_shift, typical),
        )
        rows.append({
            "id": rec.id, "pair_id": rec.pair_id, "side": rec.side, "epoch": rec.epoch, "status": rec.status,
            "prompt": pair.prompt, "original": rec.source_text, "paraphrase": rec.text,
            "other_response": pair.rejected if rec.side == "chosen" else pair.chosen,
            "edited_text": rec.edited_text, "similarity": rec.similarity,
            "other_similarity": verdicts.get("other_similarity"),
            "length_ratio": verdicts.get("length_ratio"),
            "polarity_source": verdicts.get("polarity_source"),
            "polarity_candidate": verdicts.get("polarity_candidate"),
            "negations": f"{negation_count(rec.source_text)} → {negation_count(rec.final_text)}",
            "reasons": ", ".join(verdicts.get("reasons", [])), "kind": verdicts.get("kind", "paraphrase"),
            "margin": margin, "reward_original": rw.reward_original,
            "reward_paraphrase": rw.reward_paraphrase,
            "reward_shift": rw.reward_shift, "margin_shift": rw.margin_shift,
            "margin_after": margin + rw.margin_shift,
            "flips_margin": bool(np.sign(margin + rw.margin_shift) != np.sign(margin)),
            "polarity_score": scores[0],
            "dissimilarity_score": scores[1], "shift_score": scores[2], "suspicion": sum(scores),
            "model": rec.model, "reviewer": rec.reviewer, "reviewed_at": rec.reviewed_at,
            "created_at": rec.created_at,
        })
    frame = pd.DataFrame(rows, columns=QUEUE_COLUMNS)
    if margin_range is not None:
        lo, hi = margin_range
        frame = frame[(frame["margin"] >= lo) & (frame["margin"] <= hi)]
    if order == "suspicious":  # stable: equal scores keep generation order
        frame = frame.sort_values("suspicion", ascending=False, kind="mergesort")
    return frame.reset_index(drop=True)


def progress_counts(store: Store, run_id: int) -> dict[str, Any]:
    """Counts per review status, plus how much of the reviewable work is done.

    ``reviewable`` excludes filtered candidates: the filters dropped them and nobody can decide them.
    """
    counts = store.review_counts(run_id)
    reviewable = sum(counts[s] for s in REVIEW_STATUSES)
    decided = reviewable - counts["pending"]
    return {**counts, "reviewable": reviewable, "decided": decided,
            "fraction_decided": decided / reviewable if reviewable else 0.0}


def review_policy(store: Store, run_id: int) -> str:
    return store.get_run(run_id).config.get("refine", {}).get("review_policy", "auto")


# -- decisions -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecisionOutcome:
    """What happened to one decision, phrased for the reviewer."""

    paraphrase_id: str
    ok: bool
    message: str
    conflict: bool = False  # someone else decided it first; the UI moves on
    record: ParaphraseRecord | None = None


def _decide(
    store: Store, run_id: int, paraphrase_id: str, status: str, reviewer: str, edited_text: str | None,
    expected_status: str,
) -> DecisionOutcome:
    if not reviewer or not reviewer.strip():
        return DecisionOutcome(
            paraphrase_id, False, "Enter your name before deciding: every decision is signed."
        )
    try:
        record = store.decide(run_id, paraphrase_id, status, reviewer, edited_text, expected_status)
    except ReviewConflict as exc:
        who = exc.reviewer or "someone else"
        return DecisionOutcome(
            paraphrase_id, False, f"{paraphrase_id} was already decided by {who} ({exc.status}); moving on.",
            conflict=True,
        )
    except (ValueError, StoreError) as exc:
        return DecisionOutcome(paraphrase_id, False, str(exc))
    verb = {"accepted": "Accepted", "rejected": "Rejected", "edited": "Saved your edit of"}[status]
    return DecisionOutcome(paraphrase_id, True, f"{verb} {paraphrase_id}.", record=record)


def accept(
    store: Store, run_id: int, paraphrase_id: str, reviewer: str, expected_status: str = "pending"
) -> DecisionOutcome:
    return _decide(store, run_id, paraphrase_id, "accepted", reviewer, None, expected_status)


def reject(
    store: Store, run_id: int, paraphrase_id: str, reviewer: str, expected_status: str = "pending"
) -> DecisionOutcome:
    return _decide(store, run_id, paraphrase_id, "rejected", reviewer, None, expected_status)


def edit(
    store: Store, run_id: int, paraphrase_id: str, reviewer: str, edited_text: str,
    expected_status: str = "pending",
) -> DecisionOutcome:
    """Store the reviewer's text beside the generated one; it replaces the generated text in training."""
    try:
        record = store.get_paraphrase(run_id, paraphrase_id)
    except StoreError as exc:
        return DecisionOutcome(paraphrase_id, False, str(exc))
    text = (edited_text or "").strip()
    if not text:
        return DecisionOutcome(paraphrase_id, False, "The edited text is empty; write the corrected text.")
    if text == record.text.strip():
        return DecisionOutcome(paraphrase_id, False, "The edit equals the generated text; use Accept.")
    problem = _edit_problem(store, run_id, record, text)
    if problem:
        return DecisionOutcome(paraphrase_id, False, problem)
    return _decide(store, run_id, paraphrase_id, "edited", reviewer, text, expected_status)


def skip(paraphrase_id: str) -> DecisionOutcome:
    """Nothing is written: the item stays pending for this reviewer's later pass or someone else."""
    return DecisionOutcome(paraphrase_id, True, f"Skipped {paraphrase_id}; it is left as it was.")


def _edit_problem(store: Store, run_id: int, record: ParaphraseRecord, text: str) -> str | None:
    """The toy's "texts" are feature vectors: an edit that is not one would crash the next step."""
    if store.get_run(run_id).config.get("data", {}).get("source") != "demo:toy":
        return None
    try:
        edited, source = parse_toy_vector(text), parse_toy_vector(record.source_text)
    except ValueError as exc:
        return f"This run's responses are toy vectors: {exc}"
    if edited.size != source.size:
        return f"This run's responses are {source.size}-d toy vectors; the edit has {edited.size} numbers."
    return None


# -- export ----------------------------------------------------------------------------------------
def export_bytes(
    store: Store, run_id: int, selection: str = "reviewed", fmt: str = "jsonl"
) -> tuple[bytes, int]:
    """The same rows export_run writes, as bytes for a download button; (data, number of rows)."""
    rows = export_rows(store, run_id, selection)
    return rows_to_bytes(rows, fmt), len(rows)
