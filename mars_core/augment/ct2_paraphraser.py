"""The in-process paraphraser on CTranslate2: the same local causal LM, converted once, int8 on CPU.

Same row protocol as ``LMParaphraser`` (rows cached by paraphraser name, instruction, run seed, text
and k), a different name (``ct2:...``), so the two engines' rows never mix in a cache. Why a second
engine: on a small CPU the transformers loop spends most of its time outside the matrix products
(Python, per-step tensor bookkeeping); CTranslate2 decodes in C++ with int8 weights.

How a call decodes: the prompt prefix every row shares (system prompt and few-shot examples) goes
in as CTranslate2's cached ``static_prompt``; the rows' own prompt tails are grouped into batches by
``length_batches.plan_batches`` (length-sorted, at most ``batch_size`` rows, cut where a cost model of
decoding steps says a new batch is cheaper than feeding long prompts through the loop) and decoded with
``generate_batch``; a per-token callback stops each row at its own token budget (the factor x source
length of ``ParaphraseConfig``) and every row still running when the batch reaches its time limit, so
rows that finished are kept.

Prompts of different lengths in one batch are correct (issue 16): CTranslate2 forwards the prompts at
once up to the shortest and feeds the rest of each longer prompt through the decoding loop as forced
tokens. Greedy float32 rows decoded in a mixed batch equal the same rows decoded alone
(tests/augment/test_ct2_paraphraser.py). In int8 they differ (4 of 12 real HH rows identical, greedy),
because activation rounding depends on the shapes a token goes through (with the whole prompt or one
step at a time, the batch size); that is numerics, not a wrong context, and bench/paraphrase_quality.py
measures what it does to quality. (Round 1 restricted batches to equal lengths after 5 off-topic rows in
12 sampled draws in a mixed batch against 1 in 12 alone, p ~ 0.16; the greedy float32 check shows no
batching error.)

Seeding, and what it guarantees. CTranslate2 draws from one random stream per worker thread, seeded
once, when the thread first samples (``ctranslate2.set_random_seed`` only affects streams not yet
started), and its batch rows share that stream. So a row cannot have a stream of its own, and
reseeding per call would mean reloading the model (seconds). What holds instead:
  * the store's generation cache stays the source of truth: row k of a text, once generated, is what
    every strategy, epoch and rerun gets (strategies share generations through it);
  * without the cache, a freshly loaded paraphraser given the same sequence of calls produces the same
    rows (the stream is seeded from the config at load, see ``ENGINE_SEED``); the run seed changes
    the cache key, not the stream;
  * row k of a text does *not* reproduce when it is computed in a different batch or after other
    calls (the stream, and in int8 the rounding, depend on the batch). Two jobs sharing one loaded
    engine therefore agree only through the store's cache, unlike the transformers engine, whose
    rows are seeded one by one. tests/augment/test_ct2_paraphraser.py checks the first two.
"""

from __future__ import annotations

import json
import logging
import os
import time
import weakref

from mars_core.augment.ct2_convert import META, ConversionError, ensure_converted, source_of
from mars_core.augment.extraction import trim_unfinished
from mars_core.augment.length_batches import plan_batches
from mars_core.augment.paraphraser import (
    ParaphraseCache,
    ParaphraseConfig,
    Row,
    RowParaphraser,
    settings_digest,
)
from mars_core.model.encoders import DEFAULT_PARAPHRASER

logger = logging.getLogger(__name__)

ENGINE_SEED = 20260217  # the engine's random stream at load (see the module docstring)
# A decoding step's fixed cost in row-steps (length_batches.py). Measured on 2 cores, int8, the few-shot prompt
# (353 shared tokens): 16 ms a step alone, 169 ms at batch 16, so ~6 ms fixed and ~10 ms per row: each row's copy
# of the shared prefix's KV cache (re-copied every step) dominates, and batching saves little.
STEP_ROWS = 0.6
QUANTIZATION = "int8"  # of the converted weights; on CUDA they run as float16
# CTranslate2 converter names of the architectures "auto" sends to it (general.architecture in GGUF,
# model_type in config.json); others go to transformers.
_CT2_ARCHITECTURES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi", "phi3", "falcon",
                      "gpt2", "gpt_neox", "gptj", "mixtral", "olmo", "olmo2", "cohere", "starcoder2", "gpt_bigcode"}


def ct2_available() -> bool:
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True


def ct2_device(preferred: str | None) -> str:
    """cuda when CTranslate2 sees a GPU (or is told so), else cpu; mps is not a CTranslate2 device."""
    import ctranslate2

    if preferred:
        return "cuda" if preferred.startswith("cuda") else "cpu"
    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def compute_type(device: str) -> str:
    return "float16" if device == "cuda" else "int8"


def resolve_engine(config: ParaphraseConfig) -> str:
    """"ct2" or "transformers" for a local model ("auto": ct2 when installed and the architecture converts)."""
    if config.engine != "auto":
        return config.engine
    if not ct2_available():
        return "transformers"
    return "ct2" if _architecture(config.model) in _CT2_ARCHITECTURES else "transformers"


def _architecture(spec: str) -> str | None:
    """The model's architecture name read from its files (cheap: metadata only); None when unknown."""
    if spec == DEFAULT_PARAPHRASER:
        return "llama"
    try:
        source = source_of(spec)
        if source.is_dir():
            return json.loads((source / "config.json").read_text()).get("model_type")
        if source.suffix == ".gguf":
            from gguf import GGUFReader

            field = GGUFReader(str(source)).fields["general.architecture"]
            return bytes(field.parts[field.data[0]]).decode()
    except Exception:  # noqa: BLE001 - anything unreadable is left to transformers
        return None
    return None


def ct2_name(config: ParaphraseConfig) -> str:
    """The paraphraser's name from its config alone (no model loaded): engine and compute type included."""
    settings = config.output_settings() | {"instruction": config.instruction, "quantization": QUANTIZATION}
    ctype = compute_type(ct2_device(config.device)) if ct2_available() else "int8"
    return f"ct2:{config.model}|{ctype}|t={config.temperature}|p={config.top_p}|{settings_digest(settings)}"


class CT2Paraphraser(RowParaphraser):
    """Paraphrases with a local causal LM converted to CTranslate2; see the module docstring."""

    def __init__(self, config: ParaphraseConfig | None = None, cache: ParaphraseCache | None = None,
                 progress=None) -> None:  # noqa: ANN001 - progress: str -> None, for the one-time conversion
        import ctranslate2
        from transformers import AutoTokenizer

        self.config = config or ParaphraseConfig()
        super().__init__(self.config.instruction, cache)
        self.device = ct2_device(self.config.device)
        self.compute_type = compute_type(self.device)
        self.path = ensure_converted(self.config.model, QUANTIZATION, progress or logger.warning)
        meta = json.loads((self.path / META).read_text())
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self._eos_ids = [int(i) for i in meta["eos_ids"]]
        self._end_tokens = self.tokenizer.convert_ids_to_tokens(self._eos_ids)
        threads = self.config.num_threads or min(os.cpu_count() or 1, 8)
        ctranslate2.set_random_seed(ENGINE_SEED)
        try:
            self.generator = ctranslate2.Generator(str(self.path), device=self.device,
                                                   compute_type=self.compute_type, intra_threads=threads)
        except (RuntimeError, ValueError) as err:
            raise ConversionError(f"CTranslate2 could not load {self.path}: {err}") from err
        self.name = ct2_name(self.config)
        self._static: dict[str, list[str]] = {}  # instruction -> shared prompt prefix (tokens)
        self._sample([["Hi"]], [1])  # starts (and so seeds) the worker thread's stream now, deterministically

    # -- prompts -------------------------------------------------------------------------------
    def static_prompt(self, instruction: str) -> list[str]:
        """The tokens every prompt of this instruction starts with, whatever the text (cached by CTranslate2)."""
        if instruction not in self._static:
            self._static[instruction] = self.tokenizer.convert_ids_to_tokens(self.template_prefix(instruction))
        return self._static[instruction]

    # -- generation ----------------------------------------------------------------------------
    def _generate_rows(self, rows: list[Row], instruction: str, seed: int) -> None:  # noqa: ARG002 - see docstring
        static = self.static_prompt(instruction)
        tokens, plain = {}, []
        for r in rows:
            full = self.tokenizer.convert_ids_to_tokens(self.prompt_ids(r.text, instruction))
            if full[: len(static)] == static:
                tokens[r.key] = full[len(static):]
            else:  # rare: the text merged with the prefix's last token; this row gets its whole prompt
                tokens[r.key] = full
                plain.append(r.key)
        source_tokens = {r.text: len(self.tokenizer(r.text, add_special_tokens=False)["input_ids"]) for r in rows}
        for group, prefix in (([r for r in rows if r.key not in plain], static), ([r for r in rows if r.key in plain], [])):
            group = sorted(group, key=lambda r: r.key)  # the plan, and so the output, never depends on call order
            budgets = [self.config.new_token_budget(source_tokens[r.text]) for r in group]
            expected = [min(b, source_tokens[r.text] + 4) for r, b in zip(group, budgets)]  # a paraphrase ~ its source
            plan = plan_batches([len(tokens[r.key]) for r in group], expected, self.config.batch_size, STEP_ROWS)
            for batch in plan:
                try:
                    self._decode([tokens[group[i].key] for i in batch], [budgets[i] for i in batch],
                                 [group[i] for i in batch], prefix)
                except Exception as err:  # noqa: BLE001 - one bad batch must not sink the run
                    logger.warning("paraphrase batch of %d rows failed: %s: %s", len(batch), type(err).__name__, err)
                    for i in batch:
                        if group[i].raw is None:
                            group[i].error = f"{type(err).__name__}: {err}"

    def _after_step(self) -> None:
        """Called after every generated token (a seam for tests that slow the engine down on purpose)."""

    def _sample(self, prompts: list[list[str]], budgets: list[int], static: list[str] | None = None,
                callback=None):  # noqa: ANN001, ANN202 - list of GenerationResult
        cfg = self.config
        sampling = ({"sampling_topk": 1} if cfg.temperature == 0 else
                    {"sampling_topk": cfg.top_k or 0, "sampling_topp": cfg.top_p,
                     "sampling_temperature": cfg.temperature})
        return self.generator.generate_batch(
            prompts, max_length=max(budgets), include_prompt_in_result=False, end_token=self._end_tokens,
            return_end_token=True, static_prompt=static or None, cache_static_prompt=True, callback=callback,
            **sampling)

    def _decode(self, prompts: list[list[str]], budgets: list[int], rows: list[Row], static: list[str]) -> None:
        """One batch: ``prompts`` are what follows ``static``; every finished row is kept."""
        cfg = self.config
        started = time.perf_counter()
        limit = cfg.seconds_per_token * sum(budgets) + 5.0  # scales with the work asked, not per call
        counts = [0] * len(rows)
        stopped: set[int] = set()
        # The callback holds this paraphraser only weakly. CTranslate2 may drop its copy of the callback on its
        # worker thread after generate_batch has returned; had that copy held the last reference, the Generator
        # would be destroyed on its own worker thread, which then joins itself and aborts the whole process
        # (std::system_error "Resource deadlock avoided"). While callbacks run, this frame holds self.
        owner = weakref.ref(self)

        def step(result) -> bool:  # noqa: ANN001 - a GenerationStepResult; True stops that row
            b = result.batch_id
            counts[b] += 1
            if (me := owner()) is not None:
                me._after_step()
            if counts[b] >= budgets[b]:
                return True
            if time.perf_counter() - started > limit:
                stopped.add(b)
                return True
            return False

        results = self._sample(prompts, budgets, static, step)
        for b, (row, result) in enumerate(zip(rows, results)):
            ids = list(result.sequences_ids[0])[: budgets[b]]
            if b in stopped and not (ids and ids[-1] in self._eos_ids):
                row.error = (f"time limit {limit:.0f} s reached ({cfg.seconds_per_token} s per token of budget) "
                             f"after {len(ids)} tokens")
                continue
            ended = bool(ids) and ids[-1] in self._eos_ids
            row.tokens = len(ids)
            text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
            row.raw = text if ended else trim_unfinished(text)
        if stopped:
            logger.warning("paraphrase batch stopped at its time limit (%.0f s): %d of %d rows unfinished",
                           limit, len(stopped), len(rows))



def local_name(config: ParaphraseConfig) -> str:
    """The name of the in-process paraphraser this config loads (no model needed): ct2:... or lm:..."""
    from mars_core.augment.lm_paraphraser import lm_name

    return ct2_name(config) if resolve_engine(config) == "ct2" else lm_name(config)


def load_local(config: ParaphraseConfig, cache: ParaphraseCache | None = None) -> RowParaphraser:
    """The in-process paraphraser of this config's engine."""
    if resolve_engine(config) == "ct2":
        return CT2Paraphraser(config, cache)
    from mars_core.augment.lm_paraphraser import LMParaphraser

    return LMParaphraser(config, cache)
