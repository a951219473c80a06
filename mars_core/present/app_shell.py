"""What every page shares: the store, the selected run, the page frame, epoch pickers and notices.

Session-state conventions the pages rely on:
  st.session_state["db_path"]  the store's path (default: env MARS_DB or runs/mars.db)
  st.session_state["run_id"]   the selected run's id, or None when the store has no runs
The selected run is also kept in the address (?run=N), so any page's URL can be bookmarked and shared.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import get_script_run_ctx

from mars_core.run.config import RunConfig
from mars_core.store.sqlite import Store

DEFAULT_DB = "runs/mars.db"
PAGES_DIR = Path(__file__).resolve().parents[2] / "pages"


# -- store and run selection ---------------------------------------------------------------------------
def db_path() -> str:
    if not st.session_state.get("db_path"):
        st.session_state["db_path"] = os.environ.get("MARS_DB", DEFAULT_DB)
    return str(st.session_state["db_path"])


@st.cache_resource(show_spinner=False)
def _open_store(path: str) -> Store:
    return Store(path)


def get_store() -> Store:
    """The store at st.session_state["db_path"] (one Store object per path per process)."""
    return _open_store(db_path())


def current_run_id() -> int | None:
    """The selected run: a new ?run= in the address, else session state, else the first run; None if none."""
    ids = [r.id for r in get_store().list_runs()]
    wanted = st.session_state.get("run_id")
    query = st.query_params.get("run")
    if query is not None and query != st.session_state.get("_query_run_applied"):
        st.session_state["_query_run_applied"] = query
        if query.isdigit():
            wanted = int(query)
    if wanted not in ids:
        wanted = ids[0] if ids else None
    st.session_state["run_id"] = wanted
    if wanted is not None and query != str(wanted):  # page switches drop the query: put it back
        st.session_state["_query_run_applied"] = str(wanted)
        st.query_params["run"] = str(wanted)
    return wanted


def select_run(run_id: int | None) -> None:
    st.session_state["run_id"] = run_id


def run_config(store: Store, run_id: int) -> RunConfig:
    return RunConfig.from_dict(store.get_run(run_id).config)


def session_id() -> str:
    """This browser session's token (step jobs remember who started them)."""
    if "_session_token" not in st.session_state:
        st.session_state["_session_token"] = os.urandom(8).hex()
    return st.session_state["_session_token"]


@st.cache_resource(show_spinner=False)
def process_lock(name: str) -> threading.Lock:
    """A lock shared by every session of this server process."""
    return threading.Lock()


# -- the frame around every page -------------------------------------------------------------------------
_FRAME = threading.local()  # set while app.py draws a page; each session's script runs in one thread


@contextmanager
def app_frame() -> Iterator[None]:
    """app.py runs the page inside this, after drawing the sidebar."""
    _FRAME.active = True
    try:
        yield
    finally:
        _FRAME.active = False


def _run_inside_the_app() -> None:
    """Make sure this page is shown inside app.py's navigation and sidebar.

    With a pages/ folder beside app.py, Streamlit starts every server process (and every AppTest
    run) in its legacy multipage mode until the first st.navigation call, and in that mode a deep
    link such as /pairs runs the page file on its own. End that mode, as st.navigation itself does,
    and rerun: app.py then runs and shows this same page (same url_path) in the frame.
    """
    if getattr(_FRAME, "active", False):
        return
    if not _started_from_app():
        st.error("This is one page of MARS Explorer, not the app. Start the app from the project folder with "
                 "`make run` or `streamlit run app.py`, then open this page from its sidebar.")
        st.stop()
    PagesManager.uses_pages_directory = False
    st.rerun()


def _started_from_app() -> bool:
    """False when the server's main script is a page file itself (`streamlit run pages/x.py`): leaving the
    legacy mode and rerunning would then run that same page again, forever."""
    ctx = get_script_run_ctx()
    return ctx is None or Path(ctx.main_script_path).resolve().parent != PAGES_DIR


class PageFrame(NamedTuple):
    """What a page starts from: the store, the selected run and that run's finished epochs (unpackable)."""

    store: Store
    run_id: int | None
    epochs: list[int]  # finished epochs; [] when there is no run or none finished (a notice said so)


def page_frame(title: str, caption: str | None = None, *, epochs: bool = True) -> PageFrame:
    """The first line of every page: title, caption, store and run; with epochs=True, a notice if none."""
    _run_inside_the_app()
    st.title(title)
    if caption:
        st.caption(caption)
    store = get_store()
    run_id = current_run_id()
    if epochs:
        done = epochs_or_notice(store, run_id)
    else:
        done = store.epochs(run_id) if run_id is not None else []
    return PageFrame(store, run_id, done)


# -- notices and pickers -----------------------------------------------------------------------------------
def no_run_notice() -> None:
    st.info("No run is selected. Create one in the sidebar (New run) or on the Data page.")


def epochs_or_notice(store: Store, run_id: int | None) -> list[int]:
    """The run's finished epochs, or [] after telling the user why there is nothing to show."""
    if run_id is None:
        no_run_notice()
        return []
    done = store.epochs(run_id)
    if not done:
        st.info("This run has no finished epoch yet.")
    return done


def epoch_picker(epochs: list[int], key: str, label: str = "Epoch") -> int:
    """A slider over the finished epochs that jumps to the newest one whenever a step adds it.

    The choice lives in our own session key: Streamlit drops or resets a widget's state when the
    user visits another page, and a step adds an option; the widget key carries the newest epoch
    so a new epoch always gets a fresh slider.
    """
    latest = epochs[-1]
    chosen, seen = f"{key}__chosen", f"{key}__latest"
    if st.session_state.get(seen) != latest or st.session_state.get(chosen) not in epochs:
        st.session_state[chosen] = latest
        st.session_state[seen] = latest
    if len(epochs) == 1:
        st.caption(f"{label} {latest} (the only finished epoch so far)")
        return latest
    value = int(st.select_slider(label, options=epochs, value=st.session_state[chosen], key=f"{key}__{latest}"))
    st.session_state[chosen] = value
    return value
