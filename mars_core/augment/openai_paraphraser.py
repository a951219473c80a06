"""Paraphrases from any OpenAI-compatible chat-completions server (vLLM, TGI, llama.cpp's server, Ollama, a hosted API).

``--paraphraser openai:BASE_URL#MODEL`` selects it: each row is one POST to BASE_URL/chat/completions
with the same chat template (system prompt, few-shot examples) as the in-process model, sent from a
thread pool (``concurrency``), retried with exponential backoff on connection errors, timeouts, 429
and 5xx answers (``max_retries``), and cut off by a timeout that scales with the tokens in flight (max_tokens x concurrency x seconds_per_token,
at least 30 s).
A row that still fails is a failure of that row only: the Step goes on without it.

The API key is read from MARS_OPENAI_API_KEY (or OPENAI_API_KEY) at request time and only ever
put in the Authorization header: it is not part of the config, the name, the cache key, any log line
or any error message. Row outputs are cached by the same row keys as the in-process model, and the
paraphraser's name (provenance of every stored paraphrase) names the server, model and prompt.
Standard library only (urllib): one more HTTP client would buy nothing here.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from mars_core.augment.paraphraser import (
    API_KEY_ENVS,
    ParaphraseCache,
    ParaphraseConfig,
    Row,
    RowParaphraser,
    chat_messages,
    openai_target,
    settings_digest,
)

logger = logging.getLogger(__name__)

MIN_REQUEST_TIMEOUT_S = 30.0
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ServerError(RuntimeError):
    """The server's answer could not be used; the message says why (never the key)."""


def openai_name(config: ParaphraseConfig) -> str:
    base_url, model = openai_target(config.model)
    settings = config.output_settings() | {"instruction": config.instruction}
    return f"openai:{base_url}#{model}|t={config.temperature}|p={config.top_p}|{settings_digest(settings)}"


def api_key() -> str | None:
    for name in API_KEY_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


class OpenAIParaphraser(RowParaphraser):
    """Rows from a chat-completions endpoint, several requests in flight at once."""

    def __init__(self, config: ParaphraseConfig, cache: ParaphraseCache | None = None,
                 backoff_s: float = 0.5, min_timeout_s: float = MIN_REQUEST_TIMEOUT_S) -> None:
        if not config.is_openai:
            raise ValueError(f"OpenAIParaphraser needs a model of the form openai:BASE_URL#MODEL, got {config.model!r}")
        super().__init__(config.instruction, cache)
        self.config = config
        self.base_url, self.model = openai_target(config.model)
        self.name = openai_name(config)
        self.backoff_s = backoff_s
        self.min_timeout_s = min_timeout_s  # a request may always take this long, however few tokens it asks

    def _generate_rows(self, rows: list[Row], instruction: str, seed: int) -> None:
        with ThreadPoolExecutor(max_workers=min(self.config.concurrency, len(rows))) as pool:
            list(pool.map(lambda row: self._one(row, instruction, seed), rows))

    def _one(self, row: Row, instruction: str, seed: int) -> None:
        cfg = self.config
        max_tokens = cfg.new_token_budget(max(1, len(row.text.split()) * 4 // 3))  # words -> tokens, roughly
        body = {
            "model": self.model,
            "messages": chat_messages(cfg.prompt_template, instruction, row.text),
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "max_tokens": max_tokens,
            "n": 1,
            # row k of a text is asked with its own seed, so a server that honours seeds is reproducible
            "seed": int(row.key[4:20], 16) % (2**31) ^ int(seed) % (2**31),
        }
        # a server may queue our concurrent requests, so the limit scales with all the work we have in flight
        timeout = max(self.min_timeout_s, cfg.seconds_per_token * max_tokens * cfg.concurrency)
        last = "no attempt"
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1) * (1 + random.random() / 4))
            try:
                text, tokens = self._post(body, timeout)
            except _Retryable as err:
                last = str(err)
                logger.info("paraphrase request failed (attempt %d of %d): %s", attempt + 1, cfg.max_retries + 1, last)
                continue
            except ServerError as err:
                row.error = str(err)
                return
            row.raw, row.tokens = text, tokens
            return
        row.error = f"gave up after {cfg.max_retries + 1} attempts: {last}"

    def _post(self, body: dict, timeout: float) -> tuple[str, int]:
        url = f"{self.base_url}/chat/completions"
        headers = {"Content-Type": "application/json"}
        key = api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the user's server
                payload = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read()[:200].decode("utf-8", "replace")
            if err.code in RETRY_STATUS:
                raise _Retryable(f"HTTP {err.code} from {url}: {detail}") from None
            raise ServerError(f"HTTP {err.code} from {url}: {detail}") from None
        except TimeoutError as err:
            raise _Retryable(f"no answer from {url} within {timeout:.0f} s") from err
        except urllib.error.URLError as err:
            if isinstance(err.reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"no answer from {url} within {timeout:.0f} s") from None
            raise _Retryable(f"cannot reach {url}: {err.reason}") from None
        except (ConnectionError, OSError) as err:
            raise _Retryable(f"connection to {url} failed: {type(err).__name__}") from None
        return _parse(payload, url)


class _Retryable(RuntimeError):
    pass


def _parse(payload: bytes, url: str) -> tuple[str, int]:
    """(text, completion tokens) from a chat-completions answer; ServerError for anything else."""
    try:
        data = json.loads(payload)
        message = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ServerError(f"malformed answer from {url} (not a chat completion): {payload[:120]!r}") from None
    if not isinstance(message, str):
        raise ServerError(f"malformed answer from {url}: message content is {type(message).__name__}, not text")
    usage = data.get("usage") or {}
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return message, int(tokens) if isinstance(tokens, int) else len(message.split())
