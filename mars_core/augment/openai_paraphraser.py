"""Paraphrases from any OpenAI-compatible chat-completions server (vLLM, TGI, llama.cpp's server, Ollama, a hosted API).

``--paraphraser openai:BASE_URL#MODEL`` selects it: each row is one POST to BASE_URL/chat/completions
with the same chat template (system prompt, few-shot examples) as the in-process model, sent from
``concurrency`` daemon threads as soon as it is asked (a retry joins the requests in flight), retried
with exponential backoff on connection errors, timeouts, 429 and 5xx answers (``max_retries``). Each
request has a time limit sized for one paraphrase (seconds_per_token x its max_tokens, at least 10 s),
and all of a Step's requests share the Step's deadline (``--remote-deadline``, see augment/remote.py):
a server that never answers costs a bounded time, Ctrl-C stops the call at once, and every failed
attempt is logged at WARNING and shown in the Step's progress line. A row that still fails is a failure
of that row; the Step decides whether too many failed (augment/selection.py: ParaphraserFailed), so an
outage is never stored as a result.

The API key is read from MARS_OPENAI_API_KEY (or OPENAI_API_KEY) at request time and only ever
put in the Authorization header: it is not part of the config, the name or the cache key, and every
error, log line and answer text from the server passes through mars_core.redaction first (a server
that echoes the key back cannot get it into a log, the progress, the store or an export). Row outputs
are cached by the same row keys as the in-process model, and the paraphraser's name (provenance of every
stored paraphrase) names the server, model and prompt.
Standard library only (urllib): one more HTTP client would buy nothing here.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import queue
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable

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

    def _generate_stream(self, pull: Callable[[], list[Row]], push: Callable[[Row], None], instruction: str,
                         seed: int) -> None:
        """Send rows as they are asked, hand back each answer as it arrives (see RowParaphraser.paraphrase_stream).

        A retry the caller asks on seeing an answer goes out while the other requests are still in flight, so a
        server that batches continuously (vLLM, TGI) never waits for a round's slowest row. Answers are pushed
        from the calling thread, which waits in short, interruptible slices: Ctrl-C (or SIGTERM turned into an
        exception by the CLI) flags the workers to stop and re-raises at once; the workers are daemons, so a
        request stuck in a socket never holds the process. When the Step's deadline passes, the rows still out
        fail with that reason.
        """
        work = remote.current()
        call = _Call(work, self.config.concurrency, lambda: threading.Thread(
            target=self._worker, args=(call, instruction, seed), daemon=True, name="openai-paraphraser").start())
        try:
            call.add(pull())
            while call.out():
                answered = call.answered(0.1)
                if not answered and work.expired():
                    break
                for row in answered:
                    push(row)
                if answered:
                    call.add(pull())
        except BaseException:
            call.cancel.set()
            raise
        for row in call.close():
            push(row)

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
    """One stream of requests: the rows still to send, the answers not yet handed back, the workers sending them,
    and the tally that progress and logs show."""

    def __init__(self, work: remote.RemoteWork, concurrency: int, start_worker: Callable[[], None]) -> None:
        self.work, self.concurrency, self._start_worker = work, concurrency, start_worker
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._to_send: deque[Row] = deque()
        self._sent: dict[int, Row] = {}  # id(row) -> row: added, no answer yet
        self._answers: queue.SimpleQueue[Row] = queue.SimpleQueue()
        self._out = 0  # rows added and not yet handed back (calling thread only)
        self._workers = 0
        self._total = self._done = self._failed = 0
        self._closed = False

    def add(self, rows: list[Row]) -> None:
        """Queue rows to send; start workers up to ``concurrency`` (a worker ends when it finds nothing to send)."""
        if not rows:
            return
        with self._lock:
            self._to_send.extend(rows)
            self._sent.update((id(row), row) for row in rows)
            self._total += len(rows)
            start = min(self.concurrency - self._workers, len(self._to_send))
            self._workers += start
        self._out += len(rows)
        for _ in range(start):
            self._start_worker()

    def out(self) -> int:
        return self._out

    def answered(self, wait: float) -> list[Row]:
        """The rows answered (or failed) since the last call, waiting up to ``wait`` seconds for the first."""
        try:
            rows = [self._answers.get(timeout=wait)]
        except queue.Empty:
            return []
        while True:
            try:
                rows.append(self._answers.get_nowait())
            except queue.Empty:
                break
        self._out -= len(rows)
        return rows

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
        """The next row to send, or None: the calling worker then ends (and no longer counts as running)."""
        with self._lock:
            if self._closed or self.stopped() or not self._to_send:
                self._workers -= 1
                return None
            return self._to_send.popleft()

    def settle(self, row: Row, raw: str | None, tokens: int, error: str | None) -> None:
        with self._lock:
            if self._closed or self._sent.pop(id(row), None) is None:
                return  # the caller stopped waiting; this late answer is dropped
            row.raw, row.tokens, row.error = raw, tokens, error
            self._done += 1
            self._failed += raw is None
            done, total, failed = self._done, self._total, self._failed
            self._answers.put(row)  # under the lock: close() either sees it here or still out, never neither
        if error is not None:
            logger.warning("paraphrase request gave up: %s", error)
            self.work.report(done, total, f"{failed} of {total} requests failed: {_short(error)}")

    def failed_attempt(self, kind: str, why: str, attempt: int, attempts: int) -> None:
        with self._lock:
            done, total = self._done, self._total
        retrying = "; retrying" if attempt < attempts else ""
        logger.warning("paraphrase request failed (attempt %d of %d)%s: %s", attempt, attempts, retrying, why)
        self.work.report(done, total, f"request failed (attempt {attempt} of {attempts}): {kind}{retrying}")

    def close(self) -> list[Row]:
        """Stop taking answers: the rows answered but not handed back, then the rows still out, failed with the
        reason the waiting stopped."""
        with self._lock:
            self._closed = True
            late = list(self._sent.values())
            self._sent.clear()
        for row in late:
            row.raw, row.tokens, row.error = None, 0, self.why_stopped()
        rows = self.answered(0) + late
        self._out = 0
        failed = self._failed + len(late)
        if failed:
            self.work.report(self._total, self._total, f"{failed} of {self._total} requests failed")
        return rows


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
