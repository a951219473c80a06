"""The OpenAI-compatible paraphraser against servers that never answer, trickle, reset, or echo the API key.

Every server is a real socket on 127.0.0.1 (tests/hostile/servers.py); every wait is bounded. Proves: a stalled
server costs at most the Step's deadline; per-request limits are sized for one paraphrase; retries and failures
show at WARNING and in the progress line; a paraphraser that failed is never stored as a finished epoch (the CLI
says why, exits non-zero, and the epoch can be retried); the key echoed in 401/429/500 bodies, headers and even
answers reaches no log, progress line, error, store or export.
"""

from __future__ import annotations

import io
import json
import logging
import time

import pytest

from mars_core.augment.filters import FilterConfig, ParaphraseRequest
from mars_core.augment.openai_paraphraser import OpenAIParaphraser
from mars_core.augment.paraphraser import ParaphraseConfig
from mars_core.augment.remote import remote_work
from mars_core.augment.selection import (
    ParaphraserFailed,
    Selection,
    check_paraphrase_failures,
    select_paraphrases,
)
from mars_core.cli.main import main
from mars_core.redaction import install_log_filter, redact
from mars_core.run.jobs import Job, JobRunner
from mars_core.store.sqlite import Store
from tests.hostile.conftest import KEY

TEXTS = ["Water boils at 100 degrees. It is hot.", "Cats sleep a lot. They like sun.", "Bread needs yeast. Bake it."]
DEMO_RUN = ["--data", "demo", "--pairs", "40", "--folds", "0", "--budget", "4", "--remote-deadline", "30"]


def client(server, min_timeout: float = 0.5, backoff: float = 0.05, **settings) -> OpenAIParaphraser:  # noqa: ANN001
    return OpenAIParaphraser(ParaphraseConfig(model=server.spec(), **settings), backoff_s=backoff,
                             min_timeout_s=min_timeout)


class Details:
    """A progress callback that keeps every detail text it is given."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, stage: str, done: int, total: int, detail: str = "") -> None:
        self.texts.append(detail)


def test_a_silent_server_costs_at_most_the_steps_deadline(hostile):
    server = hostile("silent")
    para = client(server, min_timeout=60.0, max_retries=3)  # each request alone could wait a minute
    started = time.monotonic()
    with remote_work(1.5):
        got = para.paraphrase(TEXTS, 2, seed=0)
    assert time.monotonic() - started < 5
    assert got.texts == [["", ""]] * 3 and got.generations == 0
    assert len(got.failures) == 6 and all("--remote-deadline" in why for _, why in got.failures)


def test_the_request_limit_is_sized_for_one_paraphrase_not_for_all_requests_in_flight(hostile):
    server = hostile("silent")
    one, eight = (client(server, min_timeout=10.0, concurrency=c) for c in (1, 8))
    assert one.request_timeout(256) == eight.request_timeout(256) == 0.5 * 256
    assert one.request_timeout(8) == 10.0, "a short request still gets the floor"
    para = client(server, min_timeout=0.3, seconds_per_token=0.001, max_retries=1, concurrency=8)
    started = time.monotonic()
    with remote_work(60):
        got = para.paraphrase(TEXTS, 1, seed=0)
    assert time.monotonic() - started < 5, "2 attempts of 0.3 s each, not minutes"
    assert all("gave up after 2 attempts" in why and "within 0.3 s" in why for _, why in got.failures)


def test_resets_are_retried_and_every_failure_shows_at_warning_and_in_the_progress(hostile, caplog):
    server = hostile("reset")
    details = Details()
    with caplog.at_level(logging.WARNING, logger="mars_core"), remote_work(30, details):
        got = client(server, max_retries=2).paraphrase(TEXTS, 1, seed=0)
    assert server.requests == 3 * len(TEXTS), "each row tried 3 times"
    assert all("gave up after 3 attempts" in why and "connection" in why for _, why in got.failures)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("retrying" in w for w in warnings) == 2 * len(TEXTS)
    assert any("request failed (attempt 1 of 3): connection lost; retrying" in d for d in details.texts)
    assert "3 of 3 requests failed" in details.texts[-1]


def test_a_body_trickled_slower_than_the_limit_times_out(hostile):
    server = hostile("slow")
    started = time.monotonic()
    with remote_work(30):
        got = client(server, min_timeout=1.0, seconds_per_token=0.001, max_retries=0).paraphrase(TEXTS[:1], 1, seed=0)
    assert time.monotonic() - started < 5
    ((_, why),) = got.failures
    assert "no answer" in why and "within 1.0 s" in why


def test_the_key_echoed_in_401_429_500_bodies_headers_and_answers_leaks_nowhere(hostile, monkeypatch, caplog,
                                                                                   tmp_path):
    monkeypatch.setenv("MARS_OPENAI_API_KEY", KEY)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    install_log_filter()
    details = Details()
    try:
        echo = hostile("echo")
        with caplog.at_level(logging.WARNING), remote_work(30, details):
            got = client(echo, max_retries=2).paraphrase(TEXTS * 2, 1, seed=0)
        assert echo.requests >= 3, "401, 429 and 500 were all answered"
        assert got.failures and all(KEY not in why for _, why in got.failures)
        assert any("[redacted]" in why for _, why in got.failures), "the echo reached us, redacted"
        store = Store(tmp_path / "cache.db")
        answering = OpenAIParaphraser(ParaphraseConfig(model=hostile("echo-ok").spec()), cache=store)
        answer = answering.paraphrase(TEXTS[:1], 1, seed=0)
        assert "[redacted]" in answer.texts[0][0] and KEY not in answer.texts[0][0]
    finally:
        logging.getLogger().removeHandler(handler)
    for where, text in (("log", stream.getvalue()), ("caplog", caplog.text), ("progress", "\n".join(details.texts))):
        assert KEY not in text, f"the key reached the {where}"
    assert "[redacted]" in stream.getvalue()
    for path in tmp_path.iterdir():  # the store, its WAL: the cached answer holds no key
        assert KEY.encode() not in path.read_bytes(), path


def test_redaction_covers_the_configured_key_bearer_tokens_and_sk_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "plain-key-without-shape-42")
    text = redact("a plain-key-without-shape-42 b; Authorization: Bearer abc.DEF-123_xyz; key sk-proj-AbC123xyz987")
    assert text == "a [redacted] b; Authorization: Bearer [redacted]; key [redacted]"
    assert redact("ski-lift sk-a and a skein") == "ski-lift sk-a and a skein", "ordinary words stay"


def test_a_paraphraser_that_failed_completely_is_not_stored_and_the_epoch_can_be_retried(hostile, tmp_path, capsys):
    server = hostile("reset")
    db = tmp_path / "runs.db"
    code = main(["run", *DEMO_RUN, "--epochs", "1", "--paraphraser", server.spec(), "--db", str(db)])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "epoch 1 not stored: the paraphraser failed on" in err and "every one" in err and "--resume 1" in err
    store = Store(db, read_only=True)
    assert store.last_epoch(1) == 0 and store.step_lock(1) is None
    server.mode = "ok"  # the server comes back at the same address: the same run continues
    code = main(["run", "--resume", "1", "--epochs", "1", "--db", str(db)])
    out = capsys.readouterr()
    assert code == 0, out.err
    metrics = store.get_epoch(1, 1).metrics
    assert metrics["paraphrase_failures"] == 0 and metrics["paraphrases_generated"] > 0


def test_failure_above_the_threshold_is_refused_and_filter_rejections_are_not_failures(hostile, text_encoder):
    partial = Selection(candidates=[], requested_rows=10, failures=[("t", "timeout")] * 4)
    check_paraphrase_failures(partial, 0.5)  # 40% failed: under the default limit, the epoch stands
    with pytest.raises(ParaphraserFailed, match="4 of 10 requested rows .*40%, above the limit of 30%"):
        check_paraphrase_failures(partial, 0.3)
    with pytest.raises(ParaphraserFailed, match="every one"):
        check_paraphrase_failures(Selection(candidates=[], requested_rows=3, failures=[("t", "x")] * 3), 1.0)
    # a server whose answers are off topic: every candidate is filtered, none failed -> a result
    server = hostile("junk")
    single = ["Water boils at one hundred degrees", "Cats sleep a lot in the sun"]
    requests = [ParaphraseRequest(f"p{i}", "chosen", t, "Something else entirely.", "Q?") for i, t in enumerate(single)]
    with remote_work(30):
        selection = select_paraphrases(client(server), requests, [1, 1], text_encoder, FilterConfig(), 1, 2, seed=0)
    assert selection.generations > 0 and not selection.kept and not selection.failures
    check_paraphrase_failures(selection, 0.0)


def test_a_jobs_error_and_progress_pass_through_redaction(monkeypatch):
    monkeypatch.setenv("MARS_OPENAI_API_KEY", KEY)
    job = Job("test:redaction", "redaction")

    def body(job: Job) -> None:
        job.progress("paraphrasing", 1, 2, f"HTTP 401: bad key {KEY}")
        raise RuntimeError(json.dumps({"error": f"Bearer {KEY}"}))

    JobRunner().start(job, body).thread.join(10)
    assert KEY not in job.detail and KEY not in (job.error or "") and "[redacted]" in job.error
