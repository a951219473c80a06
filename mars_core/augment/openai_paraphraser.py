"""Paraphrases from any OpenAI-compatible chat-completions server (vLLM, TGI, llama.cpp's server, Ollama, a hosted API).

``--paraphraser openai:BASE_URL#MODEL`` selects it: each row is one POST to BASE_URL/chat/completions
with the same chat template (system prompt, few-shot examples) as the in-process model, sent from
``concurrency`` daemon threads, retried with exponential backoff on connection errors, timeouts, 429
and 5xx answers (``max_retries``). Each request has a time limit sized for one paraphrase
(seconds_per_token x its max_tokens, at least 10 s), and all of a Step's requests share the Step's
deadline (``--remote-deadline``, see augment/remote.py): a server that never answers costs a bounded
time, Ctrl-C stops the call at once, and every failed attempt is logged at WARNING and shown in the
Step's progress line. A row that still fails is a failure of that row; the Step decides whether too
many failed (augment/selection.py: ParaphraserFailed), so an outage is never stored as a result.

The API key is read from MARS_OPENAI_API_KEY (or OPENAI_API_KEY) at request time and only ever
put in the Authorization header: it is not part of the config, the name or the cache key, and every
error, log line and answer text from the server passes through mars_core.redaction first (a server
that echoes the key back cannot get it into a log, the progress, the store or an export). Row outputs are cached by the same row keys as the in-process model, and the
paraphraser's name (provenance of every stored paraphrase) names the server, model and prompt.
Standard library only (urllib): one more HTTP client would buy nothing here.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request

from mars_core.augment import remote
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
from mars_core.redaction import redact

logger = logging.getLogger(__name__)

MIN_REQUEST_TIMEOUT_S = 10.0
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
    """Rows from a chat-completions endpoint, several requests in flight at once, all inside the Step's deadline."""

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

    def request_timeout(self, max_tokens: int) -> float:
        """One paraphrase's time limit: seconds_per_token x its max_tokens, at least min_timeout_s.

        Sized for ONE generation, not for all the requests in flight: a server that queues our requests makes
        some of them time out and be retried, which shows, instead of every request waiting minutes.
        """
        return max(self.min_timeout_s, self.config.seconds_per_token * max_tokens)

    def _generate_rows(self, rows: list[Row], instruction: str, seed: int) -> None:
        """Send the rows from daemon threads; the calling thread waits in short, interruptible slices.

        Ctrl-C (or SIGTERM turned into an exception by the CLI) reaches the calling thread at once: it flags the
        workers to stop and re-raises; the workers are daemons, so a request stuck in a socket never holds the
        process. When the Step's deadline passes, the rows not finished fail with that reason.
        """
        work = remote.current()
        call = _Call(rows, work)
        workers = [threading.Thread(target=self._worker, args=(call, instruction, seed), daemon=True,
                                    name=f"openai-paraphraser-{i}")
                   for i in range(min(self.config.concurrency, len(rows)))]
        for worker in workers:
            worker.start()
        try:
            while not call.finished.wait(0.1):
                if work.expired():
                    break
        except BaseException:
            call.cancel.set()
            raise
        call.close()

    def _worker(self, call: _Call, instruction: str, seed: int) -> None:
        while (row := call.next_row()) is not None:
            try:
                outcome = self._one(row, instruction, seed, call)
            except Exception as err:  # noqa: BLE001 - a bug in one row fails that row, never hangs the call
                outcome = (None, 0, redact(f"{type(err).__name__}: {err}"))
            call.settle(row, *outcome)

    def _one(self, row: Row, instruction: str, seed: int, call: _Call) -> tuple[str | None, int, str | None]:
        """(raw text, tokens, error) of one row: retried with backoff, never past the Step's deadline."""
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
        attempts = cfg.max_retries + 1
        last = "no attempt"
        for attempt in range(attempts):
            if attempt and call.pause(self.backoff_s * 2 ** (attempt - 1) * (1 + random.random() / 4)):
                break
            if call.stopped():
                break
            timeout = min(self.request_timeout(max_tokens), max(call.work.left(), 0.05))
            try:
                text, tokens = self._post(body, timeout)
            except _Retryable as err:
                last = redact(str(err))
                call.failed_attempt(err.kind, last, attempt + 1, attempts)
                continue
            except ServerError as err:
                return None, 0, redact(str(err))
            return redact(text), tokens, None
        if call.stopped():
            return None, 0, f"{call.why_stopped()} (last: {last})" if last != "no attempt" else call.why_stopped()
        return None, 0, f"gave up after {attempts} attempts: {last}"

    def _post(self, body: dict, timeout: float) -> tuple[str, int]:
        url = f"{self.base_url}/chat/completions"
        headers = {"Content-Type": "application/json"}
        key = api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the user's server
                payload = _read_within(response, started + timeout)
        except urllib.error.HTTPError as err:
            detail = redact(err.read()[:200].decode("utf-8", "replace"))
            if err.code in RETRY_STATUS:
                raise _Retryable(f"HTTP {err.code}", f"HTTP {err.code} from {url}: {detail}") from None
            raise ServerError(f"HTTP {err.code} from {url}: {detail}") from None
        except TimeoutError as err:
            raise _Retryable("timeout", f"no answer from {url} within {timeout:.1f} s") from err
        except urllib.error.URLError as err:
            if isinstance(err.reason, (TimeoutError, socket.timeout)):
                raise _Retryable("timeout", f"no answer from {url} within {timeout:.1f} s") from None
            raise _Retryable("unreachable", f"cannot reach {url}: {err.reason}") from None
        except (ConnectionError, OSError, http.client.HTTPException) as err:
            raise _Retryable("connection lost", f"connection to {url} failed: {type(err).__name__}") from None
        return _parse(payload, url)


class _Call:
    """One _generate_rows call: the rows to send, their results, and the tally that progress and logs show."""

    def __init__(self, rows: list[Row], work: remote.RemoteWork) -> None:
        self.rows, self.work = rows, work
        self.cancel = threading.Event()
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._queue = list(reversed(rows))
        self._results: dict[str, tuple[str | None, int, str | None]] = {}
        self._closed = False
        if not rows:
            self.finished.set()

    def stopped(self) -> bool:
        return self.cancel.is_set() or self.work.expired()

    def why_stopped(self) -> str:
        return "stopped (interrupted)" if self.cancel.is_set() else self.work.why_stopped()

    def pause(self, seconds: float) -> bool:
        """Sleep the backoff, waking early when stopped; True if stopped."""
        end = time.monotonic() + min(seconds, max(self.work.left(), 0.0))
        while time.monotonic() < end:
            if self.stopped():
                return True
            self.cancel.wait(min(0.05, end - time.monotonic()))
        return self.stopped()

    def next_row(self) -> Row | None:
        with self._lock:
            return None if self._closed or self.stopped() or not self._queue else self._queue.pop()

    def settle(self, row: Row, raw: str | None, tokens: int, error: str | None) -> None:
        with self._lock:
            if self._closed:
                return  # the caller stopped waiting; this late answer is dropped
            self._results[row.key] = (raw, tokens, error)
            done = len(self._results)
            failed = sum(1 for r in self._results.values() if r[0] is None)
            if done == len(self.rows):
                self.finished.set()
        if error is not None:
            logger.warning("paraphrase request gave up: %s", error)
            self.work.report(done, len(self.rows), f"{failed} of {len(self.rows)} requests failed: {_short(error)}")

    def failed_attempt(self, kind: str, why: str, attempt: int, attempts: int) -> None:
        with self._lock:
            done = len(self._results)
        retrying = "; retrying" if attempt < attempts else ""
        logger.warning("paraphrase request failed (attempt %d of %d)%s: %s", attempt, attempts, retrying, why)
        self.work.report(done, len(self.rows),
                         f"request failed (attempt {attempt} of {attempts}): {kind}{retrying}")

    def close(self) -> None:
        """Copy results into the rows; rows still out fail with the reason the waiting stopped."""
        with self._lock:
            self._closed = True
            for row in self.rows:
                raw, tokens, error = self._results.get(row.key, (None, 0, self.why_stopped()))
                row.raw, row.tokens, row.error = raw, tokens, error
            failed = sum(row.raw is None for row in self.rows)
        if failed:
            self.work.report(len(self.rows), len(self.rows), f"{failed} of {len(self.rows)} requests failed")


def _short(error: str) -> str:
    return error if len(error) <= 80 else error[:77] + "..."


def _read_within(response, deadline: float) -> bytes:  # noqa: ANN001 - an http.client response
    """The body, read in pieces; a server that trickles it slower than the request's time limit times out."""
    chunks = []
    while True:
        piece = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
        if not piece:
            return b"".join(chunks)
        chunks.append(piece)
        if time.monotonic() > deadline:
            raise TimeoutError("the answer arrived too slowly")


class _Retryable(RuntimeError):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # a word or two for the progress line: timeout, HTTP 503, connection lost


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
