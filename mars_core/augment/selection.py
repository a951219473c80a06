"""From budget units to kept paraphrases: over-generate, filter, keep the best, retry the empty.

The budget unit. The paper's B_t counts augmented samples, so one unit is ONE KEPT PARAPHRASE of one
response (a pair allocated c units gets up to c paraphrases, split between its two responses by
``split_sides``). To fill a unit the Step asks the paraphraser for ``candidates_per_unit`` candidates,
runs the filters on all of them and keeps the passing candidate most similar to its source (meaning
first: the filters' band already rules out near copies); units still empty get further rounds until
``generations_per_unit`` LM generations have been spent on them. A unit's next round is asked as soon
as its own candidates are judged, not when every unit's are: with a streaming paraphraser (the
in-process engine) its rows join the running batch, so a Step no longer waits for each round's
slowest row. LM generations are reported next to the kept count (``generations``, per epoch
``paraphrases_generated`` and ``generations_per_kept``), so strategies that spend the same budget can
still be compared at equal LM cost. A unit that stays empty after its cap is not charged: the run's
budget counts kept paraphrases.

Row indices: request i's candidates are rows ``first[i], first[i] + 1, ...`` of its text (see
paraphraser.row_key), so the k-th candidate of a text is the same whichever strategy or epoch asks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mars_core.augment.filters import Candidate, FilterConfig, ParaphraseRequest, filter_candidates
from mars_core.augment.paraphraser import Ask, Paraphraser, ParaphraseResult

NOT_SELECTED = "not_selected"  # passed every filter, but the unit was already filled by a better candidate


@dataclass
class Selection:
    """Every candidate judged (kept ones are the selected), and what the LM spent."""

    candidates: list[Candidate]
    generations: int = 0  # LM rows produced (cache hits included)
    tokens: int = 0
    seconds: float = 0.0
    filter_seconds: float = 0.0  # judging candidates and picking the best, while rows are generated
    cache_hits: int = 0
    rounds: int = 0  # 1 + retries of the unit retried most (streamed or not: the same count)
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

    A request is judged as soon as all its rows are back, and its retry is asked then: a paraphraser that
    streams (``paraphrase_stream``, the in-process engine) decodes it while other requests' rows are still
    in flight; any other paraphraser gets one call per round of the requests that are ready. Which rows a
    request gets, and which are kept, depend on its own candidates only, so both ways choose the same.
    ``on_round(units_filled, units_total)`` is called whenever that count changes (progress). Candidates
    keep their global row index as ``candidate_index``.
    """
    if len(requests) != len(counts):
        raise ValueError(f"{len(requests)} requests but {len(counts)} counts")
    if not any(int(c) > 0 for c in counts):
        return Selection(candidates=[])  # nothing to fill: the paraphraser is not asked (a lazy one not loaded)
    units = _Units(requests, counts, list(first) if first is not None else [0] * len(requests), encoder, filters,
                   candidates_per_unit, generations_per_unit, on_round)
    result = Selection(candidates=[])
    stream = getattr(paraphraser, "paraphrase_stream", None)
    while True:
        got = stream(units, seed) if stream is not None else _in_rounds(paraphraser, units, seed)
        result.generations += got.generations
        result.tokens += got.tokens
        result.seconds += got.seconds
        result.cache_hits += got.cache_hits
        result.failures += got.failures
        if not units.more_to_judge():
            break
    result.candidates = [cand for judged in units.judged for cand in judged]
    result.filter_seconds = units.judge_seconds
    result.rounds = max(units.times_asked, default=0)
    result.requested_rows = units.requested
    return result


class _Units:
    """The feed of one selection (paraphraser.RowFeed): per request, the rows asked and returned, and its
    latest judgement; ``more()`` judges the requests whose rows are all back and asks their retries."""

    def __init__(self, requests: Sequence[ParaphraseRequest], counts: Sequence[int], starts: list[int], encoder,
                 filters: FilterConfig, candidates_per_unit: int, generations_per_unit: int,
                 on_round: Callable[[int, int], None] | None) -> None:
        self.requests, self.counts, self.starts = requests, [int(c) for c in counts], starts
        self.encoder, self.filters, self.per_unit, self.on_round = encoder, filters, candidates_per_unit, on_round
        self.caps = [c * generations_per_unit for c in self.counts]
        self.outputs: list[list[str | None]] = [[] for _ in requests]  # None: asked, not back yet
        self.pending = [0] * len(requests)
        self.ready = set(range(len(requests)))  # every row back, not judged since
        self.judged: list[list[Candidate]] = [[] for _ in requests]
        self.filled = [0] * len(requests)
        self.times_asked = [0] * len(requests)
        self.requested = 0
        self.judge_seconds = 0.0

    def more_to_judge(self) -> bool:
        return bool(self.ready)

    def more(self) -> list[Ask]:
        ready, self.ready = sorted(self.ready), set()
        self._judge([i for i in ready if self.outputs[i]])
        asks = []
        for i in ready:
            need = self.counts[i] - self.filled[i]
            ask = min(need * self.per_unit, self.caps[i] - len(self.outputs[i])) if need > 0 else 0
            if ask > 0:
                row = self.starts[i] + len(self.outputs[i])
                asks += [Ask(self.requests[i].text, row + k, (i, len(self.outputs[i]) + k)) for k in range(ask)]
                self.outputs[i] += [None] * ask
                self.pending[i] += ask
                self.times_asked[i] += 1
        self.requested += len(asks)
        return asks

    def deliver(self, ask: Ask, text: str, failure: str | None) -> None:  # noqa: ARG002 - the stream reports it
        i, slot = ask.tag
        self.outputs[i][slot] = text
        self.pending[i] -= 1
        if self.pending[i] == 0:
            self.ready.add(i)

    def _judge(self, which: list[int]) -> None:
        if not which:
            return
        started = time.perf_counter()
        requests = [self.requests[i] for i in which]
        candidates = judge(requests, [self.outputs[i] for i in which], self.encoder, self.filters)
        _select(candidates, requests, [self.counts[i] for i in which], [self.starts[i] for i in which])
        slot = {(self.requests[i].pair_id, self.requests[i].side): i for i in which}
        for i in which:
            self.judged[i] = []
        for cand in candidates:
            self.judged[slot[(cand.pair_id, cand.side)]].append(cand)
        before = sum(self.filled)
        for i in which:
            self.filled[i] = sum(c.kept for c in self.judged[i])
        self.judge_seconds += time.perf_counter() - started
        if self.on_round is not None and sum(self.filled) != before:
            self.on_round(sum(self.filled), sum(self.counts))


def _in_rounds(paraphraser: Paraphraser, units: _Units, seed: int) -> ParaphraseResult:
    """A paraphraser that cannot stream: one ``paraphrase`` call per round of asks, each request's rows
    asked as (text, how many, first row)."""
    total = ParaphraseResult(texts=[])
    while asks := units.more():
        groups: dict[int, list[Ask]] = {}
        for ask in asks:
            groups.setdefault(ask.tag[0], []).append(ask)
        runs = list(groups.values())
        got = paraphraser.paraphrase([run[0].text for run in runs], [len(run) for run in runs], seed,
                                     first=[run[0].index for run in runs])
        for run, texts in zip(runs, got.texts):
            for ask, text in zip(run, list(texts) + [""] * (len(run) - len(texts))):
                units.deliver(ask, text, None)
        total.generations += got.generations
        total.tokens += got.tokens
        total.seconds += got.seconds
        total.cache_hits += got.cache_hits
        total.failures += got.failures
    return total


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
