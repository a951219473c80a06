"""The in-process paraphraser: a local causal LM (default: packaged SmolLM2-135M-Instruct) on transformers.

Why a decoding loop of our own instead of ``model.generate`` (profiled on real HH-RLHF responses,
bench/paraphrase.py): generate keeps every row of a batch in the forward pass until the longest row
ends, so on real text with its long tail most steps computed finished rows; it cannot keep the rows
that finished when a batch is stopped; and its sampler draws from one random stream for the whole
batch, so a row's text depended on its batch-mates. Here finished rows leave at once and waiting
rows take their places (continuous batching), a pass stopped by its time limit keeps every row it
finished, each row samples from its own seeded stream (in float32, row k of a text is the same
whichever batch computes it; with int8 layers, see int8_linear.py), and the prompt prefix that all
rows share (system prompt and few-shot examples) is computed once and stored once: attention reads
it beside each row's own keys (cascade_attention.py) instead of every row carrying, and every step
copying, its own copy of it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mars_core.augment.cascade_attention import Cascade, PrefixKV, compacting_order, install
from mars_core.augment.derived_models import loadable
from mars_core.augment.extraction import trim_unfinished
from mars_core.augment.int8_linear import (
    FLOAT_LAYERS,
    int8_matmul_works,
    quantize_linears,
    smooth_attention_inputs,
)
from mars_core.augment.lean_decoder import LeanDecoder
from mars_core.augment.length_batches import padding_groups
from mars_core.augment.paraphraser import (
    ParaphraseCache,
    ParaphraseConfig,
    Row,
    RowParaphraser,
    common_prefix,
    settings_digest,
)
from mars_core.model.encoders import ModelNotFoundError, pick_device, resolve_model, split_gguf
from mars_core.model.precision import native_bfloat16

logger = logging.getLogger(__name__)

# The text whose prompt calibrates int8 smoothing (int8_linear.smooth_attention_inputs): written for it, fixed, so
# every load computes the same scales; a refusal, a fact and a rude line, like the prompt's own examples.
CALIBRATION_TEXT = ("No, I won't write that letter for you: it would mislead your landlord. The river is 410 km "
                    "long and freezes in January. Honestly? Read the manual before you ask me again.")


def lm_name(config: ParaphraseConfig) -> str:
    """The paraphraser's name (cache keys, provenance) from its config alone: no model needed.

    bfloat16 or int8 weights give other rows than float32, so they name another paraphraser (float32
    keeps the name it always had, and with it the rows already cached). ``|int8s``: int8 with smoothed
    q/k/v in int8 too (round 7); round 6's ``|int8`` kept them float, so its cached rows are not reused."""
    settings = config.output_settings() | {"instruction": config.instruction}
    tag = {"float32": "", "bfloat16": "|bf16", "int8": "|int8s"}[precision(config)]
    return f"lm:{config.model}|t={config.temperature}|p={config.top_p}{tag}|{settings_digest(settings)}"


def precision(config: ParaphraseConfig) -> str:
    """``config.dtype`` with auto resolved for the device the model will run on: bfloat16 on a GPU that
    computes it, int8 on a CPU whose torch multiplies int8 (int8_linear.py), float32 elsewhere.

    Why int8 on CPUs (bench/paraphrase_quality.py, 96 real HH units and 100 demo units, docs/results.md
    rounds 6 and 7): 2.1-2.5x faster than float32 on a Step's path; yield and flip rates within one run's
    noise of float32 (real HH: 79 of 96 kept against 71; demo: 154 of 200 against 165, the number to watch)."""
    if config.dtype != "auto":
        return config.dtype
    device = pick_device(config.device)
    if device.startswith("cuda") and native_bfloat16(device):
        return "bfloat16"
    return "int8" if device == "cpu" and int8_matmul_works() else "float32"


def weights_dtype(config: ParaphraseConfig) -> torch.dtype:
    """The dtype of the model's weights before any int8 layers replace its linear ones."""
    return torch.bfloat16 if precision(config) == "bfloat16" else torch.float32


class LMParaphraser(RowParaphraser):
    """Paraphrases with a local causal LM; see the module docstring for how it decodes."""

    def __init__(self, config: ParaphraseConfig | None = None, cache: ParaphraseCache | None = None) -> None:
        self.config = config or ParaphraseConfig()
        super().__init__(self.config.instruction, cache)
        self.device = pick_device(self.config.device)
        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)
        self.precision = precision(self.config)
        if self.precision == "int8" and self.device != "cpu":
            raise ValueError(f"int8 paraphrase weights are a CPU path; on {self.device} use "
                             "--paraphrase-dtype bfloat16 (or auto)")
        self.tokenizer, self.model = _load(self.config.model, self.device, weights_dtype(self.config))
        if self.precision == "int8":
            calibration = torch.tensor([self.prompt_ids(CALIBRATION_TEXT, self.config.instruction)], device=self.device)
            smoothed = smooth_attention_inputs(self.model, calibration)
            quantize_linears(self.model, keep=() if smoothed else FLOAT_LAYERS)
        self._lean = LeanDecoder.of(self.model)  # None: transformers' own forward (lean_decoder.py)
        self.name = lm_name(self.config)
        eos = {self.tokenizer.eos_token_id, *_as_list(self.model.generation_config.eos_token_id)}
        self._eos_ids = sorted(i for i in eos if i is not None)
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self._eos_ids[0]
        self._prefix: PrefixKV | None = None

    def _start_run(self) -> None:
        self._prefix = None  # a run's prefix cache is its own (whether a prefix is reused shapes its numerics)

    # -- generation ----------------------------------------------------------------------------
    def _generate_stream(self, pull: Callable[[], list[Row]], push: Callable[[Row], None], instruction: str,
                         seed: int) -> None:
        """Every row ``pull`` gives through one continuously batched decode: rows asked while others decode
        join the running batch (shortest prompts first), and each row goes to ``push`` as it ends."""
        anchor = self.template_prefix(instruction)
        tokens_of: dict[str, int] = {}
        prompt_of: dict[str, list[int]] = {}

        def decodable(rows: list[Row]) -> Work:
            for r in rows:
                if r.text not in prompt_of:
                    prompt_of[r.text] = self.prompt_ids(r.text, instruction)
                    tokens_of[r.text] = len(self.tokenizer(r.text, add_special_tokens=False)["input_ids"])
            return Work([prompt_of[r.text] for r in rows], [self.config.new_token_budget(tokens_of[r.text]) for r in rows],
                        [_row_seed(seed, r.key) for r in rows], rows)

        if rows := pull():
            self._decode(decodable(rows), anchor=anchor, more=lambda: decodable(pull()), finished=push)

    def _after_step(self) -> None:
        """Called after every decoding step (a seam for tests that slow the model down on purpose)."""

    def _shared_prefix(self, prompts: list[list[int]], anchor: list[int] | None = None) -> PrefixKV:
        """Keys and values of the token prefix every prompt shares, at most ``anchor`` (the template's
        part, ``template_prefix``), computed once per run (``for_run``) and per prefix.

        Cut at the template, not at whatever a batch's prompts happen to share, because where a row's
        prompt is split between the prefix pass and its own prefill shapes its numbers: by ~1e-5 in
        float32, and through int8 activation rounding by whole logits (a row alone, whose "shared"
        prefix ran into its own text, differed from the same row in a batch by 2.1)."""
        common = prompts[0] if anchor is None else anchor
        for p in prompts:
            common = common_prefix(common, p)
        common = common[: max(0, min(len(p) for p in prompts) - 1)]  # every row keeps >= 1 token of its own
        if len(common) < 16:
            return PrefixKV(())
        key = tuple(common)
        stored = self._prefix
        if stored is not None and stored.tokens == key:
            return stored  # only the very same prefix: a shorter one would split the prompts elsewhere
        prefix = PrefixKV(key)
        ids = torch.tensor([list(key)], device=self.device)
        with torch.inference_mode():
            if self._lean is not None:
                self._lean(ids, torch.arange(len(key), device=self.device)[None], Cascade(prefix, recording=True))
            else:
                self.model(input_ids=ids, use_cache=False, logits_to_keep=1, cascade=Cascade(prefix, recording=True))
        self._prefix = prefix
        return prefix

    def _forward(self, cascade: Cascade, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits of each row's last position after feeding it ``ids`` (left-padded) at ``positions``."""
        cascade.begin(ids.shape[1])
        ids, positions = ids.to(self.device), positions.to(self.device)
        if self._lean is not None:
            logits = self._lean(ids, positions, cascade)
        else:
            logits = self.model(input_ids=ids, position_ids=positions, attention_mask=cascade.mask, use_cache=False,
                                logits_to_keep=1, cascade=cascade).logits[:, -1, :]
        cascade.advance(ids.shape[1])
        return logits

    def _prefill(self, prefix: PrefixKV, prompts: list[list[int]],
                 budgets: list[int]) -> tuple[Cascade, torch.Tensor, torch.Tensor]:
        """Rows' own prompt tokens (after the prefix): (state, logits, next positions), rows in the given order.

        Each distinct prompt is computed once: a text's candidates (rows k, k+1, ... of it) share their prompt,
        and differ only from their first sampled token on, so their copies are made from one pass (on the
        demo's Steps, half of the prefill work). Distinct prompts of similar length share a left-padded pass
        (``padding_groups``); the passes are joined, then rows are put in the given order."""
        distinct: dict[tuple[tuple[int, ...], int], int] = {}
        which = [distinct.setdefault((tuple(p), b), len(distinct)) for p, b in zip(prompts, budgets)]
        unique = list(distinct)
        groups = padding_groups([len(p) - len(prefix.tokens) for p, _ in unique])
        state = logits = positions = None
        for group in groups:
            part, part_logits, part_pos = self._prefill_padded(prefix, [list(unique[i][0]) for i in group],
                                                               [unique[i][1] for i in group])
            if state is None:
                state, logits, positions = part, part_logits, part_pos
            else:
                state.join(part)
                logits, positions = torch.cat([logits, part_logits]), torch.cat([positions, part_pos])
        place = {u: slot for slot, u in enumerate(i for group in groups for i in group)}
        order = [place[u] for u in which]
        if order != list(range(len(unique))):
            index = torch.tensor(order)
            state.keep(index.to(self.device))
            logits, positions = logits[index.to(logits.device)], positions[index]
        return state, logits, positions

    def _prefill_padded(self, prefix: PrefixKV, prompts: list[list[int]],
                        budgets: list[int]) -> tuple[Cascade, torch.Tensor, torch.Tensor]:
        """Rows' own prompt tokens in one left-padded pass."""
        tails = [p[len(prefix.tokens):] for p in prompts]
        width = max(len(t) for t in tails)
        ids = torch.full((len(tails), width), self._pad_id, dtype=torch.long)
        starts = torch.tensor([width - len(t) for t in tails])
        for i, t in enumerate(tails):
            ids[i, width - len(t):] = torch.tensor(t)
        positions = len(prefix.tokens) + (torch.arange(width)[None, :] - starts[:, None]).clamp(min=0)
        cascade = Cascade(prefix, starts=starts.to(self.device), ends=(width + torch.tensor(budgets)).to(self.device))
        return cascade, self._forward(cascade, ids, positions), positions[:, -1] + 1

    def _decode(self, work: Work, anchor: list[int] | None = None, more: Callable[[], Work] | None = None,
                finished: Callable[[Row], None] | None = None) -> None:
        """Continuous batching: up to ``batch_size`` rows decode together, and when rows finish, waiting
        rows take their places (prefilled together, then joined), so long rows no longer decode alone
        at the end of every batch. ``more()`` (a stream) is asked for further rows whenever the batch has
        room; ``finished(row)`` hears of each row as it ends or fails. An error costs only the rows in
        flight; a time limit that grows with the token budgets of the rows admitted stops the rows in
        flight and keeps every finished row.
        """
        cfg = self.config
        prompts: list[list[int]] = []
        budgets: list[int] = []
        seeds: list[int] = []
        rows: list[Row] = []
        outputs: dict[int, list[int]] = {}
        gens: dict[int, torch.Generator] = {}
        waiting: list[int] = []  # longest first: pop() takes the shortest waiting prompt
        deferred: list[int] = []  # rows asked later whose prompt does not start with this decode's prefix
        prefix = self._shared_prefix(work.prompts, anchor)
        shared = list(prefix.tokens)

        def add(new: Work) -> None:
            first = len(prompts)
            prompts.extend(new.prompts)
            budgets.extend(new.budgets)
            seeds.extend(new.seeds)
            rows.extend(new.rows)
            for i in range(first, len(prompts)):
                gens[i], outputs[i] = torch.Generator().manual_seed(seeds[i]), []
                (waiting if prompts[i][:len(shared)] == shared else deferred).append(i)
            waiting.sort(key=lambda i: (-len(prompts[i]), -i))

        def end(i: int) -> None:
            if finished is not None:
                finished(rows[i])

        add(work)
        active: list[int] = []
        cascade = logits = next_pos = None
        deadline = time.perf_counter() + 5.0
        with torch.inference_mode():
            while True:
                free = cfg.batch_size - len(active)
                room = not active or free >= max(1, cfg.batch_size // 4)
                if more is not None and room and len(waiting) < free:
                    asking = time.perf_counter()
                    add(more())  # the caller's time (judging what came back) is not the rows' time
                    deadline += time.perf_counter() - asking
                if not waiting and not active:
                    break
                try:
                    if waiting and room:
                        new = sorted((waiting.pop() for _ in range(min(free, len(waiting)))),
                                     key=lambda i: len(prompts[i]))  # shortest first: see _prefill
                        admitted, active = active, active + new  # the new rows are in flight from here on
                        part, part_logits, part_pos = self._prefill(prefix, [prompts[i] for i in new],
                                                                    [budgets[i] for i in new])
                        deadline += cfg.seconds_per_token * sum(budgets[i] for i in new)
                        if admitted:
                            cascade.join(part)
                            logits, next_pos = torch.cat([logits, part_logits]), torch.cat([next_pos, part_pos])
                        else:
                            cascade, logits, next_pos = part, part_logits, part_pos
                    tokens = sample_tokens(logits, [gens[i] for i in active], cfg.temperature, cfg.top_p, cfg.top_k)
                    keep = []
                    for j, i in enumerate(active):
                        token = int(tokens[j])
                        outputs[i].append(token)
                        ended = token in self._eos_ids
                        if ended or len(outputs[i]) >= budgets[i]:
                            rows[i].raw = self._text(outputs[i], ended)
                            rows[i].tokens = len(outputs[i])
                            end(i)
                        else:
                            keep.append(j)
                    self._after_step()
                    if time.perf_counter() > deadline and keep:
                        self._stop([active[j] for j in keep], rows, outputs)
                        for j in keep:
                            end(active[j])
                        active, deadline = [], time.perf_counter() + 5.0
                        continue
                    if len(keep) < len(active):  # finished rows leave the batch and their buffers
                        keep = compacting_order(keep)
                        active = [active[j] for j in keep]
                        if not active:
                            continue
                        index = torch.tensor(keep)
                        cascade.keep(index.to(self.device))
                        next_pos, tokens = next_pos[index], tokens[index]
                    logits = self._forward(cascade, tokens[:, None], next_pos[:, None])
                    next_pos = next_pos + 1
                except Exception as err:  # noqa: BLE001 - one bad pass must not sink the other rows
                    logger.warning("paraphrase pass with %d rows in flight failed: %s: %s", len(active),
                                   type(err).__name__, err)
                    for i in active:
                        if rows[i].raw is None:
                            rows[i].error = f"{type(err).__name__}: {err}"
                            end(i)
                    active = []
        if deferred:  # (not seen: every prompt starts with the template's prefix) in a decode of their own
            self._decode(Work([prompts[i] for i in deferred], [budgets[i] for i in deferred],
                              [seeds[i] for i in deferred], [rows[i] for i in deferred]), anchor, more, finished)

    def _stop(self, stopped: list[int], rows: list[Row], outputs: dict[int, list[int]]) -> None:
        limit = self.config.seconds_per_token
        for i in stopped:
            rows[i].error = f"time limit reached ({limit} s per token of budget) after {len(outputs[i])} tokens"
        logger.warning("paraphrase rows stopped at their time limit: %d rows in flight lost", len(stopped))

    def _text(self, tokens: list[int], ended: bool) -> str:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return text if ended else trim_unfinished(text)


@dataclass
class Work:
    """Rows to decode with what decoding needs of each: prompt tokens, token budget, random seed."""

    prompts: list[list[int]]
    budgets: list[int]
    seeds: list[int]
    rows: list[Row]


def sample_tokens(logits: torch.Tensor, generators: list[torch.Generator], temperature: float, top_p: float,
                  top_k: int) -> torch.Tensor:
    """One token per row: temperature + top-p inside the top-k, one uniform draw from each row's own stream.

    generate's sampler sorts the whole 49k vocabulary every step (a quarter of decoding time for a
    135M model); here the sort touches k tokens, exact whenever the nucleus has at most k tokens.
    Temperature 0 is greedy.
    """
    if temperature == 0:
        return logits.argmax(-1).cpu()
    k = min(top_k or logits.shape[-1], logits.shape[-1])
    top, index = logits.float().topk(k, dim=-1)
    probs = torch.softmax(top / temperature, dim=-1)
    outside = probs.cumsum(-1) - probs >= top_p  # the first token is always inside
    probs = probs.masked_fill(outside, 0.0)
    cdf = probs.cumsum(-1)
    u = torch.cat([torch.rand(1, generator=g) for g in generators]).to(cdf.device) * cdf[:, -1]
    choice = torch.searchsorted(cdf, u[:, None]).clamp(max=k - 1)
    return index.gather(1, choice).squeeze(1).cpu()


def _row_seed(seed: int, key: str) -> int:
    """A row's random stream depends on the run seed and the row's key only (not on its batch)."""
    return int.from_bytes(hashlib.sha256(f"{int(seed)}|{key}".encode()).digest()[:8], "little") >> 1


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _load(spec: str, device: str, dtype: torch.dtype = torch.float32) -> tuple[AutoTokenizer, AutoModelForCausalLM]:
    """Tokenizer and model, once; errors name the model that could not be loaded."""
    resolved = resolve_model(spec)  # ModelNotFoundError for a path that does not exist
    try:
        resolved = loadable(spec)  # a GGUF file's dequantised copy, made on first use (derived_models.py)
        directory, gguf_file = split_gguf(resolved)
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file)
    except OSError as err:
        raise ModelNotFoundError(f"could not load paraphrase model {spec!r} from {resolved}: {err}") from err
    except Exception as err:  # noqa: BLE001 - transformers raises many types for a bad checkpoint
        raise ValueError(f"could not load paraphrase model {spec!r} from {resolved}: {err}") from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    model.to(device=device, dtype=dtype)
    install(model)
    return tokenizer, model
