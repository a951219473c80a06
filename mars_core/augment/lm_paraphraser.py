"""The in-process paraphraser: a local causal LM (default: packaged SmolLM2-135M-Instruct) on transformers.

Why a decoding loop of our own instead of ``model.generate`` (profiled on real HH-RLHF responses,
bench/paraphrase.py): generate keeps every row of a batch in the forward pass until the longest row
ends, so on real text with its long tail most steps computed finished rows; it cannot keep the rows
that finished when a batch is stopped; and its sampler draws from one random stream for the whole
batch, so a row's text depended on its batch-mates. Here finished rows leave the KV cache at once,
a batch stopped by its time limit keeps every row it finished, each row samples from its own seeded
stream (row k of a text is the same whichever batch computes it), and the prompt prefix that all rows
share (system prompt and few-shot examples) is computed once and reused.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mars_core.augment.extraction import trim_unfinished
from mars_core.augment.paraphraser import (
    ParaphraseCache,
    ParaphraseConfig,
    Row,
    RowParaphraser,
    chat_messages,
    settings_digest,
)
from mars_core.model.encoders import ModelNotFoundError, pick_device, resolve_model, split_gguf

logger = logging.getLogger(__name__)


def lm_name(config: ParaphraseConfig) -> str:
    """The paraphraser's name (cache keys, provenance) from its config alone: no model needed."""
    settings = config.output_settings() | {"instruction": config.instruction}
    return f"lm:{config.model}|t={config.temperature}|p={config.top_p}|{settings_digest(settings)}"


class LMParaphraser(RowParaphraser):
    """Paraphrases with a local causal LM; see the module docstring for how it decodes."""

    def __init__(self, config: ParaphraseConfig | None = None, cache: ParaphraseCache | None = None) -> None:
        self.config = config or ParaphraseConfig()
        super().__init__(self.config.instruction, cache)
        self.device = pick_device(self.config.device)
        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)
        self.tokenizer, self.model = _load(self.config.model, self.device)
        self.name = lm_name(self.config)
        eos = {self.tokenizer.eos_token_id, *_as_list(self.model.generation_config.eos_token_id)}
        self._eos_ids = sorted(i for i in eos if i is not None)
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self._eos_ids[0]
        self._prefix: tuple[tuple[int, ...], object] | None = None  # (token ids, KV cache of batch size 1)

    def _start_run(self) -> None:
        self._prefix = None  # a run's prefix cache is its own (whether a prefix is reused shapes its numerics)

    # -- prompts -------------------------------------------------------------------------------
    def prompt_ids(self, text: str, instruction: str) -> list[int]:
        messages = chat_messages(self.config.prompt_template, instruction, text)
        if self.tokenizer.chat_template is None:  # a base model: plain text prompt
            prompt = "\n\n".join(m["content"] for m in messages) + "\n\n"
        else:
            prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    # -- generation ----------------------------------------------------------------------------
    def _generate_rows(self, rows: list[Row], instruction: str, seed: int) -> None:
        """Rows sorted by prompt length, decoded ``batch_size`` at a time; errors cost only their batch."""
        ids = {r.key: self.prompt_ids(r.text, instruction) for r in rows}
        source_tokens = {r.text: len(self.tokenizer(r.text, add_special_tokens=False)["input_ids"]) for r in rows}
        ordered = sorted(rows, key=lambda r: len(ids[r.key]))
        bs = self.config.batch_size
        for start in range(0, len(ordered), bs):
            batch = ordered[start : start + bs]
            budgets = [self.config.new_token_budget(source_tokens[r.text]) for r in batch]
            try:
                self._decode([ids[r.key] for r in batch], budgets, [_row_seed(seed, r.key) for r in batch], batch)
            except Exception as err:  # noqa: BLE001 - one bad batch must not sink the run
                logger.warning("paraphrase batch of %d rows failed: %s: %s", len(batch), type(err).__name__, err)
                for r in batch:
                    if r.raw is None:
                        r.error = f"{type(err).__name__}: {err}"

    def _after_step(self) -> None:
        """Called after every decoding step (a seam for tests that slow the model down on purpose)."""

    def _shared_prefix(self, prompts: list[list[int]]) -> tuple[int, object | None]:  # (length, KV cache)
        """KV cache of the token prefix every prompt shares, computed once per run (``for_run``) and reused."""
        common = prompts[0]
        for p in prompts[1:]:
            n = 0
            while n < min(len(common), len(p)) and common[n] == p[n]:
                n += 1
            common = common[:n]
        common = common[: max(0, min(len(p) for p in prompts) - 1)]  # every row keeps >= 1 token of its own
        if len(common) < 16:
            return 0, None
        key = tuple(common)
        if self._prefix is None or self._prefix[0] != key:
            if self._prefix is not None and key[: len(self._prefix[0])] == self._prefix[0]:
                key = self._prefix[0]  # the stored prefix is a prefix of this batch's: reuse it
            else:
                with torch.inference_mode():
                    out = self.model(torch.tensor([list(key)], device=self.device), use_cache=True)
                self._prefix = (key, out.past_key_values)
        return len(self._prefix[0]), self._prefix[1]

    def _decode(self, prompts: list[list[int]], budgets: list[int], seeds: list[int], rows: list[Row]) -> None:
        cfg = self.config
        started = time.perf_counter()
        limit = cfg.seconds_per_token * sum(budgets) + 5.0  # scales with the work asked, not per call
        plen, prefix_cache = self._shared_prefix(prompts)
        suffixes = [p[plen:] for p in prompts]
        width = max(len(s) for s in suffixes)
        n = len(prompts)
        input_ids = torch.full((n, width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((n, plen + width), dtype=torch.long)
        mask[:, :plen] = 1
        for i, s in enumerate(suffixes):
            input_ids[i, width - len(s) :] = torch.tensor(s)
            mask[i, plen + width - len(s) :] = 1
        position = (mask.cumsum(-1) - 1).clamp(min=0)
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        outputs: list[list[int]] = [[] for _ in range(n)]
        alive = list(range(n))
        with torch.inference_mode():
            cache = None
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(n)
            out = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                             position_ids=position[:, plen:].to(self.device), past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1, :]
            next_pos = position[:, -1] + 1
            while alive:
                tokens = sample_tokens(logits, [gens[i] for i in alive], cfg.temperature, cfg.top_p, cfg.top_k)
                keep = []
                for j, i in enumerate(alive):
                    token = int(tokens[j])
                    outputs[i].append(token)
                    ended = token in self._eos_ids
                    if ended or len(outputs[i]) >= budgets[i]:
                        rows[i].raw = self._text(outputs[i], ended)
                        rows[i].tokens = len(outputs[i])
                    else:
                        keep.append(j)
                self._after_step()
                if not keep:
                    break
                if time.perf_counter() - started > limit:
                    for j in keep:
                        i = alive[j]
                        rows[i].error = (f"time limit {limit:.0f} s reached ({cfg.seconds_per_token} s per token of "
                                         f"budget) after {len(outputs[i])} tokens")
                    logger.warning("paraphrase batch stopped at its time limit (%.0f s): kept %d of %d rows",
                                   limit, n - len(keep), n)
                    break
                if len(keep) < len(alive):  # finished rows leave the batch and the KV cache
                    index = torch.tensor(keep)
                    cache.batch_select_indices(index.to(self.device))
                    mask, next_pos, tokens = mask[index], next_pos[index], tokens[index]
                    alive = [alive[j] for j in keep]
                mask = torch.cat([mask, torch.ones((len(alive), 1), dtype=torch.long)], dim=1)
                out = self.model(input_ids=tokens[:, None].to(self.device), attention_mask=mask.to(self.device),
                                 position_ids=next_pos[:, None].to(self.device), past_key_values=cache, use_cache=True)
                cache, logits = out.past_key_values, out.logits[:, -1, :]
                next_pos = next_pos + 1

    def _text(self, tokens: list[int], ended: bool) -> str:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return text if ended else trim_unfinished(text)


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


def _load(spec: str, device: str) -> tuple[AutoTokenizer, AutoModelForCausalLM]:
    """Tokenizer and model, once; errors name the model that could not be loaded."""
    resolved = resolve_model(spec)  # ModelNotFoundError for a path that does not exist
    directory, gguf_file = split_gguf(resolved)
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file)
    except OSError as err:
        raise ModelNotFoundError(f"could not load paraphrase model {spec!r} from {resolved}: {err}") from err
    except Exception as err:  # noqa: BLE001 - transformers raises many types for a bad checkpoint
        raise ValueError(f"could not load paraphrase model {spec!r} from {resolved}: {err}") from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    model.to(device)
    return tokenizer, model
