"""Finishing a page's background jobs under AppTest, which has no browser to ask for the following fragment's
redraws: wait for the server's jobs to end, then run the page again, as that fragment's last redraw would."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from mars_core.present.job_progress import job_runner
from mars_core.run.jobs import wait_for


def finish_jobs(at: AppTest, timeout: float = 600) -> AppTest:
    for job in job_runner().running():
        wait_for(job, lambda _: None, interval=0.05, timeout=timeout)
        assert not job.running, f"{job.title} still runs after {timeout} s ({job.label()})"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at
