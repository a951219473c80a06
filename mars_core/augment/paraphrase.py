"""Language-model paraphrases of responses, batched, seeded and cached.

Small instruct models wrap their answer in meta-text ("Here is the paraphrase:", an echoed
"Original text:", commentary after a blank line), so every raw output goes through
``extract_paraphrase`` before anyone sees it. Quality filters (similarity band, length
ratio, dedupe) live in ``paraphrase_filters``; this module only generates and extracts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mars_core.model.encoders import (
    DEFAULT_PARAPHRASER,
    ModelNotFoundError,
    pick_device,
    resolve_model,
    split_gguf,
)

logger = logging.getLogger(__name__)

PARAPHRASE_INSTRUCTION = (
    "Paraphrase the text below. Keep its meaning, change the wording. Reply with the paraphrase only."
)
# A short system prompt: every prompt token is paid for once per generated sequence.
DEFAULT_TEMPLATE: tuple[tuple[str, str], ...] = (
    ("system", "You rewrite text."),
    ("user", "{instruction}\n\n{text}"),
)
_ROLES = ("system", "user")


@runtime_checkable
class Paraphraser(Protocol):
    """Anything that turns texts into candidate paraphrases (in-process model, remote server, a stub)."""

    name: str  # identifies model + template + sampling settings: used in cache keys and provenance

    def paraphrase(self, texts: list[str], n: int, seed: int) -> list[list[str]]:
        """For each text, up to ``n`` candidate paraphrases (fewer when generation failed)."""
        ...


class ParaphraseCache(Protocol):
    """Key-value store for generated outputs (the SQLite store implements it)."""

    def get(self, key: str) -> list[str] | None: ...

    def put(self, key: str, texts: list[str]) -> None: ...


@dataclass(frozen=True)
class ParaphraseConfig:
    """How the paraphraser samples. Everything that changes outputs goes into ``LMParaphraser.name``."""

    model: str = DEFAULT_PARAPHRASER  # packaged alias, local path (dir or .gguf) or hub id
    device: str | None = None  # None: cuda, then mps, then cpu
    temperature: float = 0.8  # 0 means greedy decoding
    top_p: float = 0.95
    batch_size: int = 16  # source texts per generate call (n sequences each); 16 beat 8 by 1.25x in bench/paraphrase.py
    max_new_tokens_factor: float = 1.5  # a paraphrase is about as long as its source: budget = factor * source
    min_new_tokens: int = 24  # floor of the budget, so very short sources still have room for a sentence
    max_new_tokens: int = 256  # ceiling, so one long source cannot hold a whole batch hostage
    prompt_template: tuple[tuple[str, str], ...] = DEFAULT_TEMPLATE  # (role, content) with {instruction}, {text}
    instruction: str = PARAPHRASE_INSTRUCTION
    top_k: int = 256  # sample within the k most likely tokens (fast, exact when the nucleus fits); 0: all
    timeout_s: float | None = 300.0  # per generate call; a batch that runs over loses its outputs
    num_threads: int | None = None  # torch intra-op threads (process-wide); None leaves torch's choice

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("model must name a packaged alias, a local path or a hub id")
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
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive or None (no limit), got {self.timeout_s}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be at least 1 or None, got {self.num_threads}")
        if not self.instruction.strip():
            raise ValueError("instruction must not be empty")
        _check_template(self.prompt_template)

    def new_token_budget(self, source_tokens: int) -> int:
        """max_new_tokens for a source of this many tokens: scaled, then clamped."""
        scaled = int(round(self.max_new_tokens_factor * source_tokens))
        return max(self.min_new_tokens, min(self.max_new_tokens, scaled))


def _check_template(template: tuple[tuple[str, str], ...]) -> None:
    if not template or not all(isinstance(m, tuple) and len(m) == 2 for m in template):
        raise ValueError("prompt_template must be a non-empty tuple of (role, content) pairs")
    for role, content in template:
        if role not in _ROLES:
            raise ValueError(f"prompt_template roles must be 'system' or 'user', got {role!r}")
        try:
            content.format(instruction="", text="")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(
                f"prompt_template message {content!r} may only use the fields {{instruction}} and {{text}}"
                f" (write literal braces as {{{{ }}}}): {err}"
            ) from None
    if not any("{text}" in content for _, content in template):
        raise ValueError("prompt_template must contain {text} in one of its messages")
    if template[-1][0] != "user":
        raise ValueError("prompt_template must end with a user message")


# ---------------------------------------------------------------------------------------------
# Extraction: raw model output -> the paraphrase itself (pure functions)
# ---------------------------------------------------------------------------------------------

_KIND = r"(?:paraphras\w*|rephras\w*|rewrit\w*|rewritten|reword\w*|revis\w*|restat\w*|reformulat\w*)"
_NOUN = r"(?:text|version|sentence|response|answer|statement|passage|paragraph|output|one)"
# "Here is the paraphrased version of the text:" / "Here's my attempt:" (the line must end in a colon)
_HERE = re.compile(
    r"^(?:here\s*(?:is|'s|’s|are)|below\s+is|this\s+is)\b[^\n:]{0,100}?"
    r"(?:" + _KIND + r"|" + _NOUN + r"|attempt|it)\b[^\n:]{0,60}:[ \t]*(?:\n+|(?=\S)|$)",
    re.IGNORECASE,
)
# "Paraphrase:", "**Rewritten text:**", "The paraphrased sentence would be:", "Output:"
_LABEL = re.compile(
    r"^(?:the\s+|my\s+|a\s+|new\s+)?(?:" + _KIND + r"(?:\s+" + _NOUN + r")?|new\s+" + _NOUN
    + r"|alternative(?:\s+(?:phrasing|wording|" + _NOUN[3:-1] + r"))?|text|output|result)"
    r"(?:\s*\([^)\n]{0,40}\))?(?:\s+(?:is|would\s+be|could\s+be))?\s*:[ \t]*(?:\n+|(?=\S)|$)",
    re.IGNORECASE,
)
_ORIGINAL = re.compile(r"^(?:original|source|input)(?:\s+" + _NOUN + r")?\s*:", re.IGNORECASE)
_INTERJECTION = re.compile(
    r"^(sure(?:\s+thing)?|certainly|of\s+course|absolutely|okay|ok|great|alright|no\s+problem)\b[!.,]*[ \t]*",
    re.IGNORECASE,
)
# Blocks that talk about the paraphrase rather than being one.
_COMMENTARY = re.compile(
    r"^(?:this\s+(?:version|paraphrase|rewrite|rephrasing|revised|rewritten|new|sentence|keeps|maintains|"
    r"preserves|conveys|retains|captures|uses|changes)|the\s+(?:paraphrase|rewrite|revised|rewritten|rephrased|"
    r"new\s+version|original)|in\s+this\s+(?:version|paraphrase|rewrite)|i\s+(?:changed|replaced|rephrased|"
    r"reworded|rewrote|kept|used|made)|i\s+hope\s+this|let\s+me\s+know|note\s*:|explanation\s*:|changes(?:\s+made)?\s*:|"
    r"\(note|\(this|key\s+changes|alternatively)",
    re.IGNORECASE,
)
_QUOTES = {'"': '"', "“": "”", "'": "'", "‘": "’", "«": "»", "`": "`"}


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text).strip().lower()


def _strip_wrappers(text: str, source: str) -> str:
    """Remove markdown bold, code fences and quotes that wrap the whole text."""
    text = text.strip()
    if "**" not in source:
        text = text.replace("**", "")
    if "__" not in source:
        text = re.sub(r"(?<!\w)__|__(?!\w)", "", text)
    fence = re.fullmatch(r"```[\w-]*\n?(.*?)\n?```", text, flags=re.DOTALL)
    if fence:
        text = fence.group(1).strip()
    for q in ('"', "“", "”"):  # a lone quote left behind by a quoted prompt or a cut-off output
        if text.count(q) + (text.count("”") if q == "“" else text.count("“") if q == "”" else 0) == 1:
            if text.startswith(q) and not source.lstrip().startswith(q):
                text = text[1:].strip()
            elif text.endswith(q) and not source.rstrip().endswith(q):
                text = text[:-1].strip()
    for _ in range(2):  # '"text"' inside a fence, or nested quotes
        if len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]] and _wraps(text):
            if not (source.lstrip().startswith(text[0]) and source.rstrip().endswith(text[-1])):
                text = text[1:-1].strip()
                continue
        break
    return text


def _wraps(text: str) -> bool:
    """True when text[0] and text[-1] are one pair of quotes, not '"a" and "b"'.

    Inside, a quote between two word characters is an apostrophe; any other one closes
    (after a non-space) or opens (before a non-space) a nested quote, which must balance.
    """
    opening, closing = text[0], text[-1]
    depth = 0
    inner = text[1:-1]
    for i, ch in enumerate(inner):
        if ch not in (opening, closing):
            continue
        before = inner[i - 1] if i > 0 else " "
        after = inner[i + 1] if i + 1 < len(inner) else " "
        if before.isalnum() and after.isalnum():
            continue  # don't, France's
        if (ch == closing and not before.isspace()) and (opening == closing or ch != opening):
            if depth == 0:
                return False  # the first quote closes inside: '"a" and "b"'
            depth -= 1
        else:
            depth += 1
    return depth == 0


def _strip_preamble(text: str, source: str) -> str:
    """Drop leading interjections, "Here is …:" lines and labels, repeatedly."""
    source_start = _INTERJECTION.match(source.strip())
    for _ in range(6):
        before = text
        text = text.lstrip()
        m = _INTERJECTION.match(text)
        # "Sure, I can help" is content when the source itself opens that way
        if m and not (source_start and _norm(source_start.group(1)) == _norm(m.group(1))):
            text = text[m.end():]
        m = _HERE.match(text.lstrip())
        if m:
            text = text.lstrip()[m.end():]
        m = _LABEL.match(text.lstrip().lstrip("*#> "))
        if m:
            text = text.lstrip().lstrip("*#> ")[m.end():]
        text = text.lstrip().lstrip("*").lstrip()
        if text == before.lstrip().lstrip("*").lstrip() and text == before:
            break
    return text.strip()


def _drop_echoed_original(text: str, source: str) -> str:
    """Remove an "Original text: …" block and any block that is a verbatim copy of the source."""
    lines = text.split("\n")
    out: list[str] = []
    skipping = False
    for line in lines:
        bare = line.strip().lstrip("*#> ").strip()
        if _ORIGINAL.match(bare):
            skipping = True
            continue
        if skipping:
            # the echo ends at a blank line or at the label of the paraphrase
            if not bare or _LABEL.match(bare) or _HERE.match(bare):
                skipping = False
                if not bare:
                    continue
            else:
                continue
        out.append(line)
    text = "\n".join(out).strip()
    blocks = _blocks(text)
    if len(blocks) > 1:
        src = _norm(source)
        kept = [b for b in blocks if _norm(_strip_wrappers(_strip_preamble(b, source), source)) != src]
        if kept and not _COMMENTARY.match(kept[0].lstrip("*#>( ")):
            text = "\n\n".join(kept)
    return text


def _blocks(text: str) -> list[str]:
    return [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]


def _cut_commentary(text: str, source: str) -> str:
    """Keep blocks until the kept text is a plausible paraphrase; stop at commentary blocks."""
    blocks = _blocks(text)
    if not blocks:
        return ""
    source_blocks = max(1, len(_blocks(source)))
    source_len = len(source.strip())
    while len(blocks) > 1 and blocks[0].rstrip("* ").endswith(":") and not source.rstrip().endswith(":"):
        blocks = blocks[1:]  # an intro the patterns missed: "Yes, I can rephrase the text to:"
    kept: list[str] = []
    for block in blocks:
        first_line = block.lstrip("*#>( ")
        if kept and _COMMENTARY.match(first_line) and not _COMMENTARY.match(source.strip()):
            break
        if kept and len(kept) >= source_blocks and sum(map(len, kept)) >= 0.6 * source_len:
            break  # already a whole paraphrase: what follows is commentary or a second attempt
        kept.append(block)
    # a commentary line glued under the paraphrase with a single newline
    lines = "\n\n".join(kept).split("\n")
    while len(lines) > 1 and _COMMENTARY.match(lines[-1].strip().lstrip("*( ")) and not _COMMENTARY.match(
        source.strip().split("\n")[-1]
    ):
        lines.pop()
    return "\n".join(lines).strip()


def extract_paraphrase(raw: str, source: str) -> str:
    """The paraphrase inside a raw model output, or "" when nothing usable is left.

    Strips preambles ("Sure! Here's a rephrased version:"), labels ("Paraphrase:"), echoed
    "Original text:" blocks, commentary after the paraphrase, wrapping quotes and bold markers.
    ``source`` makes it careful: text the source itself contains (a leading "Sure,", quotes,
    several paragraphs) is kept.
    """
    text = (raw or "").replace("\r\n", "\n").strip()
    if not text:
        return ""
    text = _drop_echoed_original(text, source)
    text = _strip_preamble(text, source)
    text = _cut_commentary(text, source)
    text = _strip_wrappers(text, source)
    text = _strip_preamble(text, source)  # labels that sat inside quotes or bold
    text = _strip_wrappers(text, source)
    return text if re.search(r"\w", text) else ""


# ---------------------------------------------------------------------------------------------
# The in-process language model
# ---------------------------------------------------------------------------------------------


class GenerationTimeout(RuntimeError):
    """A generate call ran past ``ParaphraseConfig.timeout_s``."""


@dataclass
class _Job:
    """One distinct source text waiting for outputs."""

    text: str
    key: str
    prompt_tokens: int
    outputs: list[str] = field(default_factory=list)
    done: bool = False


class LMParaphraser(Paraphraser):
    """Paraphrases with a local causal LM (default: packaged SmolLM2-135M-Instruct).

    Texts are sorted by length and generated in left-padded batches so little compute goes to
    padding; each text's ``n`` samples are rows of the same batch. Results are cached by
    (name, instruction, seed, n, text), so a rerun with the same settings generates nothing; the
    cache holds raw outputs, so a better ``extract_paraphrase`` also improves cached generations.
    A batch that raises or times out costs only its own texts their outputs.
    """

    def __init__(self, config: ParaphraseConfig | None = None, cache: ParaphraseCache | None = None) -> None:
        import torch

        self.config = config or ParaphraseConfig()
        self.cache = cache
        self.device = pick_device(self.config.device)
        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)
        self.tokenizer, self.model = _load(self.config.model, self.device)
        self.name = self._make_name()
        self.failures: list[tuple[str, str]] = []
        self.tokens_generated = 0
        self.seconds_generating = 0.0
        self.cache_hits = 0
        eos = {self.tokenizer.eos_token_id, *_as_list(self.model.generation_config.eos_token_id)}
        self._eos_ids = sorted(i for i in eos if i is not None)
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self._eos_ids[0]

    def _make_name(self) -> str:
        cfg = self.config
        settings = {
            "template": cfg.prompt_template,
            "instruction": cfg.instruction,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "top_k": cfg.top_k,
            "budget": (cfg.max_new_tokens_factor, cfg.min_new_tokens, cfg.max_new_tokens),
        }
        digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
        return f"lm:{cfg.model}|t={cfg.temperature}|p={cfg.top_p}|{digest}"

    # -- public API --------------------------------------------------------------------------

    def paraphrase(self, texts: list[str], n: int, seed: int) -> list[list[str]]:
        """For each text, up to ``n`` extracted paraphrases (fewer when generation or extraction failed)."""
        return self.generate(texts, self.config.instruction, n, seed)

    def generate(self, texts: Sequence[str], instruction: str, n: int, seed: int) -> list[list[str]]:
        """Rewrite each text following ``instruction`` (e.g. "make this response clearly worse")."""
        raw = self.generate_raw(texts, instruction, n, seed)
        out = []
        for text, outputs in zip(texts, raw):
            extracted = (extract_paraphrase(r, text) for r in outputs)
            out.append([e for e in extracted if e])
        return out

    def generate_raw(self, texts: Sequence[str], instruction: str, n: int, seed: int) -> list[list[str]]:
        """Raw decoded outputs (before extraction), n per text; [] for texts whose batch failed."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if not instruction.strip():
            raise ValueError("instruction must not be empty")
        jobs: dict[str, _Job] = {}
        for text in texts:
            key = self.cache_key(text, instruction, n, seed)
            if key in jobs:
                continue
            cached = self.cache.get(key) if self.cache is not None else None
            job = _Job(text, key, 0)
            if cached is not None:
                job.outputs, job.done = list(cached), True
                self.cache_hits += 1
            jobs[key] = job
        todo = [j for j in jobs.values() if not j.done]
        if todo:
            prompts = [self._prompt(j.text, instruction) for j in todo]
            for job, prompt in zip(todo, prompts):
                job.prompt_tokens = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            source_tokens = {j.key: len(self.tokenizer(j.text, add_special_tokens=False)["input_ids"]) for j in todo}
            order = sorted(range(len(todo)), key=lambda i: todo[i].prompt_tokens)  # similar lengths share a batch
            bs = self.config.batch_size
            for start in range(0, len(order), bs):
                batch = [todo[i] for i in order[start : start + bs]]
                batch_prompts = [prompts[i] for i in order[start : start + bs]]
                budget = self.config.new_token_budget(max(source_tokens[j.key] for j in batch))
                batch_seed = _batch_seed(seed, [j.key for j in batch])
                try:
                    outputs = self._generate_batch(batch_prompts, n, budget, batch_seed)
                except Exception as err:  # noqa: BLE001 - one bad batch must not sink the run
                    logger.warning("paraphrase batch of %d texts failed: %s: %s", len(batch), type(err).__name__, err)
                    self.failures.extend((j.text, f"{type(err).__name__}: {err}") for j in batch)
                    continue
                for j, outs in zip(batch, outputs):
                    j.outputs, j.done = outs, True
                    if self.cache is not None:
                        self.cache.put(j.key, outs)
        return [list(jobs[self.cache_key(t, instruction, n, seed)].outputs) for t in texts]

    def cache_key(self, text: str, instruction: str, n: int, seed: int) -> str:
        """Hash of everything that decides the outputs for one text."""
        payload = json.dumps([self.name, instruction, int(seed), int(n), text], ensure_ascii=False)
        return "para:" + hashlib.sha256(payload.encode()).hexdigest()

    # -- machinery ---------------------------------------------------------------------------

    def _prompt(self, text: str, instruction: str) -> str:
        messages = [
            {"role": role, "content": content.format(instruction=instruction, text=text)}
            for role, content in self.config.prompt_template
        ]
        if self.tokenizer.chat_template is None:  # a base model: plain text prompt
            return "\n\n".join(m["content"] for m in messages) + "\n\n"
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _generate_batch(self, prompts: list[str], n: int, max_new_tokens: int, seed: int) -> list[list[str]]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        cfg = self.config
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        started = time.perf_counter()

        class _Deadline(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):  # noqa: ANN001, ANN003, ANN204
                if cfg.timeout_s is not None and time.perf_counter() - started > cfg.timeout_s:
                    raise GenerationTimeout(f"generation ran past timeout_s={cfg.timeout_s}")
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        greedy = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if cfg.temperature == 0:
            sampling, processors = greedy, []
            if n > 1:
                logger.info("greedy decoding (temperature 0) gives %d identical outputs per text", n)
        elif cfg.top_k > 0:
            # our sampler picks the token, generate's greedy step then just reads it off
            sampling, processors = greedy, [_TopKNucleusSampler(cfg.temperature, cfg.top_p, cfg.top_k)]
        else:
            sampling = {"do_sample": True, "temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": None}
            processors = []
        # n samples per text as repeated rows (works for greedy too, unlike num_return_sequences)
        enc = {k: v.repeat_interleave(n, dim=0) for k, v in enc.items()}
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(seed)
            try:
                out = self.model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    eos_token_id=self._eos_ids,
                    pad_token_id=self._pad_id,
                    stopping_criteria=StoppingCriteriaList([_Deadline()]),
                    logits_processor=LogitsProcessorList(processors),
                    **sampling,
                )
            finally:
                self.seconds_generating += time.perf_counter() - started
        new = out[:, enc["input_ids"].shape[1] :].cpu()
        self.tokens_generated += _count_generated(new, self._eos_ids)
        decoded = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        finished = torch.isin(new, torch.tensor(self._eos_ids)).any(1).tolist()
        decoded = [d.strip() if done else trim_unfinished(d) for d, done in zip(decoded, finished)]
        return [decoded[i * n : (i + 1) * n] for i in range(len(prompts))]


class _TopKNucleusSampler:
    """Temperature + top-p sampling inside the ``k`` most likely tokens, as a logits processor.

    generate's own sampler sorts and draws over the whole 49k vocabulary every step: a quarter of
    decoding time for a 135M model. Here the sort and the draw touch k tokens; the result is exact
    whenever the nucleus has at most k tokens. Returns scores with only the drawn token finite.
    """

    def __init__(self, temperature: float, top_p: float, k: int) -> None:
        self.temperature, self.top_p, self.k = temperature, top_p, k

    def __call__(self, input_ids, scores):  # noqa: ANN001, ANN204 - torch tensors
        import torch

        top, index = scores.float().topk(min(self.k, scores.shape[-1]), dim=-1)  # sorted, descending
        probs = torch.softmax(top / self.temperature, dim=-1)
        outside = probs.cumsum(-1) - probs >= self.top_p  # the first token is always inside
        probs = probs.masked_fill(outside, 0.0)
        token = index.gather(1, torch.multinomial(probs, 1))
        return torch.full_like(scores, float("-inf")).scatter_(1, token, 0.0)


def trim_unfinished(text: str) -> str:
    """Drop the sentence a row was cut off in when it ran out of new tokens (keep it if it is the only one)."""
    text = text.strip()
    ends = [m.end() for m in re.finditer(r"[.!?][\"'”’)\]]*(?=\s|$)", text)]
    return text[: ends[-1]].strip() if ends else text


def _count_generated(new_tokens, eos_ids: list[int]) -> int:  # noqa: ANN001 - a torch tensor
    """Tokens actually produced per row: up to and including the first end-of-sequence token."""
    import torch

    is_eos = torch.isin(new_tokens, torch.tensor(eos_ids))
    length = new_tokens.shape[1]
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, torch.full_like(is_eos[:, 0], length, dtype=torch.long))
    return int(first.sum())


def _batch_seed(seed: int, keys: list[str]) -> int:
    """A batch's seed depends on the call's seed and its texts, not on its position in the call."""
    digest = hashlib.sha256(json.dumps([int(seed), sorted(keys)]).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _as_list(value) -> list:  # noqa: ANN001
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _load(spec: str, device: str):  # noqa: ANN202 - (tokenizer, model)
    """Tokenizer and model, once; errors name the model that could not be loaded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model(spec)  # ModelNotFoundError for a path that does not exist
    directory, gguf_file = split_gguf(resolved)
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file)
    except OSError as err:
        raise ModelNotFoundError(f"could not load paraphrase model {spec!r} from {resolved}: {err}") from err
    except Exception as err:  # noqa: BLE001 - transformers raises many types for a bad checkpoint
        raise ValueError(f"could not load paraphrase model {spec!r} from {resolved}: {err}") from err
    tokenizer.padding_side = "left"  # decoder-only: new tokens must follow the prompt directly
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    model.to(device)
    return tokenizer, model


__all__ = [
    "DEFAULT_TEMPLATE",
    "PARAPHRASE_INSTRUCTION",
    "GenerationTimeout",
    "LMParaphraser",
    "ModelNotFoundError",
    "ParaphraseCache",
    "ParaphraseConfig",
    "Paraphraser",
    "extract_paraphrase",
    "trim_unfinished",
]
