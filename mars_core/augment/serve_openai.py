"""A small OpenAI-compatible chat-completions server over the packaged model (or any answer function).

    python -m mars_core.augment.serve_openai [--port 8000] [--model packaged:smollm2]

then ``python -m mars_core run --paraphraser openai:http://127.0.0.1:8000/v1#smollm2``. It implements
only POST /v1/chat/completions (and GET /v1/models), binds to loopback addresses only, and serves
one generation at a time: it exists so the OpenAI path can be tried and tested on a laptop, not to
replace vLLM or llama.cpp's server. Tests start it over canned answers (``Backend`` is any callable
from the request body to the answer text).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mars_core.augment.lm_paraphraser import LMParaphraser, Work
from mars_core.augment.paraphraser import ParaphraseConfig, Row

logger = logging.getLogger(__name__)

Backend = Callable[[dict], str]  # request body -> the assistant's answer


def lm_backend(paraphraser: LMParaphraser) -> Backend:
    """Answers with the in-process model: the request's messages through its chat template."""
    lock = threading.Lock()

    def answer(body: dict) -> str:
        tok = paraphraser.tokenizer
        prompt = tok.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        row = Row(text="", index=0, key="served")
        budget = max(1, min(int(body.get("max_tokens") or 128), paraphraser.config.max_new_tokens))
        with lock:
            paraphraser._decode(Work([ids], [budget], [int(body.get("seed") or 0)], [row]))
        if row.raw is None:
            raise RuntimeError(row.error or "no output")
        return row.raw

    return answer


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
            text = self.backend(body)
        except Exception as err:  # noqa: BLE001 - the client gets a 500 and may retry
            self._send(500, {"error": {"message": f"{type(err).__name__}: {err}"}})
            return
        self._send(200, {
            "id": f"chatcmpl-{time.time_ns()}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", self.model_name),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"completion_tokens": len(text.split())},
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
