"""A small OpenAI-compatible chat-completions server over the packaged model (or any answer function).

    python -m mars_core.augment.serve_openai [--port 8000] [--model packaged:smollm2]

then ``python -m mars_core run --paraphraser openai:http://127.0.0.1:8000/v1#smollm2``. It implements
only POST /v1/chat/completions (and GET /v1/models) and binds to loopback addresses only. Requests in
flight decode together in one batch, a new one joining the running batch: it exists so the OpenAI path
can be tried and tested on a laptop at the in-process engine's speed, not to replace vLLM or llama.cpp's
server. Tests start it over canned answers (``Backend`` is any callable from the request body to the
answer text, or to the text and its token count).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mars_core.augment.lm_paraphraser import LMParaphraser, Work
from mars_core.augment.paraphraser import ParaphraseConfig, Row, common_prefix
from mars_core.model.openmp_workers import release_openmp_workers

logger = logging.getLogger(__name__)

Backend = Callable[[dict], str | tuple[str, int]]  # request body -> the answer (and its token count)


def lm_backend(paraphraser: LMParaphraser) -> Backend:
    """Answers with the in-process model: the request's messages through its chat template, decoded together
    with the other requests in flight (``_Batcher``)."""
    batcher = _Batcher(paraphraser)

    def answer(body: dict) -> tuple[str, int]:
        tok = paraphraser.tokenizer
        messages = body["messages"]
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        # the part every request with these earlier messages shares (system prompt, examples): kept once
        head = tok.apply_chat_template(messages[:-1], tokenize=False) if len(messages) > 1 else ""
        anchor = common_prefix(ids, tok(head, add_special_tokens=False)["input_ids"])[:-1]
        budget = max(1, min(int(body.get("max_tokens") or 128), paraphraser.config.max_new_tokens))
        row = batcher.decode(ids, anchor, budget, int(body.get("seed") or 0))
        if row.raw is None:
            raise RuntimeError(row.error or "no output")
        return row.raw, row.tokens

    return answer


class _Batcher:
    """One decoding thread for every request: a request that arrives while others decode joins their batch
    (the model's continuous batching, as vLLM or TGI do), so concurrent clients are served at batch speed
    instead of one generation at a time.

    The thread that loaded the model hands its OpenMP workers back before the decoding thread starts, and
    the decoding thread hands its own back whenever it runs out of requests: a pool left behind by either
    would halve the other's speed (model/openmp_workers.py)."""

    def __init__(self, paraphraser: LMParaphraser) -> None:
        self.paraphraser = paraphraser
        self._asked: queue.SimpleQueue[_Asked] = queue.SimpleQueue()
        self._decoding: dict[int, _Asked] = {}  # id(row) -> a request handed to the decoder, not finished
        self._lock = threading.Lock()
        release_openmp_workers()
        threading.Thread(target=self._serve, daemon=True, name="serve-openai-decoder").start()

    def decode(self, ids: list[int], anchor: list[int], budget: int, seed: int) -> Row:
        asked = _Asked(ids, anchor, budget, seed, Row(text="", index=0, key="served"), threading.Event())
        self._asked.put(asked)
        asked.done.wait()
        return asked.row

    def _serve(self) -> None:
        while True:
            first = self._asked.get()
            try:
                self.paraphraser._decode(self._work([first]), anchor=first.anchor, more=self._more,
                                         finished=self._finish)
            except Exception as err:  # noqa: BLE001 - a bug must fail the requests it held, not hang them
                logger.exception("the decoding thread failed")
                with self._lock:
                    lost, self._decoding = list(self._decoding.values()), {}
                for asked in lost:
                    asked.row.error = asked.row.error or f"{type(err).__name__}: {err}"
                    asked.done.set()
            if self._asked.empty():
                release_openmp_workers()

    def _more(self) -> Work:
        asked = []
        while True:
            try:
                asked.append(self._asked.get_nowait())
            except queue.Empty:
                return self._work(asked)

    def _work(self, asked: list[_Asked]) -> Work:
        with self._lock:
            self._decoding.update((id(a.row), a) for a in asked)
        return Work([a.ids for a in asked], [a.budget for a in asked], [a.seed for a in asked], [a.row for a in asked])

    def _finish(self, row: Row) -> None:
        with self._lock:
            asked = self._decoding.pop(id(row), None)
        if asked is not None:
            asked.done.set()


@dataclass
class _Asked:
    ids: list[int]
    anchor: list[int]
    budget: int
    seed: int
    row: Row
    done: threading.Event


class _Handler(BaseHTTPRequestHandler):
    backend: Backend
    model_name: str

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        logger.info("%s " + format, self.address_string(), *args)  # the request line only; headers never

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            logger.info("client %s went away before its answer was sent", self.address_string())

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": self.model_name, "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if not isinstance(body.get("messages"), list):
                raise ValueError("'messages' must be a list")
        except (ValueError, TypeError) as err:
            self._send(400, {"error": {"message": f"bad request: {err}"}})
            return
        try:
            answer = self.backend(body)
        except Exception as err:  # noqa: BLE001 - the client gets a 500 and may retry
            self._send(500, {"error": {"message": f"{type(err).__name__}: {err}"}})
            return
        text, tokens = answer if isinstance(answer, tuple) else (answer, len(answer.split()))  # canned: words
        self._send(200, {
            "id": f"chatcmpl-{time.time_ns()}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", self.model_name),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"completion_tokens": tokens},
        })


def make_server(backend: Backend, host: str = "127.0.0.1", port: int = 0, model_name: str = "local",
                handler: type[_Handler] = _Handler) -> ThreadingHTTPServer:
    """A server bound to a loopback address (port 0: any free port; read it from ``server_address``)."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"serve_openai binds to loopback addresses only, got {host!r}")
    handler_cls = type("Handler", (handler,), {"backend": staticmethod(backend), "model_name": model_name})
    server = ThreadingHTTPServer((host, port), handler_cls)
    server.daemon_threads = True
    return server


@contextmanager
def serving(backend: Backend, host: str = "127.0.0.1") -> Iterator[str]:
    """``make_server`` on a free port, served from a daemon thread while the block runs; yields its base URL."""
    server = make_server(backend, host, 0)
    threading.Thread(target=server.serve_forever, daemon=True, name="serve-openai").start()
    try:
        yield f"http://{host}:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default=ParaphraseConfig().model, help="packaged alias or local path")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    server = make_server(lm_backend(LMParaphraser(ParaphraseConfig(model=args.model))), args.host, args.port,
                         model_name=args.model)
    print(f"serving {args.model} at http://{args.host}:{server.server_address[1]}/v1 (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
