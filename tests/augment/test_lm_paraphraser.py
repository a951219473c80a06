"""The in-process paraphraser on the real packaged SmolLM2 model (loaded once per session).

What these prove: our decoding loop writes what transformers' own generate writes (greedy); row k of
a text is the same whichever batch computes it; the cache serves rows; and no LM work is thrown away:
a paraphraser slowed down on purpose returns the same rows (limits scale with the work), and a batch
stopped by its limit keeps every row it finished.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from mars_core.augment.filters import FilterConfig, ParaphraseRequest
from mars_core.augment.int8_linear import Int8Linear, int8_matmul_works
from mars_core.augment.lm_paraphraser import LMParaphraser, lm_name, precision
from mars_core.augment.paraphraser import ParaphraseConfig, Paraphraser
from mars_core.augment.selection import SelectionTask, select_paraphrases, select_together
from mars_core.augment.serve_openai import lm_backend
from tests.dict_cache import DictCache

pytestmark = pytest.mark.slow

RESPONSES = [
    "I'm sorry, but I can't help with that request.",
    "The Great Wall of China is over 13,000 miles long and was built to protect Chinese states from invasions.",
    "To boil an egg, put it in cold water, bring it to a boil, and let it simmer for about nine minutes.",
    "No, dogs should not eat chocolate. It contains theobromine, which is toxic to them.",
]
SMALL = ParaphraseConfig(max_new_tokens=40, batch_size=4, dtype="float32")  # the same numbers on every CPU



class SlowLMParaphraser(LMParaphraser):
    """The real paraphraser with a delay after every decoding step: a machine under load."""

    delay_s = 0.0
    steps = 0
    stall_s = 0.0  # one long pause right after the first row ends (a machine that stalls once)
    ended = 0

    def _after_step(self) -> None:
        self.steps += 1
        stall = self.stall_s if self.ended == 1 else 0.0
        if stall:
            self.stall_s = 0.0  # once
        time.sleep(self.delay_s + stall)

    def _text(self, tokens: list[int], ended: bool) -> str:
        self.ended += 1  # called once per row that ends (not for rows stopped at the limit)
        return super()._text(tokens, ended)


@pytest.fixture(scope="session")
def slow_paraphraser() -> SlowLMParaphraser:
    return SlowLMParaphraser(SMALL)


@pytest.fixture
def paraphraser(slow_paraphraser: SlowLMParaphraser):
    """The session's model with its settings restored after each test."""
    slow_paraphraser.delay_s, slow_paraphraser.cache, slow_paraphraser.stall_s = 0.0, None, 0.0
    yield slow_paraphraser
    slow_paraphraser.config, slow_paraphraser.delay_s, slow_paraphraser.cache = SMALL, 0.0, None
    slow_paraphraser.stall_s = 0.0


def test_real_paraphrases_are_nonempty_and_close_to_their_sources(paraphraser, text_encoder):
    assert isinstance(paraphraser, Paraphraser)
    got = paraphraser.paraphrase(RESPONSES, 2, seed=0)
    assert got.generations == 8 and not got.failures and got.tokens > 0
    flat = [(src, t) for src, outs in zip(RESPONSES, got.texts) for t in outs if t]
    assert len(flat) >= 6
    cosine = text_encoder.cosine([s for s, _ in flat], [t for _, t in flat])
    assert cosine.mean() > 0.6, [t for _, t in flat]


def test_cascade_attention_equals_attention_over_the_whole_sequence(paraphraser):
    """Rows prefilled in two groups, one step, a join, a row leaving, another step: each row's logits
    are what the model gives its whole token sequence in one plain (SDPA) pass."""
    prompts = [paraphraser.prompt_ids(t, paraphraser.instruction) for t in RESPONSES]
    prefix = paraphraser._shared_prefix(prompts)
    assert len(prefix.tokens) > 300  # the few-shot examples are shared, stored once
    seqs = [list(p) for p in prompts]
    with torch.inference_mode():
        cascade, logits, pos = paraphraser._prefill(prefix, prompts[:2], [8, 8])
        step = logits.argmax(-1)
        for i in range(2):
            seqs[i].append(int(step[i]))
        logits = paraphraser._forward(cascade, step[:, None], pos[:, None])
        pos = pos + 1
        late, late_logits, late_pos = paraphraser._prefill(prefix, prompts[2:], [8, 8])
        cascade.join(late)
        logits, pos = torch.cat([logits, late_logits]), torch.cat([pos, late_pos])
        keep = torch.tensor([0, 2, 3])  # row 1 finished
        cascade.keep(keep)
        step = logits[keep].argmax(-1)
        for j, i in enumerate((0, 2, 3)):
            seqs[i].append(int(step[j]))
        got = paraphraser._forward(cascade, step[:, None], pos[keep][:, None])
        for j, i in enumerate((0, 2, 3)):
            whole = paraphraser.model(torch.tensor([seqs[i]])).logits[0, -1]
            assert torch.allclose(got[j], whole, atol=2e-3), (i, (got[j] - whole).abs().max())
        assert cascade.length < max(len(p) for p in prompts)  # buffers hold the rows' own tokens, not the prefix


def test_a_finished_rows_slot_goes_to_the_last_row_in_place(paraphraser):
    """The decoder's bookkeeping: when a row finishes, only the last row moves (into its slot, in the same
    buffers), a row joining later still rebuilds them, and every row's logits stay those of its whole
    sequence in one plain pass."""
    from mars_core.augment.cascade_attention import compacting_order

    prompts = [paraphraser.prompt_ids(t, paraphraser.instruction) for t in RESPONSES]
    prefix = paraphraser._shared_prefix(prompts)
    seqs = [list(p) for p in prompts]
    with torch.inference_mode():
        cascade, logits, pos = paraphraser._prefill(prefix, prompts[:3], [8, 8, 8])
        rows = [0, 1, 2]
        step = logits.argmax(-1)
        for j, i in enumerate(rows):
            seqs[i].append(int(step[j]))
        logits = paraphraser._forward(cascade, step[:, None], pos[:, None])
        pos = pos + 1
        order = compacting_order([1, 2])  # row 0 finished: the last row takes its slot
        assert order == [2, 1]
        buffers = dict(cascade.keys)
        cascade.keep(torch.tensor(order))
        assert all(cascade.keys[layer] is buffer for layer, buffer in buffers.items())  # moved in place
        logits, pos, rows = logits[order], pos[order], [rows[j] for j in order]
        late, late_logits, late_pos = paraphraser._prefill(prefix, prompts[3:], [8])
        cascade.join(late)
        logits, pos, rows = torch.cat([logits, late_logits]), torch.cat([pos, late_pos]), rows + [3]
        step = logits.argmax(-1)
        for j, i in enumerate(rows):
            seqs[i].append(int(step[j]))
        got = paraphraser._forward(cascade, step[:, None], pos[:, None])
        for j, i in enumerate(rows):
            whole = paraphraser.model(torch.tensor([seqs[i]])).logits[0, -1]
            assert torch.allclose(got[j], whole, atol=2e-3), (i, (got[j] - whole).abs().max())


def test_the_lean_pass_gives_transformers_logits_and_other_architectures_keep_transformers(paraphraser):
    """lean_decoder.py against the same cascade step through transformers' own layers (float32)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from mars_core.augment.lean_decoder import LeanDecoder

    assert paraphraser._lean is not None  # SmolLM2 is a Llama
    prompts = sorted((paraphraser.prompt_ids(t, paraphraser.instruction) for t in RESPONSES), key=len)
    prefix = paraphraser._shared_prefix(prompts)
    got = {}
    lean = paraphraser._lean
    try:
        for name, path in (("lean", lean), ("transformers", None)):
            paraphraser._lean = path
            with torch.inference_mode():
                cascade, logits, pos = paraphraser._prefill(prefix, prompts, [8] * len(prompts))
                step = paraphraser._forward(cascade, logits.argmax(-1)[:, None], pos[:, None])
            got[name] = (logits, step)
    finally:
        paraphraser._lean = lean
    for ours, theirs in zip(got["lean"], got["transformers"]):
        assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    tiny = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    assert LeanDecoder.of(tiny) is None


def test_bfloat16_weights_paraphrase_as_well_and_name_another_paraphraser():
    config = dataclasses.replace(SMALL, dtype="bfloat16")
    bf16 = LMParaphraser(config)
    assert bf16.model.dtype == torch.bfloat16 and "|bf16" in bf16.name
    assert "bf16" not in lm_name(SMALL)
    got = bf16.paraphrase(RESPONSES, 1, seed=0)
    assert not got.failures and sum(1 for (t,) in got.texts if t) >= 3, got.texts


def test_auto_precision_is_int8_on_a_cpu_that_multiplies_int8_and_float32_where_nothing_faster_is_known():
    auto = dataclasses.replace(SMALL, dtype="auto")
    assert int8_matmul_works()  # the CPUs we test on do; elsewhere auto falls back to float32
    assert precision(dataclasses.replace(auto, device="cpu")) == "int8"
    assert precision(dataclasses.replace(auto, device="mps")) == "float32"
    assert precision(SMALL) == "float32" and precision(dataclasses.replace(SMALL, dtype="bfloat16")) == "bfloat16"
    assert lm_name(dataclasses.replace(auto, device="cpu")) == lm_name(dataclasses.replace(SMALL, dtype="int8"))


def test_int8_weights_paraphrase_as_well_name_another_paraphraser_and_repeat_the_same_calls_exactly(text_encoder):
    with pytest.raises(ValueError, match="CPU path"):  # refused before any loading
        LMParaphraser(dataclasses.replace(SMALL, dtype="int8", device="cuda"))
    int8 = LMParaphraser(dataclasses.replace(SMALL, dtype="int8"))
    assert "|int8s|" in int8.name and "int8" not in lm_name(SMALL)
    layers = [m for m in int8.model.modules() if isinstance(m, (torch.nn.Linear, Int8Linear))]
    assert len(layers) == 7 * 30 + 1 and all(isinstance(m, Int8Linear) for m in layers)  # q/k/v too: smoothed
    cache = DictCache()
    together = int8.for_run(cache).paraphrase(RESPONSES, 2, seed=5)
    assert not together.failures and sum(1 for outs in together.texts for t in outs if t) >= 6, together.texts
    # int8 rounding turns attention's last-bit differences between batch shapes into other samples, so row k
    # is not batch-independent here; what holds: the same calls give the same rows, and the store's cache
    # keeps row k of a text fixed once made
    assert int8.for_run(None).paraphrase(RESPONSES, 2, seed=5).texts == together.texts
    alone = int8.for_run(cache).paraphrase(RESPONSES[2:3], 1, seed=5, first=1)
    assert alone.texts[0] == together.texts[2][1:] and alone.tokens == 0 and alone.cache_hits == 1
    # a streamed selection (retries joining the running batch) replays exactly too
    requests = [ParaphraseRequest(f"p{i}", "chosen", text, RESPONSES[(i + 1) % 4]) for i, text in enumerate(RESPONSES)]
    strict = FilterConfig(min_similarity=0.95)
    streamed = [select_paraphrases(int8.for_run(None), requests, [1] * 4, text_encoder, strict, 2, 6, seed=5)
                for _ in range(2)]
    assert streamed[0].rounds >= 2, "the filters must force a retry"
    assert [(c.candidate_index, c.text, c.reasons) for c in streamed[0].candidates] == \
        [(c.candidate_index, c.text, c.reasons) for c in streamed[1].candidates]


def test_greedy_rows_equal_transformers_generate(paraphraser):
    paraphraser.config = dataclasses.replace(SMALL, temperature=0.0)
    ours = paraphraser.paraphrase(RESPONSES[:2], 1, seed=0)
    for text, (row,) in zip(RESPONSES[:2], ours.texts):
        ids = paraphraser.prompt_ids(text, paraphraser.instruction)
        budget = SMALL.new_token_budget(len(paraphraser.tokenizer(text)["input_ids"]))
        with torch.inference_mode():
            out = paraphraser.model.generate(torch.tensor([ids]), max_new_tokens=budget, do_sample=False,
                                             eos_token_id=paraphraser._eos_ids, pad_token_id=paraphraser._pad_id)
        reference = paraphraser.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip()
        assert row and row in reference  # extraction may only have cut a preamble or an unfinished sentence


def test_row_k_is_the_same_whichever_batch_computes_it(paraphraser):
    together = paraphraser.paraphrase(RESPONSES, 3, seed=5)
    alone = paraphraser.paraphrase(RESPONSES[2:3], 2, seed=5, first=1)
    reordered = paraphraser.paraphrase(RESPONSES[::-1], 3, seed=5)
    assert alone.texts[0] == together.texts[2][1:]
    assert reordered.texts[::-1] == together.texts
    other_seed = paraphraser.paraphrase(RESPONSES, 3, seed=6)
    assert other_seed.texts != together.texts


def test_a_texts_rows_share_one_prefill_and_equal_the_rows_made_one_by_one(paraphraser, monkeypatch):
    real = paraphraser._prefill_padded
    prefilled = []

    def spy(prefix, prompts, budgets):
        prefilled.extend(prompts)
        return real(prefix, prompts, budgets)

    monkeypatch.setattr(paraphraser, "_prefill_padded", spy)
    together = paraphraser.paraphrase(RESPONSES[:3], 3, seed=4)  # 9 rows of 3 prompts, batches of 4
    assert len(prefilled) < 9 and len({tuple(p) for p in prefilled}) == 3, "copies are made, not recomputed"
    one_by_one = [[paraphraser.paraphrase([text], 1, seed=4, first=k).texts[0][0] for k in range(3)]
                  for text in RESPONSES[:3]]
    assert together.texts == one_by_one and all(all(row) for row in one_by_one)


def test_streamed_retries_join_the_running_batch_and_choose_what_rounds_choose(paraphraser, text_encoder,
                                                                             monkeypatch):
    """Float32 rows do not depend on their batch, so the streamed selection must equal one round at a time."""
    requests = [ParaphraseRequest(f"p{i}", "chosen", text, RESPONSES[(i + 1) % 4]) for i, text in enumerate(RESPONSES)]
    strict = FilterConfig(min_similarity=0.95)  # most candidates fail: several retries per unit

    class RoundsOnly:  # the same model seen through the plain protocol: one call per round
        name = paraphraser.name
        paraphrase = paraphraser.paraphrase

    decodes = []
    real = paraphraser._decode
    monkeypatch.setattr(paraphraser, "_decode", lambda work, *a, **k: (decodes.append(len(work.rows)),
                                                                       real(work, *a, **k))[1])
    rounds = select_paraphrases(RoundsOnly(), requests, [1] * 4, text_encoder, strict, 2, 6, seed=11)
    in_rounds, decodes[:] = list(decodes), []
    streamed = select_paraphrases(paraphraser, requests, [1] * 4, text_encoder, strict, 2, 6, seed=11)
    assert rounds.rounds >= 3 and len(in_rounds) == rounds.rounds, "the strict filters must force retries"
    assert len(decodes) == 1 and decodes[0] < streamed.requested_rows, "retries joined the one running decode"
    assert [(c.pair_id, c.candidate_index, c.text, c.reasons) for c in streamed.candidates] == \
        [(c.pair_id, c.candidate_index, c.text, c.reasons) for c in rounds.candidates]
    assert (streamed.generations, streamed.requested_rows) == (rounds.generations, rounds.requested_rows)


def test_selections_together_share_one_decode_and_each_chooses_what_it_chooses_alone(paraphraser, text_encoder,
                                                                                     monkeypatch):
    """Two runs' selections (refine.step_together) in one stream: float32 rows do not depend on their batch, so
    each must choose exactly what it chooses alone; a row both ask is generated once."""
    paraphraser.cache = None
    strict = FilterConfig(min_similarity=0.95)  # retries, streamed into the shared decode

    def task(texts: list[str]) -> SelectionTask:
        requests = [ParaphraseRequest(f"p{i}", "chosen", t, RESPONSES[3]) for i, t in enumerate(texts)]
        return SelectionTask(paraphraser, requests, [1] * len(texts), text_encoder, strict, 2, 4, seed=13)

    tasks = [task(RESPONSES[:2]), task(RESPONSES[1:3])]  # RESPONSES[1]'s rows are asked by both
    alone = [select_paraphrases(**{f.name: getattr(t, f.name) for f in dataclasses.fields(t)}) for t in tasks]
    decodes = []
    real = paraphraser._decode
    monkeypatch.setattr(paraphraser, "_decode", lambda work, *a, **k: (decodes.append(len(work.rows)),
                                                                       real(work, *a, **k))[1])
    together = select_together(tasks)
    assert len(decodes) == 1, "both selections decoded in one stream"
    assert all(s.rounds >= 2 for s in alone), "the strict filters must force retries"
    for one, both in zip(alone, together):
        assert [(c.pair_id, c.candidate_index, c.text, c.reasons) for c in both.candidates] == \
            [(c.pair_id, c.candidate_index, c.text, c.reasons) for c in one.candidates]
        assert (both.generations, both.requested_rows, both.rounds) == (one.generations, one.requested_rows, one.rounds)
        assert both.seconds > 0
    assert together[0].cache_hits + together[1].cache_hits >= 2 and alone[0].cache_hits == alone[1].cache_hits == 0
    assert together[0].tokens + together[1].tokens < alone[0].tokens + alone[1].tokens


def test_cached_rows_cost_no_tokens(paraphraser):
    paraphraser.cache = DictCache()
    first = paraphraser.paraphrase(RESPONSES[:2], 1, seed=7)
    again = paraphraser.paraphrase(RESPONSES[:2], 1, seed=7)
    assert again.texts == first.texts and again.tokens == 0 and again.cache_hits == 2
    more = paraphraser.paraphrase(RESPONSES[:2], 1, seed=7, first=1)  # the next rows are new work
    assert more.tokens > 0 and more.cache_hits == 0


def test_another_instruction_goes_through_the_same_machinery(paraphraser):
    got = paraphraser.paraphrase(RESPONSES[:1], 1, seed=0, instruction="Rewrite the text below more formally.")
    plain = paraphraser.paraphrase(RESPONSES[:1], 1, seed=0)
    assert got.generations == 1 and got.texts != plain.texts


def test_under_load_a_step_gets_slower_never_emptier(paraphraser):
    paraphraser.steps = 0
    fast = paraphraser.paraphrase(RESPONSES, 1, seed=9)
    step_s = fast.seconds / paraphraser.steps  # this machine's own step time now (a busy CI machine's too)
    paraphraser.delay_s, paraphraser.steps = 0.05 + 2 * step_s, 0  # a machine three times slower, and more
    # the limit per token of budget: above the slowed step, far below the default 0.5 s
    paraphraser.config = dataclasses.replace(SMALL, seconds_per_token=0.01 + paraphraser.delay_s + step_s)
    started = time.perf_counter()
    slow = paraphraser.paraphrase(RESPONSES, 1, seed=9)
    assert time.perf_counter() - started >= paraphraser.steps * paraphraser.delay_s > 0  # it really was slowed
    assert slow.texts == fast.texts and not slow.failures  # the limit scales with tokens: nothing is lost


def test_a_batch_past_its_limit_keeps_the_rows_it_finished(paraphraser):
    texts = ["Yes.", RESPONSES[1] + " " + RESPONSES[2]]  # one row ends in a few tokens, one needs many
    paraphraser.config = dataclasses.replace(SMALL, temperature=0.0, max_new_tokens=80)
    reference = paraphraser.paraphrase(texts, 1, seed=0)
    assert reference.texts[1][0] and not reference.failures
    # The limit: 5 s plus seconds_per_token x the rows' budgets, set to the whole reference call's time, so the
    # short row ends inside it however slow this machine is; then one stall right after the short row ends, longer
    # than the whole limit, puts the long row past it however fast the steps are.
    budgets = sum(paraphraser.config.new_token_budget(len(paraphraser.tokenizer(t, add_special_tokens=False)
                                                          ["input_ids"])) for t in texts)
    paraphraser.config = dataclasses.replace(paraphraser.config, seconds_per_token=reference.seconds / budgets)
    paraphraser.stall_s, paraphraser.ended = 5.0 + reference.seconds + 3.0, 0
    cut = paraphraser.paraphrase(texts, 1, seed=0)
    assert cut.texts[0] == reference.texts[0], "the short row finished before the limit and is kept"
    assert cut.texts[1] == [""] and len(cut.failures) == 1
    assert cut.failures[0][0] == texts[1] and "time limit" in cut.failures[0][1]


def test_a_failing_pass_loses_only_the_rows_in_flight(paraphraser, monkeypatch):
    paraphraser.config = dataclasses.replace(SMALL, batch_size=2)
    real_prefill = paraphraser._prefill
    calls = []

    def prefill(prefix, prompts, budgets):
        calls.append(len(prompts))
        if len(calls) == 1:
            raise RuntimeError("simulated out of memory")
        return real_prefill(prefix, prompts, budgets)

    monkeypatch.setattr(paraphraser, "_prefill", prefill)
    got = paraphraser.paraphrase(RESPONSES, 1, seed=3)
    assert calls == [2, 2]
    assert sum(1 for outs in got.texts if outs == [""]) >= 2 and len(got.failures) == 2
    assert all("simulated out of memory" in why for _, why in got.failures)
    assert got.generations == 2


def test_the_local_server_answers_with_the_packaged_model(paraphraser):
    answer = lm_backend(paraphraser)({
        "messages": [{"role": "user", "content": "Paraphrase: The sky is blue because air scatters blue light."}],
        "max_tokens": 30, "seed": 1,
    })
    text, tokens = answer
    assert isinstance(text, str) and text.strip() and 0 < tokens <= 30


def test_the_local_server_decodes_concurrent_requests_in_one_batch(paraphraser, monkeypatch):
    """serve_openai + the OpenAI client, both real, over HTTP: 8 requests in flight (4 texts x 2) are decoded
    together (a request joins the running batch), and every one is answered with its own paraphrase."""
    from mars_core.augment.openai_paraphraser import OpenAIParaphraser
    from mars_core.augment.serve_openai import serving

    prefilled: list[int] = []
    real_prefill = paraphraser._prefill

    def prefill(prefix, prompts, budgets):
        prefilled.append(len(prompts))
        return real_prefill(prefix, prompts, budgets)

    monkeypatch.setattr(paraphraser, "_prefill", prefill)
    with serving(lm_backend(paraphraser)) as url:
        client = OpenAIParaphraser(ParaphraseConfig(model=f"openai:{url}#local", concurrency=8, max_new_tokens=40))
        got = client.paraphrase(RESPONSES, 2, seed=0)
    assert not got.failures and all(text.strip() for outs in got.texts for text in outs)
    assert 8 <= got.tokens <= 8 * 40, "usage counts the model's tokens"
    assert sum(prefilled) == 8 and max(prefilled) > 1, f"rows were prefilled in passes of {prefilled}"
