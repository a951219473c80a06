"""The CTranslate2 paraphraser on the real packaged SmolLM2 (converted once, int8; loaded once per session).

What these prove: it paraphrases real text; the shared prompt prefix given to CTranslate2 as its cached
static prompt changes nothing (greedy rows equal decoding the whole prompt); each row stops at its own
token budget; the seeding guarantee of ct2_paraphraser.py holds (a freshly loaded engine replays the
same calls to the same rows; a cached row is what every later batch gets); a batch slowed down keeps
its rows while within the limit; and the engine choice resolves, names and fails as documented.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest

from mars_core.augment.ct2_convert import ConversionError, converted_dir, ensure_converted, is_converted
from mars_core.augment.ct2_paraphraser import CT2Paraphraser, ct2_name, local_name, resolve_engine
from mars_core.augment.lm_paraphraser import lm_name
from mars_core.augment.paraphraser import ParaphraseConfig, Paraphraser
from tests.dict_cache import DictCache

RESPONSES = [
    "I'm sorry, but I can't help with that request.",
    "The Great Wall of China is over 13,000 miles long and was built to protect Chinese states from invasions.",
    "To boil an egg, put it in cold water, bring it to a boil, and let it simmer for about nine minutes.",
    "No, dogs should not eat chocolate. It contains theobromine, which is toxic to them.",
]
SMALL = ParaphraseConfig(max_new_tokens=40, batch_size=4, engine="ct2")
ROOT = Path(__file__).resolve().parents[2]



class SlowCT2Paraphraser(CT2Paraphraser):
    """The real engine with a delay after every generated token: a machine under load."""

    delay_s = 0.0
    steps = 0

    def _after_step(self) -> None:
        self.steps += 1
        time.sleep(self.delay_s)


@pytest.fixture(scope="session")
def ct2_session() -> SlowCT2Paraphraser:
    return SlowCT2Paraphraser(SMALL)


@pytest.fixture
def paraphraser(ct2_session: SlowCT2Paraphraser):
    ct2_session.delay_s, ct2_session.cache = 0.0, None
    yield ct2_session
    ct2_session.config, ct2_session.delay_s, ct2_session.cache = SMALL, 0.0, None


@pytest.mark.slow
def test_real_paraphrases_are_nonempty_and_close_to_their_sources(paraphraser, text_encoder):
    assert isinstance(paraphraser, Paraphraser)
    got = paraphraser.paraphrase(RESPONSES, 2, seed=0)
    assert got.generations == 8 and not got.failures and got.tokens > 0
    flat = [(src, t) for src, outs in zip(RESPONSES, got.texts) for t in outs if t]
    assert len(flat) >= 6
    cosine = text_encoder.cosine([s for s, _ in flat], [t for _, t in flat])
    assert cosine.mean() > 0.6, [t for _, t in flat]


@pytest.mark.slow
def test_static_prompt_prefix_changes_nothing_greedy(paraphraser):
    """In float32 (int8's activation rounding depends on the batch's shapes), greedy rows through the cached
    static prefix equal greedy decoding of each whole prompt alone."""
    import ctranslate2

    static = paraphraser.static_prompt(paraphraser.instruction)
    assert len(static) > 100  # the system prompt and the few-shot examples
    int8 = paraphraser.generator
    paraphraser.generator = ctranslate2.Generator(str(paraphraser.path), compute_type="float32", intra_threads=2)
    paraphraser.config = dataclasses.replace(SMALL, temperature=0.0)
    try:
        ours = paraphraser.paraphrase(RESPONSES[:3], 1, seed=0)
        for text, (row,) in zip(RESPONSES[:3], ours.texts):
            full = paraphraser.tokenizer.convert_ids_to_tokens(paraphraser.prompt_ids(text, paraphraser.instruction))
            assert full[: len(static)] == static
            budget = SMALL.new_token_budget(len(paraphraser.tokenizer(text)["input_ids"]))
            (result,) = paraphraser.generator.generate_batch([full], max_length=budget, sampling_topk=1,
                                                             include_prompt_in_result=False,
                                                             end_token=paraphraser._end_tokens)
            reference = paraphraser.tokenizer.decode(result.sequences_ids[0], skip_special_tokens=True).strip()
            assert row and row in reference  # extraction may only have cut a preamble or an unfinished sentence
    finally:
        paraphraser.generator = int8


@pytest.mark.slow
def test_each_row_stops_at_its_own_token_budget(paraphraser):
    paraphraser.config = dataclasses.replace(SMALL, min_new_tokens=3, max_new_tokens_factor=0.2, max_new_tokens=40)
    texts = [RESPONSES[0], RESPONSES[1] * 4]  # budgets 3 (short source) and ~20 (long source)
    budgets = [paraphraser.config.new_token_budget(len(paraphraser.tokenizer(t)["input_ids"])) for t in texts]
    assert budgets[0] < budgets[1]
    rows = [dataclasses.replace(r) for r in _rows(paraphraser, texts)]
    paraphraser._generate_rows(rows, paraphraser.instruction, seed=0)
    assert all(r.raw is not None for r in rows)
    assert [r.tokens <= b for r, b in zip(rows, budgets)] == [True, True]
    assert rows[1].tokens > budgets[0]  # the long row was not cut at the short row's budget


@pytest.mark.slow
def test_a_mixed_length_batch_decodes_each_row_as_if_alone(paraphraser):
    """The decisive check of CTranslate2's batching (issue 16): greedy and float32, rows whose prompts differ in
    length decoded in one batch through our own call (static prefix, per-row budgets, the stop callback) give
    the same text as each row decoded alone. So batching is correct; in int8 rows drift apart because activation
    rounding depends on how the prompt went in (at once, or token by token beyond the shortest prompt)."""
    import ctranslate2

    int8 = paraphraser.generator
    paraphraser.generator = ctranslate2.Generator(str(paraphraser.path), compute_type="float32", intra_threads=2)
    paraphraser.config = dataclasses.replace(SMALL, temperature=0.0, batch_size=4)
    static = paraphraser.static_prompt(paraphraser.instruction)
    lengths = [len(paraphraser.prompt_ids(t, paraphraser.instruction)) - len(static) for t in RESPONSES]
    assert len(set(lengths)) >= 3  # prompts of three lengths (two texts share one)
    seen = []
    decode = paraphraser._decode
    paraphraser._decode = lambda prompts, *a: (seen.append(len(prompts)), decode(prompts, *a))[1]
    try:
        together = _rows(paraphraser, RESPONSES)
        paraphraser._decode([paraphraser.tokenizer.convert_ids_to_tokens(
            paraphraser.prompt_ids(t, paraphraser.instruction))[len(static):] for t in RESPONSES],
            [SMALL.new_token_budget(len(paraphraser.tokenizer(t, add_special_tokens=False)["input_ids"]))
             for t in RESPONSES], together, static)
        alone = []
        for text in RESPONSES:
            (row,) = _rows(paraphraser, [text])
            paraphraser._generate_rows([row], paraphraser.instruction, seed=0)
            alone.append(row)
    finally:
        paraphraser.generator = int8
        del paraphraser._decode
    assert seen == [4, 1, 1, 1, 1]
    assert all(r.raw for r in together)
    assert [r.raw for r in together] == [r.raw for r in alone]


@pytest.mark.slow
def test_rows_are_batched_by_the_length_plan(paraphraser, monkeypatch):
    """A call decodes the batches plan_batches gives for its rows' prompt lengths (length_batches.py)."""
    from mars_core.augment.ct2_paraphraser import STEP_ROWS
    from mars_core.augment.length_batches import plan_batches

    seen = []
    decode = paraphraser._decode
    monkeypatch.setattr(paraphraser, "_decode", lambda prompts, *a: (seen.append([len(p) for p in prompts]),
                                                                      decode(prompts, *a))[1])
    got = paraphraser.paraphrase(RESPONSES, 2, seed=4)
    assert not got.failures and sum(len(b) for b in seen) == 8
    static = len(paraphraser.static_prompt(paraphraser.instruction))
    lengths = [len(paraphraser.prompt_ids(t, paraphraser.instruction)) - static for t in RESPONSES for _ in (0, 1)]
    sources = [len(paraphraser.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in RESPONSES for _ in (0, 1)]
    expected = [min(SMALL.new_token_budget(s), s + 4) for s in sources]
    plan = plan_batches(lengths, expected, SMALL.batch_size, STEP_ROWS)
    assert sorted(seen) == sorted([lengths[i] for i in b] for b in plan)
    assert all(b == sorted(b) for b in seen)


@pytest.mark.slow
def test_a_fresh_engine_replays_the_same_calls_to_the_same_rows(paraphraser):
    """The guarantee that remains without per-row seeds: same calls from a fresh load, same rows."""
    calls = [(RESPONSES, 2, 3, 0), (RESPONSES[1:3], 1, 3, 2)]
    fresh = [CT2Paraphraser(SMALL) for _ in range(2)]
    outputs = [[p.paraphrase(texts, n, seed, first=first).texts for texts, n, seed, first in calls] for p in fresh]
    assert outputs[0] == outputs[1]
    assert outputs[0][0][1] != outputs[0][1][0]  # different rows asked, different text drawn
    assert fresh[0].name == fresh[1].name == paraphraser.name


class RecordingGenerator:
    """The real Generator, keeping every callback it is given: as CTranslate2's worker thread may, for a
    moment, after generate_batch has returned."""

    def __init__(self, generator) -> None:  # noqa: ANN001 - a ctranslate2.Generator
        self.generator, self.callbacks = generator, []

    def generate_batch(self, *args, callback=None, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        self.callbacks.append(callback)
        return self.generator.generate_batch(*args, callback=callback, **kwargs)


@pytest.mark.slow
def test_a_callback_still_held_by_the_engine_does_not_keep_the_paraphraser_alive():
    """Had it, the thread that drops the callback would destroy the Generator: a CTranslate2 worker thread
    joining itself, which aborts the process (CI's crash in round 7)."""
    engine = CT2Paraphraser(SMALL)
    engine.generator = recording = RecordingGenerator(engine.generator)
    assert not engine.paraphrase(RESPONSES[:1], 1, seed=0).failures
    held = recording.callbacks
    assert held and all(callable(c) for c in held)
    alive = weakref.ref(engine)
    del engine, recording
    assert alive() is None  # freed here, by its last user, although its callbacks live on
    del held


@pytest.mark.slow
def test_paraphrasers_dropped_right_after_their_last_call_never_abort_the_process():
    """The symptom itself, in a process of its own: before the fix, one of five such drops aborted it
    ("terminate called ... Resource deadlock avoided") more often than not."""
    script = (
        "from mars_core.augment.ct2_paraphraser import CT2Paraphraser\n"
        "from mars_core.augment.paraphraser import ParaphraseConfig\n"
        "config = ParaphraseConfig(max_new_tokens=40, batch_size=4, engine='ct2')\n"
        "for seed in range(5):\n"
        "    engine = CT2Paraphraser(config)\n"
        f"    assert not engine.paraphrase({RESPONSES[:1]!r}, 1, seed=seed).failures\n"
        "    del engine\n"
        "print('all dropped')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "all dropped" in done.stdout, done.stderr[-3000:]


@pytest.mark.slow
def test_cached_row_is_what_every_later_batch_gets(paraphraser):
    """Strategies share generations through the store: the row cached first is served to any composition."""
    paraphraser.cache = DictCache()
    first = paraphraser.paraphrase(RESPONSES, 2, seed=7)  # e.g. uniform's call
    other = paraphraser.paraphrase(RESPONSES[2:0:-1], 3, seed=7)  # e.g. MARS: other texts, order, count
    assert other.texts[0][:2] == first.texts[2] and other.texts[1][:2] == first.texts[1]
    assert other.cache_hits == 4 and other.tokens > 0  # row 2 of each was new work
    assert paraphraser.paraphrase(RESPONSES, 2, seed=8).cache_hits == 0  # another run seed, other rows


@pytest.mark.slow
def test_under_load_a_batch_gets_slower_never_emptier(paraphraser):
    fast = paraphraser.paraphrase(RESPONSES[:2], 1, seed=9)
    assert not fast.failures
    paraphraser.delay_s, paraphraser.steps = 0.02, 0  # per generated token of any row: several times its cost
    token_s = fast.seconds / max(fast.tokens, 1)  # this machine's own cost per token now (a busy CI machine's too)
    paraphraser.config = dataclasses.replace(SMALL, seconds_per_token=0.06 + 3 * token_s)
    slow = paraphraser.paraphrase(RESPONSES[:2], 1, seed=9)
    assert not slow.failures and all(t for (t,) in slow.texts)
    assert paraphraser.steps >= slow.tokens - 2  # the delay was paid per token (an end token may skip it)


def test_engine_choice_resolves_and_names(tmp_path):
    assert resolve_engine(ParaphraseConfig(engine="transformers")) == "transformers"
    assert resolve_engine(ParaphraseConfig(engine="ct2")) == "ct2"
    auto = ParaphraseConfig(engine="auto")
    assert resolve_engine(auto) == "ct2"  # the packaged llama converts
    assert local_name(auto) == ct2_name(auto) != lm_name(auto)
    assert local_name(ParaphraseConfig()) == lm_name(ParaphraseConfig())  # the default engine: transformers
    assert ct2_name(ParaphraseConfig()).startswith("ct2:packaged:smollm2|int8|")
    assert ct2_name(ParaphraseConfig()) != ct2_name(ParaphraseConfig(temperature=0.5))
    folder = tmp_path / "encoder-only"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert resolve_engine(ParaphraseConfig(model=str(folder), engine="auto")) == "transformers"  # not a CT2 LM
    with pytest.raises(ValueError, match="engine must be one of"):
        ParaphraseConfig(engine="onnx")


def test_conversion_is_cached_and_refuses_hub_ids():
    path = ensure_converted("packaged:smollm2")  # setup converted it; this must not convert again
    assert is_converted(path) and path == converted_dir("packaged:smollm2")
    assert converted_dir("packaged:smollm2", "int8") != converted_dir("packaged:smollm2", "float32")
    with pytest.raises(ConversionError, match="hub id"):
        converted_dir("someorg/some-model")


def _rows(paraphraser, texts):  # noqa: ANN001, ANN202
    from mars_core.augment.paraphraser import Row, row_key

    return [Row(t, 0, row_key(paraphraser.name, paraphraser.instruction, 0, t, 0)) for t in texts]
