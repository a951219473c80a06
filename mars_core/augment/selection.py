"""From budget units to kept paraphrases: over-generate, filter, keep the best, retry the empty.

The budget unit. The paper's B_t counts augmented samples, so one unit is ONE KEPT PARAPHRASE of one
response (a pair allocated c units gets up to c paraphrases, split between its two responses by
``split_sides``). To fill a unit the Step asks the paraphraser for ``candidates_per_unit`` candidates,
runs the filters on all of them and keeps the passing candidate most similar to its source (meaning
first: the filters' band already rules out near copies); units still empty get further rounds until
``generations_per_unit`` LM generations have been spent on them. LM generations are reported next to
the kept count (``generations``, per epoch ``paraphrases_generated`` and ``generations_per_kept``), so
strategies that spend the same budget can still be compared at equal LM cost. A unit that stays empty
after its cap is not charged: the run's budget counts kept paraphrases.

Row indices: request i's candidates are rows ``first[i], first[i] + 1, ...`` of its text (see
paraphraser.row_key), so the k-th candidate of a text is the same whichever strategy or epoch asks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mars_core.augment.filters import Candidate, FilterConfig, ParaphraseRequest, filter_candidates
from mars_core.augment.paraphraser import Paraphraser

NOT_SELECTED = "not_selected"  # passed every filter, but the unit was already filled by a better candidate


@dataclass
class Selection:
    """Every candidate judged (kept ones are the selected), and what the LM spent."""

    candidates: list[Candidate]
    generations: int = 0  # LM rows produced (cache hits included)
    tokens: int = 0
    seconds: float = 0.0
    filter_seconds: float = 0.0  # judging candidates and picking the best, between the rounds
    cache_hits: int = 0
    rounds: int = 0
    requested_rows: int = 0  # rows asked of the paraphraser, failed ones included (check_paraphrase_failures)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def kept(self) -> list[Candidate]:
        return [c for c in self.candidates if c.kept]


def judge(requests: Sequence[ParaphraseRequest], outputs: Sequence[Sequence[str]], encoder,
          config: FilterConfig) -> list[Candidate]:
    """Filter results, or (no encoder: the toy, whose 'texts' are vectors) every non-empty output kept."""
    if encoder is not None:
        return filter_candidates(requests, outputs, encoder, config)
    return [
        Candidate(r.pair_id, r.side, r.prompt, r.text, r.other_text, k, text, float("nan"), float("nan"),
                  1.0, "neutral", "neutral", [] if text else ["empty"])
        for r, texts in zip(requests, outputs) for k, text in enumerate(texts)
    ]


def select_paraphrases(
    paraphraser: Paraphraser,
    requests: Sequence[ParaphraseRequest],
    counts: Sequence[int],
    encoder,
    filters: FilterConfig,
    candidates_per_unit: int,
    generations_per_unit: int,
    seed: int,
    first: Sequence[int] | None = None,
    on_round: Callable[[int, int], None] | None = None,
) -> Selection:
    """Fill ``counts[i]`` units of each request with kept paraphrases; see the module docstring.

    ``on_round(units_filled, units_total)`` is called after each round (progress). Candidates keep
    their global row index as ``candidate_index``.
    """
    if len(requests) != len(counts):
        raise ValueError(f"{len(requests)} requests but {len(counts)} counts")
    starts = list(first) if first is not None else [0] * len(requests)
    outputs: list[list[str]] = [[] for _ in requests]
    caps = [int(c) * generations_per_unit for c in counts]
    result = Selection(candidates=[])
    total_units = int(sum(counts))
    filled = [0] * len(requests)
    while True:
        ask = [0] * len(requests)
        for i, c in enumerate(counts):
            need = int(c) - filled[i]
            if need > 0:
                ask[i] = min(need * candidates_per_unit, caps[i] - len(outputs[i]))
        todo = [i for i, a in enumerate(ask) if a > 0]
        if not todo:
            break
        got = paraphraser.paraphrase([requests[i].text for i in todo], [ask[i] for i in todo], seed,
                                     first=[starts[i] + len(outputs[i]) for i in todo])
        result.rounds += 1
        result.generations += got.generations
        result.requested_rows += sum(ask)
        result.tokens += got.tokens
        result.seconds += got.seconds
        result.cache_hits += got.cache_hits
        result.failures += got.failures
        for i, texts in zip(todo, got.texts):
            outputs[i] += list(texts) + [""] * (ask[i] - len(texts))
        judging = time.perf_counter()
        result.candidates = _select(judge(requests, outputs, encoder, filters), requests, counts, starts)
        result.filter_seconds += time.perf_counter() - judging
        filled = [0] * len(requests)
        slot = {(r.pair_id, r.side): i for i, r in enumerate(requests)}
        for cand in result.kept:
            filled[slot[(cand.pair_id, cand.side)]] += 1
        if on_round is not None:
            on_round(sum(filled), total_units)
    return result


def _select(candidates: list[Candidate], requests: Sequence[ParaphraseRequest], counts: Sequence[int],
            starts: Sequence[int]) -> list[Candidate]:
    """Keep the ``count`` passing candidates of each request most similar to their source; mark the rest."""
    by_request: dict[tuple[str, str], list[Candidate]] = {}
    for cand in candidates:
        by_request.setdefault((cand.pair_id, cand.side), []).append(cand)
    for i, req in enumerate(requests):
        group = by_request.get((req.pair_id, req.side), [])
        for cand in group:
            cand.candidate_index += starts[i]
        passing = [c for c in group if c.kept]
        passing.sort(key=lambda c: (-_score(c), c.candidate_index))
        for cand in passing[int(counts[i]):]:
            cand.reasons.append(NOT_SELECTED)
    return candidates


def _score(cand: Candidate) -> float:
    return 0.0 if not np.isfinite(cand.similarity) else float(cand.similarity)


class ParaphraserFailed(RuntimeError):
    """The paraphraser failed (errors, not filters) on too many rows: the epoch must not be stored as a result."""


def check_paraphrase_failures(selection: Selection, max_failed_share: float) -> None:
    """Raise ParaphraserFailed when the paraphraser produced nothing because of errors, or failed too often.

    Failure is not a result. Rows the filters rejected are a result (the paraphraser worked and the filters
    judged); rows that failed (server down, timeouts, the Step's deadline, a crash) are not. The epoch is refused
    when every requested row failed, or when the failed share of requested rows exceeds ``max_failed_share``
    (RefineConfig.max_failed_share, ``--max-paraphrase-failures``; 1.0 refuses only a total failure). Nothing is
    stored then, so the same epoch can be retried once the paraphraser works.
    """
    requested, failed = selection.requested_rows, len(selection.failures)
    if requested <= 0 or failed == 0:
        return
    share = failed / requested
    if failed < requested and share <= max_failed_share:
        return
    reasons: dict[str, int] = {}
    for _, why in selection.failures:
        reasons[why] = reasons.get(why, 0) + 1
    common = "; ".join(f"{why} ({n}x)" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
    what = "every one" if failed == requested else f"{share:.0%}, above the limit of {max_failed_share:.0%}"
    raise ParaphraserFailed(
        f"the paraphraser failed on {failed} of {requested} requested rows ({what}; --max-paraphrase-failures): "
        f"{common}. Nothing of this epoch was stored; fix the paraphraser and step again")
