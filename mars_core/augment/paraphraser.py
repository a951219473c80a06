"""The Paraphraser protocol, its settings, its result, and the per-row machinery every paraphraser shares.

A paraphraser produces *rows*: the k-th generation of a text under an instruction. Row k of a text
depends only on (paraphraser name, instruction, run seed, text, k), never on which strategy, epoch
or batch asked for it, and each row is cached under exactly that key (``row_key``). So the strategies
of a comparison that pick the same response share its generations, a rerun regenerates nothing, and
a Step that wants more candidates of a text asks for the next indices (``first``).

Concrete paraphrasers: ``LMParaphraser`` (in-process transformers, lm_paraphraser.py),
``OpenAIParaphraser`` (any OpenAI-compatible chat-completions server, openai_paraphraser.py) and
``PlainParaphraser`` (wraps a simple ``paraphrase(texts, n, seed) -> list[list[str]]`` object such as
the toy suite's vector perturber).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mars_core.augment.extraction import extract_paraphrase
from mars_core.model.encoders import DEFAULT_PARAPHRASER

logger = logging.getLogger(__name__)

PARAPHRASE_INSTRUCTION = (
    "Paraphrase the text below. Keep its meaning, its stance and every fact; change the wording. "
    "Reply with the paraphrase only."
)
# Prompt v2 (issue 11): stance/fact-keeping system prompt plus three worked examples in the chat
# template. The examples are written for this prompt (not taken from the demo suite or HH-RLHF) and
# cover a refusal, a rude answer and a factual answer, the three things small models most often lose.
SYSTEM_PROMPT = (
    "You paraphrase text. Keep its meaning, its stance and every fact: a refusal stays a refusal, "
    "an answer gives the same answer, a rude text stays rude and a polite one stays polite. "
    "Use different words. Reply with the paraphrase only."
)
_EXAMPLES = (
    ("I'm sorry, but I can't help you get into your neighbour's house. Breaking in is illegal.",
     "Sorry, I won't help you get into your neighbour's home: breaking in is against the law."),
    ("Ugh, obviously. Wood floats because it is less dense than water. Don't ask me again.",
     "Ugh, this is obvious. Wood is less dense than water, so it floats. Stop asking me."),
    ("Thanks for asking! Mix two cups of flour with one cup of water, knead for ten minutes, then let it rest.",
     "Thank you for the question! Combine two cups of flour and one cup of water, knead it for ten minutes, "
     "and then leave it to rest."),
)
DEFAULT_TEMPLATE: tuple[tuple[str, str], ...] = (
    ("system", SYSTEM_PROMPT),
    *(m for src, para in _EXAMPLES for m in (("user", "{instruction}\n\n" + src.replace("{", "{{").replace("}", "}}")),
                                             ("assistant", para))),
    ("user", "{instruction}\n\n{text}"),
)
# The template before issue 11, kept so its numbers can be reproduced (bench/paraphrase_quality.py).
PLAIN_TEMPLATE: tuple[tuple[str, str], ...] = (("system", "You rewrite text."), ("user", "{instruction}\n\n{text}"))
_ROLES = ("system", "user", "assistant")


OPENAI_PREFIX = "openai:"
# in-process engines: auto = CTranslate2 when installed and the model's architecture converts, else transformers
ENGINES = ("auto", "ct2", "transformers")
# the transformers engine's precision (lm_paraphraser.precision): auto = int8 on a CPU (int8 layers, int8_linear.py),
# bfloat16 on a GPU that computes it, else float32. bench/paraphrase_quality.py --dtype, one run each (round 7, q/k/v
# smoothed and int8 too): on 96 real HH units int8 kept 79 against float32's 71, on 2 x 100 demo units 154 against
# 165, side and polarity flip rates within noise, in 0.39 and 0.47 of float32's time; bfloat16 kept 21 of 32 against
# float32's 23 and was slower than int8
DTYPES = ("auto", "float32", "bfloat16", "int8")
API_KEY_ENVS = ("MARS_OPENAI_API_KEY", "OPENAI_API_KEY")


@dataclass(frozen=True)
class ParaphraseConfig:
    """Which paraphraser, how it samples and how hard a Step tries per budget unit.

    Everything that changes a row's output goes into the paraphraser's ``name`` (and so into the cache
    key); the selection knobs (``candidates_per_unit``, ``generations_per_unit``) and the limits do not.
    """

    model: str = field(default=DEFAULT_PARAPHRASER, metadata={
        "help": "paraphraser: packaged:smollm2, a local path (folder or .gguf), a hub id, or "
                "openai:BASE_URL#MODEL for any OpenAI-compatible chat-completions server (key from "
                "MARS_OPENAI_API_KEY or OPENAI_API_KEY)",
        "flag": "--paraphraser", "form": True})
    # default transformers until bench/paraphrase.py and bench/paraphrase_quality.py show ct2 faster and no worse
    engine: str = field(default="transformers", metadata={
        "help": "in-process engine for a local model: ct2 (CTranslate2, int8 on CPU, converted once into a cache "
                "in the virtualenv), transformers, or auto (ct2 when installed and the model converts); "
                "ignored for openai:",
        "flag": "--paraphrase-engine", "choices": ENGINES, "form": True})
    dtype: str = field(default="auto", metadata={
        "help": "precision of the transformers engine: auto (int8 on a CPU, bfloat16 on a CUDA GPU, float32 "
                "elsewhere), float32, bfloat16, or int8 (CPU only: int8 weights and per-token int8 activations, "
                "exact int32 sums, attention inputs smoothed first); part of the paraphraser's name",
        "flag": "--paraphrase-dtype", "choices": DTYPES})
    candidates_per_unit: int = field(default=2, metadata={
        "help": "candidates generated per budget unit in the first round; the best that passes the filters is kept",
        "flag": "--candidates-per-unit"})
    generations_per_unit: int = field(default=6, metadata={
        "help": "cap on LM generations per budget unit, retries for units left empty included",
        "flag": "--generations-per-unit"})
    device: str | None = field(default=None, metadata={"help": "None: cuda, then mps, then cpu"})
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature; 0 means greedy"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling mass"})
    top_k: int = field(default=256, metadata={"help": "sample within the k most likely tokens (fast); 0: all"})
    batch_size: int = field(default=16, metadata={"help": "rows decoded together by the in-process model"})
    max_new_tokens_factor: float = field(default=1.5, metadata={"help": "row token budget = factor x source tokens"})
    min_new_tokens: int = field(default=24, metadata={"help": "floor of a row's token budget"})
    max_new_tokens: int = field(default=256, metadata={"help": "ceiling of a row's token budget"})
    prompt_template: tuple[tuple[str, str], ...] = field(default=DEFAULT_TEMPLATE, metadata={
        "help": "(role, content) chat messages with {instruction} and {text}; few-shot examples allowed"})
    instruction: str = field(default=PARAPHRASE_INSTRUCTION, metadata={"help": "the paraphrase instruction"})
    seconds_per_token: float = field(default=0.5, metadata={
        "help": "time limit per token of work (in-process: a batch may take this x its rows' token budgets; "
                "remote: one request this x its max_tokens, at least 10 s, within the Step's --remote-deadline). "
                "Finished rows are always kept."})
    num_threads: int | None = field(default=None, metadata={"help": "torch intra-op threads; None: torch's choice"})
    concurrency: int = field(default=8, metadata={
        "help": "requests in flight at once to an OpenAI-compatible server (a retry is sent as soon as it is asked)",
        "flag": "--paraphrase-concurrency"})
    max_retries: int = field(default=3, metadata={"help": "retries (with backoff) of a failed server request"})

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("model must name a packaged alias, a local path, a hub id or openai:BASE_URL#MODEL")
        if self.is_openai:
            openai_target(self.model)  # raises with a clear message
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.candidates_per_unit < 1:
            raise ValueError(f"candidates_per_unit must be at least 1, got {self.candidates_per_unit}")
        if self.generations_per_unit < self.candidates_per_unit:
            raise ValueError(f"generations_per_unit ({self.generations_per_unit}) must be at least "
                             f"candidates_per_unit ({self.candidates_per_unit})")
        if not 0.0 <= self.temperature <= 5.0:
            raise ValueError(f"temperature must be in [0, 5] (0 = greedy), got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be 0 (whole vocabulary) or positive, got {self.top_k}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_new_tokens_factor <= 0:
            raise ValueError(f"max_new_tokens_factor must be positive, got {self.max_new_tokens_factor}")
        if self.min_new_tokens < 1:
            raise ValueError(f"min_new_tokens must be at least 1, got {self.min_new_tokens}")
        if self.max_new_tokens < self.min_new_tokens:
            raise ValueError(
                f"max_new_tokens ({self.max_new_tokens}) must be at least min_new_tokens ({self.min_new_tokens})"
            )
        if not self.seconds_per_token > 0:
            raise ValueError(f"seconds_per_token must be positive, got {self.seconds_per_token}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be at least 1 or None, got {self.num_threads}")
        if self.concurrency < 1 or self.max_retries < 0:
            raise ValueError(f"concurrency must be >= 1 and max_retries >= 0, got {self.concurrency}, {self.max_retries}")
        if not self.instruction.strip():
            raise ValueError("instruction must not be empty")
        check_template(self.prompt_template)

    @property
    def is_openai(self) -> bool:
        return self.model.startswith(OPENAI_PREFIX)

    def new_token_budget(self, source_tokens: int) -> int:
        """max_new_tokens for a source of this many tokens: scaled, then clamped."""
        scaled = int(round(self.max_new_tokens_factor * source_tokens))
        return max(self.min_new_tokens, min(self.max_new_tokens, scaled))

    def output_settings(self) -> dict:
        """Everything besides the model that decides a row's output (hashed into the paraphraser's name)."""
        return {"template": self.prompt_template, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k, "budget": (self.max_new_tokens_factor, self.min_new_tokens, self.max_new_tokens)}


def openai_target(spec: str) -> tuple[str, str]:
    """(base_url, model) from "openai:BASE_URL#MODEL"; errors say what the value should look like."""
    body = spec[len(OPENAI_PREFIX):]
    base_url, sep, model = body.partition("#")
    if not sep or not model.strip() or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"paraphraser {spec!r} should read openai:BASE_URL#MODEL, "
                         "e.g. openai:http://127.0.0.1:8000/v1#smollm2")
    return base_url.rstrip("/"), model.strip()


@dataclass
class ParaphraseResult:
    """What one ``paraphrase`` call produced.

    ``texts[i][j]`` is row ``first_i + j`` of text i after extraction; "" where the row failed or
    nothing usable was left. ``failures`` has one (text, why) per row that produced nothing because of
    an error or a time limit. ``generations`` counts rows produced (cache hits included, failures
    not); ``tokens`` and ``seconds`` count only work done in this call.
    """

    texts: list[list[str]]
    failures: list[tuple[str, str]] = field(default_factory=list)
    generations: int = 0
    tokens: int = 0
    seconds: float = 0.0
    cache_hits: int = 0


@runtime_checkable
class Paraphraser(Protocol):
    """Anything that turns texts into candidate paraphrases (in-process model, remote server, the toy)."""

    name: str  # identifies model + prompt + sampling settings: used in cache keys and provenance

    def paraphrase(
        self, texts: Sequence[str], n: int | Sequence[int], seed: int, *,
        first: int | Sequence[int] = 0, instruction: str | None = None,
    ) -> ParaphraseResult:
        """Rows first_i .. first_i + n_i - 1 of each text. ``instruction`` replaces the paraphrase
        instruction (contrast rewrites: "make this response vaguer ...")."""
        ...


class ParaphraseCache(Protocol):
    """Key-value store for generated outputs (the SQLite store implements it)."""

    def get(self, key: str) -> list[str] | None: ...

    def put(self, key: str, texts: list[str]) -> None: ...


def row_key(name: str, instruction: str, seed: int, text: str, index: int) -> str:
    """The generation cache key of row ``index`` of ``text``: everything that decides that row, nothing else."""
    payload = json.dumps([name, instruction, int(seed), text, int(index)], ensure_ascii=False)
    return "row:" + hashlib.sha256(payload.encode()).hexdigest()


def settings_digest(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=list).encode()).hexdigest()[:10]


def check_template(template: tuple[tuple[str, str], ...]) -> None:
    """A chat template of (role, content) messages with {instruction} and {text}; errors say what to fix."""
    if not template or not all(isinstance(m, tuple) and len(m) == 2 for m in template):
        raise ValueError("prompt_template must be a non-empty tuple of (role, content) pairs")
    for role, content in template:
        if role not in _ROLES:
            raise ValueError(f"prompt_template roles must be 'system', 'user' or 'assistant', got {role!r}")
        try:
            content.format(instruction="", text="")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(
                f"prompt_template message {content!r} may only use the fields {{instruction}} and {{text}}"
                f" (write literal braces as {{{{ }}}}): {err}"
            ) from None
    if "{text}" not in template[-1][1]:
        raise ValueError("prompt_template must end with a user message containing {text}")
    if template[-1][0] != "user":
        raise ValueError("prompt_template must end with a user message")


def common_prefix(a: Sequence[int], b: Sequence[int]) -> list[int]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return list(a[:n])


def chat_messages(template: tuple[tuple[str, str], ...], instruction: str, text: str) -> list[dict[str, str]]:
    return [{"role": role, "content": content.format(instruction=instruction, text=text)} for role, content in template]


@dataclass
class Row:
    """One generation to produce: row ``index`` of ``text``."""

    text: str
    index: int
    key: str
    raw: str | None = None  # the raw output once produced
    error: str | None = None  # why it produced nothing
    tokens: int = 0


@dataclass(frozen=True)
class Ask:
    """A row a feed wants: row ``index`` of ``text``; ``tag`` is the feed's own, handed back with the row."""

    text: str
    index: int
    tag: object = None


class RowFeed(Protocol):
    """Rows asked while others are being generated (``RowParaphraser.paraphrase_stream``).

    ``more()`` is called whenever the engine has room: the rows wanted now ([] when none; the engine asks
    again after any row is delivered, and stops when nothing is in flight and nothing more is asked).
    ``deliver`` hands back every asked row exactly once: its text after extraction ("" if it failed) and,
    when it failed, why. A feed may also have ``generated(ask, tokens)``: called, before its delivery, for the
    ask a row was generated for (not for a cached row, nor for a second ask of a row already in flight)."""

    def more(self) -> list[Ask]: ...

    def deliver(self, ask: Ask, text: str, failure: str | None) -> None: ...


def _per_text(value: int | Sequence[int], count: int, what: str) -> list[int]:
    values = [int(value)] * count if isinstance(value, int) else [int(v) for v in value]
    if len(values) != count:
        raise ValueError(f"{what} has {len(values)} entries for {count} texts")
    if any(v < 0 for v in values):
        raise ValueError(f"{what} must be >= 0, got {values}")
    return values


class _Batch:
    """The feed of one ``paraphrase`` call: every row asked at once, the texts collected in call order."""

    def __init__(self, texts: Sequence[str], counts: list[int], starts: list[int]) -> None:
        self.asks = [Ask(text, start + j, (i, j)) for i, (text, count, start) in enumerate(zip(texts, counts, starts))
                     for j in range(count)]
        self.texts = [[""] * count for count in counts]

    def more(self) -> list[Ask]:
        asks, self.asks = self.asks, []
        return asks

    def deliver(self, ask: Ask, text: str, failure: str | None) -> None:  # noqa: ARG002 - reported by the stream
        i, j = ask.tag
        self.texts[i][j] = text


class RowParaphraser:
    """Shared machinery: expand a call into rows, serve cached rows, generate the rest, extract.

    Subclasses set ``name``, ``config`` (with ``instruction``) and implement ``_generate_rows``, which
    fills ``raw`` (and ``tokens``) or ``error`` of each row it is given and never raises for one bad row;
    an engine that can take rows while others decode implements ``_generate_stream`` instead.
    A loaded paraphraser is shared read-only between runs: each run works through ``for_run(its cache)``,
    and generation into the shared model is serialised by one lock.
    """

    name: str
    cache: ParaphraseCache | None = None

    def __init__(self, instruction: str, cache: ParaphraseCache | None) -> None:
        self.instruction = instruction
        self.cache = cache
        self._generating = threading.Lock()  # shared by every view of this model
        self._template_prefixes: dict[str, list[int]] = {}  # instruction -> template_prefix

    def prompt_ids(self, text: str, instruction: str) -> list[int]:
        """A local model's prompt tokens (subclasses with a ``tokenizer``): the chat template, or plain text
        for a base model."""
        messages = chat_messages(self.config.prompt_template, instruction, text)
        if self.tokenizer.chat_template is None:  # a base model: plain text prompt
            prompt = "\n\n".join(m["content"] for m in messages) + "\n\n"
        else:
            prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def template_prefix(self, instruction: str) -> list[int]:
        """The prompt tokens every text's prompt starts with under this instruction, whatever the text:
        the common tokens of two unlike texts' prompts, less the last (a text may merge with it)."""
        if instruction not in self._template_prefixes:
            common = common_prefix(self.prompt_ids("A", instruction), self.prompt_ids("Zebra 42?", instruction))
            self._template_prefixes[instruction] = common[: max(0, len(common) - 1)]
        return self._template_prefixes[instruction]

    def for_run(self, cache: ParaphraseCache | None) -> RowParaphraser:
        """A view with this loaded model and one run's own state: its cache, fresh per-run caches
        (``_start_run``). The shared object itself is never rewired."""
        view = copy.copy(self)
        view.cache = cache
        view._start_run()
        return view

    def _start_run(self) -> None:
        """Forget what belongs to the run this object was copied from (subclasses: caches made while generating)."""

    def paraphrase(
        self, texts: Sequence[str], n: int | Sequence[int], seed: int, *,
        first: int | Sequence[int] = 0, instruction: str | None = None,
    ) -> ParaphraseResult:
        batch = _Batch(texts, _per_text(n, len(texts), "n"), _per_text(first, len(texts), "first"))
        result = self.paraphrase_stream(batch, seed, instruction=instruction)
        result.texts = batch.texts
        return result

    def paraphrase_stream(self, feed: RowFeed, seed: int, *, instruction: str | None = None) -> ParaphraseResult:
        """Every row ``feed`` asks for, asked while others are in flight (see RowFeed); the result's tallies
        cover the whole stream and its ``texts`` stay empty (the feed received them).

        Why a stream: a caller that decides what to ask next from what came back (selection.py retries the
        units whose candidates all failed the filters) need not wait for the slowest row of a round; its
        retries join the running batch. Cached rows are delivered at once, a row asked twice is generated
        once, and a row the engine never returned is delivered as failed, so no caller waits for it."""
        instruction = self.instruction if instruction is None else instruction
        if not instruction.strip():
            raise ValueError("instruction must not be empty")
        started = time.perf_counter()
        result = ParaphraseResult(texts=[])
        asked: dict[str, list[Ask]] = {}  # key -> the asks waiting for that row
        credit = getattr(feed, "generated", None)

        def pull() -> list[Row]:
            while asks := feed.more():
                new = []
                for ask in asks:
                    key = row_key(self.name, instruction, seed, ask.text, ask.index)
                    if key in asked:
                        asked[key].append(ask)
                        continue
                    cached = self.cache.get(key) if self.cache is not None else None
                    if cached:
                        result.cache_hits += 1
                        result.generations += 1
                        feed.deliver(ask, extract_paraphrase(cached[0], ask.text), None)
                    else:
                        asked[key] = [ask]
                        new.append(Row(ask.text, ask.index, key))
                if new:
                    return new
            return []  # nothing asked, or only cached rows and then nothing

        def push(row: Row) -> None:
            failure = None
            if row.raw is not None:
                if self.cache is not None:
                    self.cache.put(row.key, [row.raw])
                result.generations += 1
                result.tokens += row.tokens
                text = extract_paraphrase(row.raw, row.text)
            else:
                failure, text = row.error or "no output", ""
                result.failures.append((row.text, failure))
                if len(result.failures) <= 3:
                    logger.warning("paraphrase row failed for %r: %s", row.text[:60], failure)
            waiting = asked.pop(row.key, [])
            if row.raw is not None and waiting and credit is not None:
                credit(waiting[0], row.tokens)
            for ask in waiting:
                feed.deliver(ask, text, failure)

        with self._generating:
            self._generate_stream(pull, push, instruction, seed)
        for key in list(asked):  # an engine that lost a row: the feed must not wait for it
            push(Row(asked[key][0].text, -1, key, error="the engine returned no output for this row"))
        result.seconds = time.perf_counter() - started
        return result

    def _generate_stream(self, pull: Callable[[], list[Row]], push: Callable[[Row], None], instruction: str,
                         seed: int) -> None:
        """Rows from ``pull`` until it has none, each handed to ``push`` when produced or failed. This default
        generates what one pull gave, then pulls again (rounds); a continuously batching engine overrides it."""
        while rows := pull():
            self._generate_rows(rows, instruction, seed)
            for row in rows:
                push(row)

    def _generate_rows(self, rows: list[Row], instruction: str, seed: int) -> None:
        raise NotImplementedError


class PlainParaphraser:
    """Adapts ``paraphrase(texts, n, seed) -> list[list[str]]`` (e.g. ``ToyParaphraser``) to the protocol.

    Row k of a text is element k of ``inner.paraphrase([text], k + 1, seed)``, which for the toy (a
    seeded draw per text) is the same whichever call asks. No extraction: the inner object returns
    finished texts. ``instruction`` is ignored: such a paraphraser has one way to rewrite.
    """

    def __init__(self, inner) -> None:  # anything with .name and .paraphrase
        self.inner = inner
        self.name = inner.name

    def paraphrase(
        self, texts: Sequence[str], n: int | Sequence[int], seed: int, *,
        first: int | Sequence[int] = 0, instruction: str | None = None,
    ) -> ParaphraseResult:
        counts = _per_text(n, len(texts), "n")
        starts = _per_text(first, len(texts), "first")
        started = time.perf_counter()
        out: list[list[str]] = [[] for _ in texts]
        failures: list[tuple[str, str]] = []
        by_end: dict[int, list[int]] = {}
        for i, (count, start) in enumerate(zip(counts, starts)):
            if count:
                by_end.setdefault(start + count, []).append(i)
        for end, idx in sorted(by_end.items()):
            try:
                got = self.inner.paraphrase([texts[i] for i in idx], end, seed)
            except Exception as err:  # noqa: BLE001 - one failing call costs only its own texts
                logger.warning("paraphraser %s failed on %d texts: %s", self.name, len(idx), err)
                failures += [(texts[i], f"{type(err).__name__}: {err}") for i in idx for _ in range(counts[i])]
                out_rows = {i: [""] * counts[i] for i in idx}
            else:
                out_rows = {i: (list(g) + [""] * end)[starts[i] : end] for i, g in zip(idx, got)}
            for i in idx:
                out[i] = out_rows[i]
        return ParaphraseResult(
            texts=out, failures=failures, generations=sum(counts) - len(failures),
            seconds=time.perf_counter() - started,
        )


__all__ = [
    "DEFAULT_PARAPHRASER",
    "DEFAULT_TEMPLATE",
    "PARAPHRASE_INSTRUCTION",
    "PLAIN_TEMPLATE",
    "ParaphraseCache",
    "ParaphraseResult",
    "Paraphraser",
    "Ask",
    "PlainParaphraser",
    "Row",
    "RowFeed",
    "RowParaphraser",
    "chat_messages",
    "check_template",
    "common_prefix",
    "row_key",
]
