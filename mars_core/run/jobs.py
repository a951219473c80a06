"""Background jobs (a Step, Run N epochs, a comparison): one runner for all of them, no UI.

A job belongs to the server process, not to the browser tab that asked for it: it runs in its own thread,
loads what it needs inside that thread, reports where it is (stage, done of total, a detail, and which of
its parts: epoch k of n, run k of n) and keeps how it ended. Any session can look a job up by its key and
follow it; a tab that closes or reloads loses nothing. At most one job runs per key (one per run, one per
comparison folder) in a process; across processes the store's step lock decides.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mars_core.model.openmp_workers import release_openmp_workers
from mars_core.redaction import redact
from mars_core.run.refine import STAGES, RefinementRun, RunFinished, StepInProgress
from mars_core.store.locks import new_owner
from mars_core.store.sqlite import Store

log = logging.getLogger(__name__)

Listener = Callable[[str, int, int, str], None]


class JobRefused(RuntimeError):
    """The job cannot run: another one already works on the same thing. The message says which."""


@dataclass
class Job:
    """One background job: where it is and how it ended. Written by its thread, read by anyone."""

    key: str  # what it works on, e.g. "step:/abs/store.db:3" or "compare:/abs/folder"
    title: str  # "one epoch", "3 epochs", "comparison into runs/compare/demo-small"
    parts_total: int = 1  # epochs to step, runs to compare
    part_name: str = "part"  # "epoch", "run"
    stages: Sequence[str] = ()  # the ordered stages of one part, when known: the fraction then counts them
    session: str = ""  # who asked (a browser session): the tab that asked shows the outcome, any tab the progress
    stage: str = "starting"
    detail: str = ""
    done: int = 0
    total: int = 1
    parts_done: int = 0
    part_label: str = ""  # e.g. "mars seed=0" for the comparison's current run
    results: list[Any] = field(default_factory=list)  # what each part produced (StepOutcome, a run result)
    message: str | None = None  # ended early for a reason that is no failure (a run's stop rule)
    warning: str | None = None  # could not run (another process holds the step lock)
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished_at: float | None = None
    thread: threading.Thread | None = None
    listeners: list[Listener] = field(default_factory=list)  # called on every progress report, in the job's thread
    owner: str = field(default_factory=new_owner)  # the store's step lock is taken in this name

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def seconds(self) -> float:
        return (self.finished_at or time.time()) - self.started

    def progress(self, stage: str, done: int, total: int, detail: str = "") -> None:
        """The progress protocol every engine function takes: progress(stage, done, total, detail="")."""
        detail = redact(detail) if detail else detail  # a remote error may quote what the server sent
        self.stage, self.done, self.total, self.detail = stage, done, max(total, 1), detail
        for listener in self.listeners:
            listener(stage, done, total, detail)

    def part(self, done: int, total: int | None = None, label: str = "") -> None:
        """Parts finished so far (epochs, runs), and what the next one is."""
        self.parts_done, self.part_label = done, label
        if total is not None:
            self.parts_total = max(total, 1)

    def fraction(self) -> float:
        """Share of the whole job done: finished parts plus the stage reached in the current one."""
        if self.stage in self.stages:
            within = (list(self.stages).index(self.stage) + self.done / self.total) / len(self.stages)
        else:
            within = min(self.done / self.total, 0.99)
        return min(1.0, (self.parts_done + within) / self.parts_total)

    def label(self) -> str:
        """e.g. "epoch 2 of 3: generating 5 of 40 · 3 failed" or "run 3 of 12 (mars seed=0): training"."""
        if self.parts_total > 1 and self.parts_done >= self.parts_total:
            return f"all {self.parts_total} {self.part_name}s done; finishing"
        where = f"{self.part_name} {self.parts_done + 1} of {self.parts_total}" if self.parts_total > 1 \
            else f"one {self.part_name}"
        if self.part_label:
            where += f" ({self.part_label})"
        text = f"{where}: {self.stage}"
        if self.total > 1:
            text += f" {self.done} of {self.total}"
        return f"{text} · {self.detail}" if self.detail else text

    def _work(self, body: Callable[[Job], None]) -> None:
        try:
            body(self)
        except Exception as exc:  # shown by whoever follows the job; the store keeps only whole epochs
            log.exception("job %s failed", self.key)
            self.error = redact(f"{type(exc).__name__}: {exc}")
        finally:
            self.finished_at = time.time()


class JobRunner:
    """This process's background jobs, at most one running per key. Thread-safe; the app keeps one per server."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Job | None:
        """The latest job with this key (running or finished), if any."""
        return self._jobs.get(key)

    def latest(self, prefix: str = "", session: str | None = None) -> Job | None:
        """The newest job whose key starts with ``prefix`` (of one session, if given)."""
        jobs = [j for k, j in list(self._jobs.items())
                if k.startswith(prefix) and (session is None or j.session == session)]
        return max(jobs, key=lambda j: j.started) if jobs else None

    def running(self, prefix: str = "") -> list[Job]:
        return [j for k, j in list(self._jobs.items()) if k.startswith(prefix) and j.running]

    def start(self, job: Job, body: Callable[[Job], None]) -> Job:
        """Run ``body(job)`` in a thread; JobRefused if a job with the same key is running.

        The asking thread hands back the OpenMP workers it may hold (a page that scored with torch): left
        in place, they would halve the job's torch speed for as long as the asking thread lives."""
        with self._lock:
            current = self._jobs.get(job.key)
            if current is not None and current.running:
                raise JobRefused(f"already running: {current.title} ({current.label()})")
            release_openmp_workers()
            job.thread = threading.Thread(target=job._work, args=(body,), name=f"job:{job.key}", daemon=True)
            self._jobs[job.key] = job
            job.thread.start()
        return job


def wait_for(job: Job, on_tick: Callable[[Job], None], interval: float = 0.5, timeout: float | None = None) -> None:
    """Block until a job ends (or ``timeout`` passes), calling ``on_tick`` between sleeps: for scripts and
    tests. Sleeping releases the GIL, so the waiter costs the job nothing. (The app does not block: its pages
    redraw a job's progress from a fragment, present/job_progress.py.)
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while job.running and (deadline is None or time.monotonic() < deadline):
        on_tick(job)
        if job.thread is not None:
            job.thread.join(interval)
    on_tick(job)


def step_key(db: str | Path, run_id: int) -> str:
    return f"step:{Path(db).resolve()}:{run_id}"


def start_steps(
    runner: JobRunner, db: str | Path, run_id: int, epochs: int, session: str = "", listener: Listener | None = None,
) -> Job:
    """Step a stored run ``epochs`` times in the background; the models load inside the job, with progress.

    The job opens its own Store on ``db``, so nothing of the asking session (or its thread) is used by it.
    """
    job = Job(step_key(db, run_id), "one epoch" if epochs == 1 else f"{epochs} epochs", parts_total=epochs,
              part_name="epoch", stages=("loading models", *STAGES), session=session,
              listeners=[listener] if listener else [])

    def body(job: Job) -> None:
        job.progress("loading models", 0, 1)
        run = RefinementRun.open(Store(db), run_id)
        for done in range(epochs):
            job.part(done)
            try:
                job.results.append(run.step(progress=job.progress, lock_owner=job.owner))
            except RunFinished as exc:
                job.message = str(exc)
                return
            except StepInProgress as exc:
                job.warning = str(exc)
                return
        job.part(epochs)

    return runner.start(job, body)
