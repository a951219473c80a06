"""Budget units to kept paraphrases: over-generation, the best passing candidate kept, retries, row indices.

Plumbing tests: a stub bag-of-words encoder and scripted paraphrasers (real implementations of the
protocol whose row k of a text is fixed in advance), so every count below is known exactly. The streamed
one runs the real stream machinery (RowParaphraser: cache, delivery) with an engine of one slot.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from mars_core.augment.filters import FilterConfig, ParaphraseRequest
from mars_core.augment.paraphraser import ParaphraseResult, RowParaphraser
from mars_core.augment.selection import NOT_SELECTED, select_paraphrases


class BagOfWordsEncoder:
    """Hashed word counts, L2-normalised: cosine = word overlap."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace(".", "").split():
                out[i, zlib.crc32(word.encode()) % 256] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


class ScriptedParaphraser:
    """Row k of a text is script[text][k] ("" past the end); ``fail`` rows produce nothing (a failure)."""

    name = "scripted"

    def __init__(self, script: dict[str, list[str]], fail: set[tuple[str, int]] = frozenset()) -> None:
        self.script, self.fail, self.calls = script, fail, []

    def paraphrase(self, texts, n, seed, *, first=0, instruction=None) -> ParaphraseResult:
        counts = [n] * len(texts) if isinstance(n, int) else list(n)
        starts = [first] * len(texts) if isinstance(first, int) else list(first)
        self.calls.append((list(texts), counts, starts))
        out, failures = [], []
        for text, count, start in zip(texts, counts, starts):
            rows = []
            for k in range(start, start + count):
                if (text, k) in self.fail:
                    failures.append((text, "time limit"))
                    rows.append("")
                else:
                    rows.append((self.script.get(text, []) + [""] * (k + 1))[k])
            out.append(rows)
        generations = sum(counts) - len(failures)
        return ParaphraseResult(texts=out, failures=failures, generations=generations, tokens=10 * generations)


SRC = "the cat sat on the warm mat in the kitchen all day long"
OTHER = "dogs run fast outside"
CLOSE = "the cat sat on the warm mat in the kitchen all day"  # passes, most similar
FAIR = "the cat sat on a warm mat in the kitchen the whole day"  # passes, less similar
OFF = "stocks fell sharply on monday"  # too dissimilar


def request(text: str = SRC, pair_id: str = "p1") -> ParaphraseRequest:
    return ParaphraseRequest(pair_id, "chosen", text, OTHER, "prompt")


def select(para, counts=(1,), candidates=2, cap=6, first=None, requests=None):
    return select_paraphrases(para, requests or [request()], list(counts), BagOfWordsEncoder(), FilterConfig(),
                              candidates, cap, seed=0, first=first)


def test_the_most_similar_passing_candidate_fills_the_unit_and_the_rest_are_marked():
    para = ScriptedParaphraser({SRC: [FAIR, SRC, CLOSE]})
    got = select(para, candidates=3)
    assert [c.text for c in got.kept] == [CLOSE]
    reasons = {c.text: c.reasons for c in got.candidates}
    assert reasons[FAIR] == [NOT_SELECTED] and "exact_copy" in reasons[SRC]
    assert (got.generations, got.rounds, got.tokens) == (3, 1, 30)
    assert [c.candidate_index for c in got.candidates] == [0, 1, 2]


def test_units_left_empty_get_more_rounds_until_the_cap():
    para = ScriptedParaphraser({SRC: [OFF, OFF, OFF, "", CLOSE]})
    got = select(para, candidates=2, cap=6)
    assert [c.text for c in got.kept] == [CLOSE] and got.kept[0].candidate_index == 4
    assert got.rounds == 3 and got.generations == 6  # rows 0-1, 2-3, 4-5: the unit filled in round 3
    assert [call[2] for call in para.calls] == [[0], [2], [4]]  # each round asks for the next rows
    capped = select(ScriptedParaphraser({SRC: [OFF, OFF, OFF, "", CLOSE]}), candidates=2, cap=4)
    assert capped.kept == [] and capped.generations == 4
    assert [c.candidate_index for c in capped.candidates] == [0, 1, 2, 3], "the cap stopped it at row 4"


def test_several_units_keep_several_distinct_candidates():
    para = ScriptedParaphraser({SRC: [CLOSE, OFF, FAIR, OFF]})
    got = select(para, counts=(2,), candidates=2, cap=4)
    assert sorted(c.text for c in got.kept) == sorted([CLOSE, FAIR])
    assert got.generations == 4


def test_rows_start_where_earlier_epochs_stopped():
    para = ScriptedParaphraser({SRC: [OFF] * 5 + [CLOSE, FAIR]})
    got = select(para, candidates=2, first=[5])
    assert para.calls[0][2] == [5]
    assert [c.candidate_index for c in got.candidates] == [5, 6]
    assert [c.text for c in got.kept] == [CLOSE]


def test_failed_rows_use_the_cap_are_reported_and_other_units_still_fill():
    other = "a small bird sang in the old tree near the river"
    para = ScriptedParaphraser({SRC: [CLOSE] * 4, other: ["a small bird sang in the old tree by the river"]},
                               fail={(SRC, k) for k in range(4)})
    got = select(para, candidates=2, cap=4, counts=(1, 1), requests=[request(), request(other, "p2")])
    assert len(got.failures) == 4 and sum(sum(call[1]) for call in para.calls) == 4 + 2
    assert [c.pair_id for c in got.kept] == ["p2"]


def test_nothing_asked_nothing_generated():
    para = ScriptedParaphraser({})
    got = select(para, counts=(0,))
    assert got.candidates == [] and got.generations == 0 and para.calls == []


def test_a_selection_with_nothing_to_fill_never_loads_a_lazy_paraphraser():
    from mars_core.augment.paraphraser import ParaphraseConfig
    from mars_core.run.components import LazyParaphraser

    lazy = LazyParaphraser(ParaphraseConfig())
    assert select(lazy, counts=(0,)).candidates == []
    assert not lazy.loaded


class StreamedScript(RowParaphraser):
    """The script's rows through RowParaphraser's stream, made one at a time in the order asked (an engine
    with one slot that takes rows while others wait); ``log`` says when each row was asked and made, and
    ``lose`` rows are taken but never handed back (an engine bug)."""

    name = "streamed-script"

    def __init__(self, script: dict[str, list[str]], cache=None, lose: set[tuple[str, int]] = frozenset()) -> None:
        super().__init__("Paraphrase.", cache)
        self.script, self.lose, self.log = script, lose, []

    def _generate_stream(self, pull, push, instruction, seed) -> None:
        queue = []
        while True:
            new = pull()
            self.log += [("asked", r.text, r.index) for r in new]
            queue += new
            if not queue:
                return
            row = queue.pop(0)
            if (row.text, row.index) in self.lose:
                continue
            row.raw, row.tokens = (self.script.get(row.text, []) + [""] * (row.index + 1))[row.index], 10
            push(row)
            self.log.append(("made", row.text, row.index))


BIRD = "a small bird sang in the old tree near the river"
TWO = {SRC: [OFF, OFF, OFF, CLOSE, FAIR], BIRD: ["a small bird sang in the old tree by the river", OFF]}


def summary(got):
    return ([(c.pair_id, c.candidate_index, c.text, c.reasons) for c in got.candidates],
            got.generations, got.requested_rows, len(got.failures))


def test_a_streaming_paraphraser_retries_a_unit_before_the_other_units_rows_are_back_and_keeps_the_same():
    requests = [request(), request(BIRD, "p2")]
    rounds = select(ScriptedParaphraser(TWO), candidates=2, cap=6, counts=(1, 1), requests=requests)
    streamed = StreamedScript(TWO)
    got = select(streamed, candidates=2, cap=6, counts=(1, 1), requests=requests)
    assert summary(got) == summary(rounds) and [c.text for c in got.kept] == [CLOSE, TWO[BIRD][0]]
    assert got.tokens == 10 * got.generations == 60
    log = streamed.log
    assert log.index(("asked", SRC, 2)) < log.index(("made", BIRD, 1)), "the retry did not wait for the round"


def test_a_streamed_selection_served_from_the_cache_makes_nothing_and_keeps_the_same():
    from tests.dict_cache import DictCache

    requests, cache = [request(), request(BIRD, "p2")], DictCache()
    first = select(StreamedScript(TWO, cache), candidates=2, cap=6, counts=(1, 1), requests=requests)
    again_engine = StreamedScript(TWO, cache)
    again = select(again_engine, candidates=2, cap=6, counts=(1, 1), requests=requests)
    assert summary(again) == summary(first) and again.cache_hits == again.generations == 6
    assert again.tokens == 0 and again_engine.log == []


def test_a_row_the_engine_never_returns_is_a_failure_and_its_unit_is_retried():
    streamed = StreamedScript({SRC: [CLOSE, OFF, CLOSE]}, lose={(SRC, 0)})
    got = select(streamed, candidates=1, cap=6)
    assert [c.candidate_index for c in got.kept] == [2]
    assert [why for _, why in got.failures] == ["the engine returned no output for this row"]
    assert got.requested_rows == 3 and got.generations == 2
