"""The augmentation half of a Step: allocation -> requests -> kept paraphrases -> stored records and new pairs.

Pure functions over what the Step read from the store and what the paraphraser returned, so each is
testable alone; RefinementRun._step only calls them in order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mars_core.augment.allocation import Allocation, split_sides
from mars_core.augment.cross_pairs import cross_pairs
from mars_core.augment.filters import Candidate, ParaphraseRequest, pass_rates_by_length
from mars_core.augment.paraphraser import Paraphraser
from mars_core.augment.selection import Selection
from mars_core.augment.semantic import (
    SemanticConfig,
    select_for_sharpening,
    semantic_distance,
    sharpen_contrast,
)
from mars_core.data.pairs import PreferencePair
from mars_core.run.epoch_metrics import AugmentationMetrics
from mars_core.store.sqlite import ParaphraseRecord


def paraphrase_requests(
    originals: list[PreferencePair], allocation: Allocation, seed: int
) -> tuple[list[ParaphraseRequest], list[int]]:
    """One request per (pair, side) with units, and its unit count; odd units go to a seeded coin's side."""
    requests: list[ParaphraseRequest] = []
    counts: list[int] = []
    odd_to_rejected = np.random.default_rng([seed, 7]).random(len(originals)) < 0.5  # see split_sides
    for pair, count, coin in zip(originals, allocation.counts, odd_to_rejected, strict=True):
        n_plus, n_minus = split_sides(int(count), bool(coin))
        if n_plus:
            requests.append(ParaphraseRequest(pair.id, "chosen", pair.chosen, pair.rejected, pair.prompt))
            counts.append(n_plus)
        if n_minus:
            requests.append(ParaphraseRequest(pair.id, "rejected", pair.rejected, pair.chosen, pair.prompt))
            counts.append(n_minus)
    return requests, counts


def rows_used(records: Sequence[ParaphraseRecord]) -> dict[tuple[str, str], int]:
    """Per (pair, side): the first row index not used by an earlier epoch (row k of a text is used once)."""
    used: dict[tuple[str, str], int] = defaultdict(int)
    for rec in records:
        if (rec.verdicts or {}).get("kind", "paraphrase") == "paraphrase":
            index = (rec.verdicts or {}).get("row")
            key = (rec.pair_id, rec.side)
            used[key] = max(used[key], int(index) + 1 if index is not None else used[key] + 1)
    return dict(used)


def build_synthetic(
    originals: list[PreferencePair], candidates: list[Candidate], epoch: int, model_name: str
) -> tuple[list[ParaphraseRecord], list[PreferencePair]]:
    """Store every candidate (kept ones await review, filtered ones keep their reasons) and cross the kept."""
    records: list[ParaphraseRecord] = []
    kept: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for cand in candidates:
        pid = f"e{epoch}:{cand.pair_id}:{cand.side[0]}{cand.candidate_index}"
        records.append(ParaphraseRecord(
            id=pid, pair_id=cand.pair_id, side=cand.side, epoch=epoch, source_text=cand.source_text,
            text=cand.text, model=model_name,
            similarity=None if np.isnan(cand.similarity) else float(cand.similarity),
            verdicts={
                "kind": "paraphrase", "row": cand.candidate_index,
                "reasons": list(cand.reasons), "other_similarity": _finite(cand.other_similarity),
                "length_ratio": _finite(cand.length_ratio), "polarity_source": cand.polarity_source,
                "polarity_candidate": cand.polarity_candidate,
            },
            status="pending" if cand.kept else "filtered",
        ))
        if cand.kept:
            kept[(cand.pair_id, cand.side)].append((pid, cand.text))
    new_pairs: list[PreferencePair] = []
    for parent in originals:
        plus, minus = kept.get((parent.id, "chosen"), []), kept.get((parent.id, "rejected"), [])
        if plus or minus:
            new_pairs += cross_pairs(parent, plus, minus, epoch)
    return records, new_pairs


def sharpen(
    originals: list[PreferencePair], allocation: Allocation, paraphraser: Paraphraser, encoder,
    config: SemanticConfig, epoch: int, seed: int,
) -> tuple[list[ParaphraseRecord], list[PreferencePair]]:
    """Paper v2: contrast-sharpening rewrites for picked pairs whose two responses are too alike."""
    low_contrast = select_for_sharpening(semantic_distance(
        [p.chosen for p in originals], [p.rejected for p in originals], encoder))
    picked = [p for p, c, low in zip(originals, allocation.counts, low_contrast) if c > 0 and low]
    if not picked:
        return [], []
    results = sharpen_contrast(picked, paraphraser, encoder, seed, config)
    by_id = {p.id: p for p in picked}
    records, pairs = [], []
    for res in results:
        if not res.accepted:
            continue
        parent = by_id[res.pair_id]
        pid = f"e{epoch}:{parent.id}:{res.side[0]}x"
        records.append(ParaphraseRecord(
            id=pid, pair_id=parent.id, side=res.side, epoch=epoch, source_text=res.old_text, text=res.new_text,
            model=paraphraser.name, similarity=None,
            verdicts={"kind": "contrast_rewrite", "old_distance": res.old_distance, "new_distance": res.new_distance},
        ))
        changed = {"chosen": res.new_text, "chosen_paraphrase_id": pid} if res.side == "chosen" else {
            "rejected": res.new_text, "rejected_paraphrase_id": pid}
        pairs.append(parent.with_changes(
            id=f"{parent.id}~e{epoch}~sharp", source="synthetic", parent_id=parent.id, epoch_added=epoch, **changed
        ))
    return records, pairs


def augmentation_metrics(
    counts: Sequence[int], selection: Selection, pairs_added: int, contrast_rewrites: int
) -> AugmentationMetrics:
    kept = len(selection.kept)
    candidates = selection.candidates
    return AugmentationMetrics(
        paraphrases_requested=int(sum(counts)),
        paraphrases_generated=selection.generations,
        paraphrases_kept=kept,
        paraphrase_failures=len(selection.failures),
        generations_per_kept=selection.generations / kept if kept else None,
        paraphrase_tokens=selection.tokens,
        paraphrase_cache_hits=selection.cache_hits,
        paraphrase_rounds=selection.rounds,
        filter_reasons=_reason_counts(candidates),
        pass_rates_by_length=_frame_records(pass_rates_by_length(candidates)) if candidates else [],
        contrast_rewrites=contrast_rewrites,
        pairs_added=pairs_added,
    )


def _reason_counts(candidates: list[Candidate]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for cand in candidates:
        for reason in cand.reasons:
            counts[reason] += 1
    return dict(counts)


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]
