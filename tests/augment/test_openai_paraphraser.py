"""The OpenAI-compatible paraphraser against real HTTP servers on 127.0.0.1 (ours, over canned answers).

Each server is mars_core.augment.serve_openai's, started by the test on a free loopback port; the
backends below script what a real server does wrong: a 500 before succeeding, a request that hangs,
a body that is not JSON. Nothing here is mocked below the HTTP socket.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import pytest

from mars_core.augment.openai_paraphraser import OpenAIParaphraser, api_key
from mars_core.augment.paraphraser import ParaphraseConfig
from mars_core.augment.serve_openai import _Handler, make_server
from tests.dict_cache import DictCache

KEY = "sk-test-ZZ-secret-4711"


def source_of(body: dict) -> str:
    """The text to paraphrase: the last user message, after the instruction."""
    return body["messages"][-1]["content"].split("\n\n", 1)[1]


def canned(body: dict) -> str:
    """A chatty small-model answer: preamble, then the source with its sentences in reverse order."""
    sentences = [s.strip() for s in source_of(body).split(".") if s.strip()]
    return "Sure! Here is the paraphrase:\n\n" + ". ".join(reversed(sentences)) + "."


class Server:
    """serve_openai over a backend, in a thread; records requests and the Authorization headers seen."""

    def __init__(self, backend, handler=_Handler) -> None:
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()
        self.release = threading.Event()  # hanging backends wait on this; set at shutdown
        recorder = self

        class Recording(handler):
            def do_POST(self) -> None:  # noqa: N802
                recorder.auth.append(self.headers.get("Authorization"))
                super().do_POST()

        def wrapped(body: dict) -> str:
            with self.lock:
                self.requests.append(body)
                self.inflight += 1
                self.max_inflight = max(self.max_inflight, self.inflight)
            try:
                return backend(body, self)
            finally:
                with self.lock:
                    self.inflight -= 1

        self.server = make_server(wrapped, "127.0.0.1", 0, handler=Recording)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    servers: list[Server] = []

    def start(backend, handler=_Handler) -> Server:
        servers.append(Server(backend, handler))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def client(server: Server, **overrides) -> OpenAIParaphraser:
    min_timeout = overrides.pop("min_timeout", 5.0)
    config = ParaphraseConfig(model=f"openai:{server.url}#canned", **overrides)
    return OpenAIParaphraser(config, backoff_s=0.01, min_timeout_s=min_timeout)


TEXTS = ["Water boils at 100 degrees. It is hot.", "Cats sleep a lot. They like sun.", "Bread needs yeast. Bake it."]


def slow_canned(body: dict, server: Server) -> str:
    time.sleep(0.05)  # long enough for requests to overlap
    return canned(body)


def test_rows_come_back_extracted_in_order_from_concurrent_requests(serve):
    server = serve(slow_canned)
    got = client(server, concurrency=4).paraphrase(TEXTS, 2, seed=0)
    assert got.texts == [["It is hot. Water boils at 100 degrees."] * 2, ["They like sun. Cats sleep a lot."] * 2,
                         ["Bake it. Bread needs yeast."] * 2]
    assert got.generations == 6 and not got.failures and len(server.requests) == 6
    assert 1 < server.max_inflight <= 4, "requests are sent concurrently, at most `concurrency` at once"
    assert got.tokens == sum(len(canned(b).split()) for b in server.requests)  # the server's usage field
    first = server.requests[0]
    assert first["model"] == "canned" and first["messages"][0]["role"] == "system"
    assert len({b["seed"] for b in server.requests}) == 6, "each row asks with its own seed"


def test_a_500_is_retried_with_backoff_and_then_succeeds(serve):
    seen: Counter = Counter()

    def flaky(body: dict, server: Server) -> str:
        seen[source_of(body)] += 1
        if seen[source_of(body)] == 1:
            raise RuntimeError("model not loaded yet")
        return canned(body)

    server = serve(flaky)
    got = client(server).paraphrase(TEXTS[:1], 1, seed=0)
    assert got.texts == [["It is hot. Water boils at 100 degrees."]] and not got.failures
    assert seen[TEXTS[0]] == 2


def test_a_hanging_request_times_out_fails_its_row_only(serve):
    def hangs_on_cats(body: dict, server: Server) -> str:
        if "Cats" in source_of(body):
            server.release.wait(30)
        return canned(body)

    server = serve(hangs_on_cats)
    para = client(server, seconds_per_token=0.001, max_retries=1, min_timeout=0.5)
    started = time.perf_counter()
    got = para.paraphrase(TEXTS, 1, seed=0)
    assert time.perf_counter() - started < 10
    assert got.texts[0] == ["It is hot. Water boils at 100 degrees."] and got.texts[2] == ["Bake it. Bread needs yeast."]
    assert got.texts[1] == [""]
    ((text, why),) = got.failures
    assert text == TEXTS[1] and "gave up after 2 attempts" in why and "within" in why


class Malformed(_Handler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        data = b'{"choices": [ this is not json'
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_malformed_json_is_a_clear_failure_not_a_crash(serve):
    server = serve(lambda body, s: "unused", handler=Malformed)
    got = client(server).paraphrase(TEXTS[:2], 1, seed=0)
    assert got.texts == [[""], [""]] and got.generations == 0
    assert all("malformed answer" in why and server.url in why for _, why in got.failures)
    assert len(server.auth) == 2, "a malformed answer is not retried"


class Refusing(_Handler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(401, {"error": {"message": "invalid api key"}})


def test_a_refused_request_is_not_retried(serve):
    server = serve(lambda body, s: "unused", handler=Refusing)
    got = client(server).paraphrase(TEXTS[:1], 1, seed=0)
    assert "HTTP 401" in got.failures[0][1] and "invalid api key" in got.failures[0][1]
    assert len(server.auth) == 1, "retrying cannot fix a refused key"



def test_rows_are_cached_so_a_second_ask_sends_nothing(serve):
    server = serve(slow_canned)
    para = client(server)
    para.cache = DictCache()
    first = para.paraphrase(TEXTS, 1, seed=3)
    again = para.paraphrase(TEXTS, 1, seed=3)
    assert again.texts == first.texts and again.cache_hits == 3 and len(server.requests) == 3
    para.paraphrase(TEXTS[:1], 1, seed=3, first=1)  # the next row is new work
    assert len(server.requests) == 4


def test_the_api_key_is_sent_but_never_logged_stored_or_named(serve, monkeypatch, caplog, tmp_path):
    from mars_core.store.sqlite import Store

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("MARS_OPENAI_API_KEY", KEY)
    assert api_key() == KEY
    calls: Counter = Counter()

    def flaky(body: dict, server: Server) -> str:
        calls[source_of(body)] += 1
        if calls[source_of(body)] == 1:
            raise RuntimeError("busy")
        return canned(body)

    server = serve(flaky)
    para = client(server)
    store = Store(tmp_path / "runs.db")
    para.cache = store
    with caplog.at_level(logging.DEBUG):
        got = para.paraphrase(TEXTS, 1, seed=0)
    assert not got.failures
    assert set(server.auth) == {f"Bearer {KEY}"}
    assert KEY not in caplog.text and caplog.records, "retries were logged, without the key"
    assert KEY not in para.name and KEY not in repr(para.config)
    assert KEY.encode() not in (tmp_path / "runs.db").read_bytes()


def test_no_key_no_authorization_header(serve, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MARS_OPENAI_API_KEY", raising=False)
    server = serve(slow_canned)
    client(server).paraphrase(TEXTS[:1], 1, seed=0)
    assert server.auth == [None]


def test_the_server_binds_only_to_loopback():
    with pytest.raises(ValueError, match="loopback"):
        make_server(lambda body: "x", "0.0.0.0", 0)


@pytest.mark.slow
def test_a_demo_step_through_the_openai_path_keeps_provenance_and_not_the_key(serve, monkeypatch, tmp_path):
    from mars_core.run.config import DataConfig, RefineConfig, RunConfig
    from mars_core.run.refine import RefinementRun
    from mars_core.store.sqlite import Store

    monkeypatch.setenv("MARS_OPENAI_API_KEY", KEY)
    server = serve(slow_canned)
    config = RunConfig(
        data=DataConfig(source="demo:text", n_pairs=60),
        refine=RefineConfig(epochs=1, budget_per_epoch=6, cross_fit_folds=0),
        paraphrase=ParaphraseConfig(model=f"openai:{server.url}#canned", candidates_per_unit=1, generations_per_unit=2),
    )
    store = Store(tmp_path / "runs.db")
    run = RefinementRun.create(store, config)
    outcome = run.step()
    m = outcome.metrics
    assert m["paraphrases_requested"] == 6 and m["paraphrases_generated"] == len(server.requests) >= 6
    records = store.get_paraphrases(run.run_id)
    assert len(records) == m["paraphrases_generated"]
    assert {r.model for r in records} == {run.runtime.paraphraser.name}
    assert records[0].model.startswith(f"openai:{server.url}#canned|")
    assert run.budget_spent() == m["paraphrases_kept"]
    assert KEY.encode() not in (tmp_path / "runs.db").read_bytes()


def test_a_selection_sends_a_units_retry_while_another_units_request_is_still_out(serve):
    """Streaming over HTTP: the first unit's only candidate fails the filters and its retry is sent at once,
    while the second unit's request is still at the server. In rounds the retry would wait for that request."""
    from mars_core.augment.filters import FilterConfig
    from mars_core.augment.selection import select_paraphrases
    from tests.augment.test_selection import CLOSE, OFF, SRC, BagOfWordsEncoder, request

    slow_src = "the old dog barked at the mailman every single morning"
    retry_sent = threading.Event()
    seen: Counter = Counter()
    slow_saw_the_retry: list[bool] = []

    def backend(body: dict, server: Server) -> str:
        text = source_of(body)
        seen[text] += 1
        if text == slow_src:
            slow_saw_the_retry.append(retry_sent.wait(5))  # answers once the retry arrived, or after 5 s
            return "the old dog barked at the mailman every morning"
        if seen[text] == 1:
            return OFF  # too far from the source: filtered, so the unit asks again
        retry_sent.set()
        return CLOSE

    server = serve(backend)
    requests = [request(SRC, "p1"), request(slow_src, "p2")]
    got = select_paraphrases(client(server, concurrency=4), requests, [1, 1], BagOfWordsEncoder(), FilterConfig(),
                             1, 3, seed=0)
    assert slow_saw_the_retry == [True], "the retry went out while the slow request was in flight"
    assert sorted(c.text for c in got.kept) == sorted([CLOSE, "the old dog barked at the mailman every morning"])
    assert (got.generations, got.rounds, got.requested_rows, len(server.requests)) == (3, 2, 3, 3)
    assert not got.failures and server.max_inflight <= 4
