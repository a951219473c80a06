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
    seconds: float = 0.0  # wall time of the selection; in a stream shared with others (select_together), its share
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


@dataclass(frozen=True)
class SelectionTask:
    """One selection's inputs (``select_paraphrases``' arguments), so several can share one stream (``select_together``)."""

    paraphraser: Paraphraser
    requests: Sequence[ParaphraseRequest]
    counts: Sequence[int]
    encoder: object
    filters: FilterConfig
    candidates_per_unit: int
    generations_per_unit: int
    seed: int
    first: Sequence[int] | None = None
    on_round: Callable[[int, int], None] | None = None


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
    return select_together([SelectionTask(paraphraser, requests, counts, encoder, filters, candidates_per_unit,
                                          generations_per_unit, seed, first, on_round)])[0]


def select_together(tasks: Sequence[SelectionTask]) -> list[Selection]:
    """Several selections (one per run stepping together), the rows of those that can share a stream decoded as one.

    Why: a selection decodes with a tail of few rows in flight (its longest rows and last retries), where a
    decoding step costs most of a full batch's. Tasks whose paraphrasers are one model with one cache, asked
    with one seed, share a stream: every task's retries join the same running batch, so there is one tail
    instead of one per task. Each task is judged, retried and tallied as alone (a row two tasks ask is
    generated once and counted as a cache hit for the later asker, as a sequential run would find it cached);
    only which batch computes a row changes, which with int8 layers changes its sample (see int8_linear.py).
    Each task's ``seconds`` is its share of the shared stream: its own judging plus the rest split by the
    tokens generated for it.
    """
    for task in tasks:
        if len(task.requests) != len(task.counts):
            raise ValueError(f"{len(task.requests)} requests but {len(task.counts)} counts")
    results = [Selection(candidates=[]) for _ in tasks]
    # tasks with units to fill; the others never ask their paraphraser (a lazy one stays unloaded)
    live = [i for i, task in enumerate(tasks) if any(int(c) > 0 for c in task.counts)]
    units = {i: _Units(tasks[i]) for i in live}
    for group in _stream_groups(tasks, live):
        if len(group) == 1 or not hasattr(tasks[group[0]].paraphraser, "paraphrase_stream"):
            for i in group:
                _select_alone(tasks[i], units[i], results[i])
        else:
            _select_in_one_stream([tasks[i] for i in group], [units[i] for i in group], [results[i] for i in group])
    for i in live:
        result, done = results[i], units[i]
        result.candidates = [cand for judged in done.judged for cand in judged]
        result.filter_seconds = done.judge_seconds
        result.rounds = max(done.times_asked, default=0)
        result.requested_rows = done.requested
    return results


def _stream_groups(tasks: Sequence[SelectionTask], live: list[int]) -> list[list[int]]:
    """Live tasks grouped by what one stream needs in common: the model (its name and cache) and the seed."""
    groups: dict[tuple, list[int]] = {}
    for i in live:
        para = tasks[i].paraphraser
        groups.setdefault((para.name, id(getattr(para, "cache", None)), int(tasks[i].seed)), []).append(i)
    return list(groups.values())


def _select_alone(task: SelectionTask, units: _Units, result: Selection) -> None:
    started = time.perf_counter()
    stream = getattr(task.paraphraser, "paraphrase_stream", None)
    while True:
        got = stream(units, task.seed) if stream is not None else _in_rounds(task.paraphraser, units, task.seed)
        _add(result, got)
        if not units.more_to_judge():
            break
    result.seconds = time.perf_counter() - started  # judging between rounds included


def _select_in_one_stream(tasks: list[SelectionTask], units: list[_Units], results: list[Selection]) -> None:
    feed = _Together(units)
    started = time.perf_counter()
    while True:
        tasks[0].paraphraser.paraphrase_stream(feed, tasks[0].seed)  # tallied per task by the feed
        if not any(u.more_to_judge() for u in units):
            break
    wall = time.perf_counter() - started
    judging = sum(u.judge_seconds for u in units)
    tokens = sum(feed.tokens)
    for n, (u, result) in enumerate(zip(units, results)):
        share = feed.tokens[n] / tokens if tokens else 1 / len(units)
        _add(result, ParaphraseResult(
            texts=[], failures=feed.failures[n], generations=feed.generations[n], tokens=feed.tokens[n],
            cache_hits=feed.generations[n] - feed.fresh[n]))
        result.seconds = u.judge_seconds + max(0.0, wall - judging) * share


def _add(result: Selection, got: ParaphraseResult) -> None:
    result.generations += got.generations
    result.tokens += got.tokens
    result.cache_hits += got.cache_hits
    result.failures += got.failures


class _Units:
    """The feed of one selection (paraphraser.RowFeed): per request, the rows asked and returned, and its
    latest judgement; ``more()`` judges the requests whose rows are all back and asks their retries."""

    def __init__(self, task: SelectionTask) -> None:
        self.requests, self.counts = task.requests, [int(c) for c in task.counts]
        self.starts = list(task.first) if task.first is not None else [0] * len(task.requests)
        self.encoder, self.filters, self.per_unit = task.encoder, task.filters, task.candidates_per_unit
        self.on_round = task.on_round
        self.caps = [c * task.generations_per_unit for c in self.counts]
        self.outputs: list[list[str | None]] = [[] for _ in self.requests]  # None: asked, not back yet
        self.pending = [0] * len(self.requests)
        self.ready = set(range(len(self.requests)))  # every row back, not judged since
        self.judged: list[list[Candidate]] = [[] for _ in self.requests]
        self.filled = [0] * len(self.requests)
        self.times_asked = [0] * len(self.requests)
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


class _Together:
    """One feed (paraphraser.RowFeed) over several selections' feeds: asks in feed order, each row handed to the
    feed that asked it, and per feed what it cost (``generated`` tells which asks the engine generated fresh)."""

    def __init__(self, feeds: list[_Units]) -> None:
        self.feeds = feeds
        self.generations, self.fresh, self.tokens = [0] * len(feeds), [0] * len(feeds), [0] * len(feeds)
        self.failures: list[list[tuple[str, str]]] = [[] for _ in feeds]

    def more(self) -> list[Ask]:
        return [Ask(ask.text, ask.index, (n, ask)) for n, feed in enumerate(self.feeds) for ask in feed.more()]

    def deliver(self, ask: Ask, text: str, failure: str | None) -> None:
        n, inner = ask.tag
        if failure is None:
            self.generations[n] += 1
        else:
            self.failures[n].append((inner.text, failure))
        self.feeds[n].deliver(inner, text, failure)

    def generated(self, ask: Ask, tokens: int) -> None:
        n, _ = ask.tag
        self.fresh[n] += 1
        self.tokens[n] += tokens


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
