"""Following a background job (mars_core.run.jobs) from a page: one progress box, one poll loop for every job.

The job runs in the server's thread whatever happens to the tab; this only draws where it is. Between redraws
the script thread sleeps (no GIL held), so following costs the job nothing; a click elsewhere ends the follow
(Streamlit reruns the script) and the next run of the page follows again.
"""

from __future__ import annotations

import time

import streamlit as st

from mars_core.present.safe_markdown import escape_markdown
from mars_core.run.jobs import Job, JobRunner, wait_for


@st.cache_resource(show_spinner=False)
def job_runner() -> JobRunner:
    """This server process's jobs, shared by every session (a job outlives the tab that started it)."""
    return JobRunner()


# While a job is followed the page holds still: Streamlit's spinners and transitions kept a headless Chromium
# at ~15 % of a core, and on 2 shared cores that slowed the Step's generation by ~10 % (bench/app.py step).
STILL = "<style>*, *::before, *::after { animation: none !important; transition: none !important; }</style>"


def follow(job: Job, interval: float = 1.0, keepalive_s: float = 5.0) -> None:
    """Draw the job's progress until it ends, then rerun the page so it shows what the job stored.

    A redraw goes to the browser only when the progress changed (or every ``keepalive_s``, which is also how
    a closed tab's script learns it can stop): each one costs the server and the browser CPU that a Step
    running beside them on the same cores would otherwise have."""
    st.html(STILL)  # gone with the rerun that ends the follow
    with st.status(escape_markdown(job.label()), expanded=True) as status:
        bar = st.progress(job.fraction(), text=escape_markdown(job.label()))
        shown: list = [None, 0.0]  # (text, fraction) last sent, when

        def tick(job: Job) -> None:
            text, fraction, now = escape_markdown(job.label()), job.fraction(), time.monotonic()
            if shown[0] == (text, round(fraction, 3)) and now - shown[1] < keepalive_s:
                return
            shown[:] = [(text, round(fraction, 3)), now]
            bar.progress(fraction, text=text)
            status.update(label=text)

        wait_for(job, tick, interval)
    st.rerun()


def report(job: Job, what: str) -> None:
    """How a finished job ended: its error, warning or message (the outcome itself is the caller's to show)."""
    if job.error:
        st.error(escape_markdown(f"The {what} failed: {job.error}"))
    if job.warning:
        st.warning(escape_markdown(job.warning))
    if job.message:
        st.info(escape_markdown(job.message))
