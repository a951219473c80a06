"""Shared by the AppTest suites."""

from __future__ import annotations

import pytest

from mars_core.run.refine import RefinementRun
from mars_core.store.sqlite import Store
from tests.ui.toy_runs import toy_config


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A real 2-D toy run at epoch 0 in a fresh store, which the app opens (MARS_DB)."""
    store = Store(tmp_path / "ui.db")
    run = RefinementRun.create(store, toy_config(), name="toy under test")
    monkeypatch.setenv("MARS_DB", str(store.path))
    return store, run.run_id


@pytest.fixture(autouse=True)
def navigation_like_the_server(monkeypatch):
    """Keep Streamlit's legacy pages/ mode off between runs, as the server does; returns the unpinned __init__.

    A server process leaves that mode for good at its first st.navigation call. AppTest instead
    resets it before every run, so every run would start in it: a switched-to page would run on
    its own, leave the mode (page_frame) and rerun through app.py, and the rerun drops the click
    being tested. The one test of that first-run path unpins it.
    """
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)
    return original
