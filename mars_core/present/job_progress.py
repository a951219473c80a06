"""Following a background job (mars_core.run.jobs) from a page: one progress box, one poll loop for every job.

The job runs in the server's thread whatever happens to the tab; this only draws where it is. Between redraws
the script thread sleeps (no GIL held), so following costs the job nothing; a click elsewhere ends the follow
(Streamlit reruns the script) and the next run of the page follows again.
"""

from __future__ import annotations

import streamlit as st

from mars_core.present.safe_markdown import escape_markdown
from mars_core.run.jobs import Job, JobRunner, wait_for


@st.cache_resource(show_spinner=False)
def job_runner() -> JobRunner:
    """This server process's jobs, shared by every session (a job outlives the tab that started it)."""
    return JobRunner()


def follow(job: Job, interval: float = 0.5) -> None:
    """Draw the job's progress until it ends, then rerun the page so it shows what the job stored."""
    with st.status(escape_markdown(job.label()), expanded=True) as status:
        bar = st.progress(job.fraction(), text=escape_markdown(job.label()))

        def tick(job: Job) -> None:
            text = escape_markdown(job.label())
            bar.progress(job.fraction(), text=text)
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
