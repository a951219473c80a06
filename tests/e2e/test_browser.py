"""The app in a real headless Chromium: first launch on a fresh store, one Step with the real models, Margins.

Starts `streamlit run app.py` on a free port with MARS_DB pointing to an empty store, so the app
builds the text demo (packaged MiniLM + SmolLM2) and the toy on launch, exactly as `make run` does.
Screenshots and the measured Step time go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mars_core.run.config import DataConfig, RefineConfig, RunConfig
from mars_core.run.refine import RefinementRun
from mars_core.store.sqlite import Store
from tests.ui.hostile_run import SCRIPT, create_hostile_run

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
FIRST_LAUNCH_S = 300  # build both demo runs: load the models, encode 500 pairs, fit epoch 0 (~1 min idle)
STEP_S = 660  # one text-demo epoch (32 generations): under a minute alone on 2 cores, ~7.5 min when they are shared

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(FIRST_LAUNCH_S + STEP_S + 300),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed (CI installs it)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout} s")


@contextmanager
def streamlit_server(db: Path, log_name: str) -> Iterator[str]:
    """`streamlit run app.py` on a free port with MARS_DB=db, as `make run` starts it; yields its URL."""
    port = _free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = (ARTIFACTS / log_name).open("w")
    env = {**os.environ, "MARS_DB": str(db), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("e2e") / "mars.db"
    with streamlit_server(db, "streamlit.log") as url:
        yield url, db


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory):
    """A fresh server on a store that already holds a toy run (no model to load), not yet visited."""
    db = tmp_path_factory.mktemp("e2e-urls") / "mars.db"
    config = RunConfig(data=DataConfig(source="demo:toy", n_pairs=80),
                       refine=RefineConfig(cross_fit_folds=0, budget_per_epoch=16, epochs=3))
    run = RefinementRun.create(Store(db), config, name="toy for addresses")
    run.step()
    with streamlit_server(db, "streamlit-urls.log") as url:
        yield url, run.run_id


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_first_launch_step_then_margins_shows_epoch_1(server, browser):
    from playwright.sync_api import expect

    url, db = server
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)

    sidebar = page.get_by_test_id("stSidebar")
    step = sidebar.get_by_role("button", name="Step", exact=True)
    launch_start = time.monotonic()
    expect(step).to_be_enabled(timeout=FIRST_LAUNCH_S * 1000)
    first_launch_s = time.monotonic() - launch_start
    expect(sidebar.get_by_text("0 / 3")).to_be_visible()
    store = Store(db)
    runs = store.list_runs()
    assert [r.config["data"]["source"] for r in runs] == ["demo:text", "demo:toy"]
    expect(page.get_by_role("heading", name="Epoch 0")).to_be_visible(timeout=30_000)
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "01-first-launch.png"), full_page=True)

    start = time.monotonic()
    step.click()
    expect(sidebar.get_by_text("Epoch 1 done")).to_be_visible(timeout=STEP_S * 1000)
    step_s = time.monotonic() - start
    assert store.epochs(runs[0].id) == [0, 1]
    expect(sidebar.get_by_text("1 / 3")).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "02-after-step.png"), full_page=True)

    page.get_by_role("link", name="Budget").click()
    expect(page.get_by_role("heading", name="Epoch 1: the allocation in force")).to_be_visible(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "03-budget.png"), full_page=True)

    page.get_by_role("link", name="Margins").click()
    expect(page.get_by_role("heading", name="Epoch 1")).to_be_visible(timeout=60_000)
    expect(page.locator(".js-plotly-plot").first.get_by_text("epoch 1")).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "04-margins-epoch-1.png"), full_page=True)

    for name, shot in (("Curvature", "05-curvature.png"), ("Pairs", "06-pairs.png")):
        page.get_by_role("link", name=name).click()
        expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible(timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    assert not page.get_by_test_id("stException").count()

    metrics = store.get_epoch(runs[0].id, 1).metrics
    timing = {"first_launch_s": round(first_launch_s, 1), "step_in_browser_s": round(step_s, 1),
              "stage_seconds": metrics["stage_seconds"], "paraphrases_generated": metrics["paraphrases_generated"],
              "pairs_added": metrics["pairs_added"]}
    (ARTIFACTS / "e2e-timing.json").write_text(json.dumps(timing, indent=2))
    print(json.dumps(timing))
    assert not dialogs
    page.close()


def test_hostile_text_stays_text_in_the_browser(server, browser):
    from playwright.sync_api import expect

    url, db = server
    run_id = create_hostile_run(Store(db))
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{url}/pairs?run={run_id}")
    expect(page.get_by_role("heading", name="1 synthetic pairs")).to_be_visible(timeout=120_000)
    main = page.get_by_test_id("stMain")
    expect(main.get_by_text(SCRIPT).first).to_be_visible()
    expect(main.get_by_text("**bold**").first).to_be_visible()
    assert main.locator("script").count() == 0 and main.locator("img[src=x]").count() == 0
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "07-hostile-pairs.png"), full_page=True)
    assert not dialogs, dialogs
    page.close()


PAGE_HEADINGS = {"margins": "Margins", "data": "Data", "budget": "Budget", "curvature": "Curvature",
                 "pairs": "Pairs", "review": "Review paraphrases", "teach": "Teach: MARS in two dimensions"}


def test_every_page_has_its_own_address_that_keeps_the_run(toy_server, browser):
    """Opening /margins (the server's very first request) or any other page's address shows that page.

    Before every page had its own url_path, Margins was the default page and lived only at the
    root: /margins said "Page not found".
    """
    from playwright.sync_api import expect

    url, run_id = toy_server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    for name, heading in PAGE_HEADINGS.items():
        page.goto(f"{url}/{name}?run={run_id}")
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=60_000)
        expect(page.get_by_test_id("stSidebar").get_by_text("1 / 3")).to_be_visible(timeout=30_000)
        assert not page.get_by_text("Page not found").count(), name
        assert page.url.endswith(f"/{name}?run={run_id}"), page.url
    page.screenshot(path=str(ARTIFACTS / "08-teach-by-address.png"), full_page=True)

    page.goto(url)  # the root shows Margins at its own address
    expect(page.get_by_role("heading", name="Margins", exact=True)).to_be_visible(timeout=60_000)
    page.wait_for_url(f"{url}/margins?run={run_id}", timeout=30_000)
    page.get_by_role("link", name="Budget").click()
    expect(page.get_by_role("heading", name="Budget", exact=True)).to_be_visible(timeout=60_000)
    page.wait_for_url(f"{url}/budget?run={run_id}", timeout=30_000)
    assert not page.get_by_test_id("stException").count()
    page.close()
