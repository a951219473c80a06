"""A Step belongs to the server, not to the tab: click Step, close the tab, and the epoch is still stored;
a tab opened meanwhile shows the running job's progress and cannot start a second one on the same run.

A real `streamlit run app.py` and a real headless Chromium, on a text run whose paraphraser is a loopback
OpenAI-compatible server that holds its answers until the test releases them: the Step cannot end while the test
looks at it, however fast or loaded the machine (a 60,000-pair toy Step once ended between two checks in CI).
"""

from __future__ import annotations

import time

import pytest

from mars_core.augment.paraphraser import ParaphraseConfig
from mars_core.run.config import DataConfig, RefineConfig, RunConfig
from mars_core.run.refine import RefinementRun
from mars_core.store.sqlite import Store
from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, browser, streamlit_server  # noqa: F401 (fixture)
from tests.hostile.servers import HostileServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture(scope="module")
def held_step(tmp_path_factory):
    db = tmp_path_factory.mktemp("outlive") / "mars.db"
    with HostileServer("held") as paraphraser:
        config = RunConfig(data=DataConfig(source="demo:text", n_pairs=40),
                           refine=RefineConfig(cross_fit_folds=0, budget_per_epoch=4, epochs=3),
                           # a held request is waited for, not timed out and retried (the Step's 600 s deadline holds)
                           paraphrase=ParaphraseConfig(model=paraphraser.spec(), seconds_per_token=60.0))
        run = RefinementRun.create(Store(db), config, name="a Step held at its paraphraser")
        with streamlit_server(db, "streamlit-outlive.log") as url:
            yield url, db, run.run_id, paraphraser


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_step_then_close_the_tab_and_the_epoch_is_stored(held_step, browser):  # noqa: F811
    from playwright.sync_api import expect

    url, db, run_id, paraphraser = held_step
    store = Store(db)
    first = browser.new_page(viewport={"width": 1400, "height": 1000})
    first.goto(f"{url}/margins?run={run_id}")
    step = first.get_by_test_id("stSidebar").get_by_role("button", name="Step", exact=True)
    expect(step).to_be_enabled(timeout=120_000)
    step.click()
    _wait(lambda: (lock := store.step_lock(run_id)) is not None and lock.alive, 60, "the step to take its lock")
    first.close()  # the tab goes away mid-step (the job may still be loading its models)
    _wait(lambda: paraphraser.requests > 0, 300, "the step to ask its paraphraser")  # now it waits on the test
    assert store.epochs(run_id) == [0], "the step was still running when the tab closed"

    second = browser.new_page(viewport={"width": 1400, "height": 1000})
    second.goto(f"{url}/budget?run={run_id}")  # any page, in a new session
    sidebar = second.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("one epoch:").first).to_be_visible(timeout=60_000)  # the job's progress
    expect(sidebar.get_by_text("Another tab started this step")).to_be_visible()
    # The page's widgets draw while the job runs. Their code loads lazily (React Suspense: grey placeholders,
    # stSkeleton, until then). When the page followed the job in a blocking loop its script stayed "running", the
    # running-man icon updated React state every 200 ms and starved the Suspense retries: under 2 busy loops on
    # the 2 cores the placeholders stayed 9 s to over 180 s. Following from a fragment (job_progress.follow)
    # leaves the script idle between redraws: 7-8 s under the same load.
    expect(sidebar.get_by_test_id("stSkeleton")).to_have_count(0, timeout=90_000)
    # one job per run: both step buttons disabled
    expect(sidebar.get_by_role("button", name="Run 3 epochs")).to_be_disabled(timeout=30_000)
    expect(sidebar.get_by_role("button", name="Step", exact=True)).to_be_disabled(timeout=30_000)
    second.screenshot(path=str(ARTIFACTS / "10-progress-after-the-tab-closed.png"), full_page=True)
    assert store.epochs(run_id) == [0]

    paraphraser.release()
    _wait(lambda: store.epochs(run_id) == [0, 1], 600, "epoch 1 to be stored")
    _wait(lambda: store.step_lock(run_id) is None, 60, "the step lock to be released")
    expect(sidebar.get_by_text("1 / 3")).to_be_visible(timeout=60_000)  # the open tab reran when it ended
    second.close()

    third = browser.new_page(viewport={"width": 1400, "height": 1000})  # reopen: the epoch is there
    third.goto(f"{url}/margins?run={run_id}")
    expect(third.get_by_test_id("stSidebar").get_by_text("1 / 3")).to_be_visible(timeout=60_000)
    expect(third.get_by_role("heading", name="Epoch 1")).to_be_visible(timeout=60_000)
    assert not third.get_by_test_id("stException").count()
    third.close()
