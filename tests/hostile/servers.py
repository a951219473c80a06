"""Misbehaving HTTP servers on 127.0.0.1 for the hostile suite: real sockets, bounded loops, nothing mocked.

One ``HostileServer`` listens on a free loopback port and treats each connection by its current ``mode``
(switchable, so a test can "bring the server back" at the same address):

- ``silent``: reads the request and never answers (holds the connection until the server closes);
- ``reset``: reads the request and resets the connection (RST);
- ``slow``: answers 200 with a Content-Length, then trickles the body one byte every half second;
- ``echo``: answers 401, 429, 500 in turn, echoing the request's Authorization header (the API key) in the
  body and in response headers;
- ``echo-ok``: answers 200 with a chat completion whose text contains the key;
- ``ok``: answers 200 with a chat completion (the source's sentences in reverse order);
- ``delay``: like ``ok``, after ``delay_s`` seconds;
- ``held``: like ``ok``, once the test calls ``release()`` (a Step that cannot end before the test lets it);
- ``junk``: answers 200 with an unrelated sentence (which the filters reject: a result, not a failure).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

MODES = ("silent", "reset", "slow", "echo", "echo-ok", "ok", "delay", "held", "junk")
ECHO_STATUSES = (401, 429, 500)


def paraphrase_of(body: dict) -> str:
    source = body["messages"][-1]["content"].split("\n\n", 1)[-1]
    sentences = [s.strip() for s in source.split(".") if s.strip()]
    return ". ".join(reversed(sentences)) + "." if sentences else source


class HostileServer:
    def __init__(self, mode: str = "silent", delay_s: float = 2.0) -> None:
        if mode not in MODES:
            raise ValueError(mode)
        self.mode, self.delay_s = mode, delay_s
        self.requests = 0
        self._echo_turn = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._released = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def spec(self, model: str = "hostile") -> str:
        return f"openai:{self.url}#{model}"

    def release(self) -> None:
        """Answer the requests a ``held`` server holds, and every later one at once."""
        self._released.set()

    def close(self) -> None:
        self._stop.set()
        self._released.set()
        self._thread.join(5)
        for conn in list(self._conns):
            _close(conn)
        self._sock.close()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- serving -------------------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(1.0)
        try:
            headers, body = _read_request(conn, self._stop)
            if headers is None:
                return
            with self._lock:
                self.requests += 1
            mode = self.mode
            if mode == "silent":
                self._stop.wait(120)  # bounded: the server's close ends it
            elif mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif mode == "slow":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n")
                for _ in range(400):
                    if self._stop.wait(0.5):
                        break
                    conn.sendall(b" ")
            elif mode == "echo":
                with self._lock:
                    status = ECHO_STATUSES[self._echo_turn % len(ECHO_STATUSES)]
                    self._echo_turn += 1
                auth = headers.get("authorization", "")
                payload = json.dumps({"error": {"message": f"invalid key: {auth} ({auth.split()[-1]})"}})
                _send(conn, status, payload, {"WWW-Authenticate": auth, "X-Echo-Key": auth.split()[-1]})
            else:
                if mode == "delay":
                    self._stop.wait(self.delay_s)
                if mode == "held":
                    self._released.wait(600)  # bounded: release() or the server's close ends it
                request = json.loads(body or b"{}")
                text = paraphrase_of(request)
                if mode == "junk":
                    text = "Bananas are yellow and the moon is far away from here."
                if mode == "echo-ok":
                    text += " " + headers.get("authorization", "").split()[-1]
                _send(conn, 200, json.dumps({
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                    "usage": {"completion_tokens": len(text.split())}}), {})
        except (OSError, ValueError):
            pass
        finally:
            _close(conn)


def _read_request(conn: socket.socket, stop: threading.Event) -> tuple[dict[str, str] | None, bytes]:
    data = b""
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in data:
        if stop.is_set() or time.monotonic() > deadline:
            return None, b""
        try:
            piece = conn.recv(65536)
        except TimeoutError:
            continue
        if not piece:
            return None, b""
        data += piece
    head, body = data.split(b"\r\n\r\n", 1)
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length and time.monotonic() < deadline:
        try:
            piece = conn.recv(65536)
        except TimeoutError:
            continue
        if not piece:
            break
        body += piece
    return headers, body


def _send(conn: socket.socket, status: int, payload: str, headers: dict[str, str]) -> None:
    data = payload.encode()
    lines = [f"HTTP/1.1 {status} X", "Content-Type: application/json", f"Content-Length: {len(data)}",
             "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)


def _close(conn: socket.socket) -> None:
    try:
        conn.close()
    except OSError:
        pass
