"""Following a background job (mars_core.run.jobs) from a page: one progress box, redrawn by a fragment.

The job runs in the server's thread whatever happens to the tab; this only draws where it is. The redraws come
from an ``st.fragment(run_every=...)``, so between them the page's script is not running. (A blocking follow
kept it running for the whole job: Streamlit's running-man icon then updates the page every 200 ms, and on busy
cores those updates starved the lazily loaded widgets, which stayed grey placeholders for seconds to minutes.)
A tab that closes asks for no more redraws; a click elsewhere reruns the page, which follows again.
"""

from __future__ import annotations

import streamlit as st

from mars_core.present.safe_markdown import escape_markdown
from mars_core.run.jobs import Job, JobRunner


@st.cache_resource(show_spinner=False)
def job_runner() -> JobRunner:
    """This server process's jobs, shared by every session (a job outlives the tab that started it)."""
    return JobRunner()


# While a job is followed the page holds still: Streamlit's spinners and transitions kept a headless Chromium
# at ~15 % of a core, and on 2 shared cores that slowed the Step's generation by ~10 % (bench/app.py step).
STILL = "<style>*, *::before, *::after { animation: none !important; transition: none !important; }</style>"


def follow(job: Job, interval: float = 2.0) -> None:
    """Show the job's progress now and every ``interval`` s until it ends, then rerun the page so it shows what
    the job stored. Returns at once: the rest of the page draws, and stays usable, meanwhile.

    Every redraw is a script run and delays the widgets still loading, hence 2 s, not 1 (measured in
    docs/results.md, round 9)."""
    st.html(STILL)  # gone with the rerun that ends the follow
    st.fragment(_progress, run_every=interval)(job)


def _progress(job: Job) -> None:
    if not job.running:
        st.rerun()  # the whole page, not just this fragment
    text = escape_markdown(job.label())
    with st.status(text, expanded=True):
        st.progress(job.fraction(), text=text)


def report(job: Job, what: str) -> None:
    """How a finished job ended: its error, warning or message (the outcome itself is the caller's to show)."""
    if job.error:
        st.error(escape_markdown(f"The {what} failed: {job.error}"))
    if job.warning:
        st.warning(escape_markdown(job.warning))
    if job.message:
        st.info(escape_markdown(job.message))
