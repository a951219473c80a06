"""A comparison in a background thread, the way stepper.StepJob runs a Step: the UI polls where it is.

Same shape and progress protocol as ``StepJob`` (stage, done, total, detail; an error kept for the caller), at
most one job per output folder per process. A comparison is resumable on disk, so a job that dies with its
server continues where it stopped when started again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mars_core.run.compare import CompareSpec, run_comparison

log = logging.getLogger(__name__)


@dataclass
class CompareJob:
    out: str
    spec: CompareSpec
    session: str = ""
    stage: str = "starting"
    detail: str = ""
    done: int = 0
    total: int = 1
    runs_done: int = 0
    runs_total: int = 1
    run_label: str = ""
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished_at: float | None = None
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def progress(self, stage: str, done: int, total: int, detail: str = "") -> None:
        if stage == "runs":
            self.runs_done, self.runs_total, self.run_label = done, max(total, 1), detail
            return
        self.stage, self.done, self.total, self.detail = stage, done, max(total, 1), detail

    def fraction(self) -> float:
        within = self.done / self.total if self.total else 0.0
        return min(1.0, (self.runs_done + min(within, 0.99)) / self.runs_total)

    def label(self) -> str:
        """e.g. "run 3 of 12 (mars seed=0 ...): paraphrasing 5 of 40"."""
        if self.runs_done >= self.runs_total:
            return f"all {self.runs_total} runs done; summarising"
        text = f"run {self.runs_done + 1} of {self.runs_total} ({self.run_label}): {self.stage}"
        if self.total > 1:
            text += f" {self.done} of {self.total}"
        return f"{text} · {self.detail}" if self.detail else text

    def work(self) -> None:
        try:
            run_comparison(self.spec, self.out, self.progress)
        except Exception as exc:  # shown by whoever follows the job; finished runs stay on disk
            log.exception("comparison in %s failed", self.out)
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.finished_at = time.time()


class CompareJobs:
    """This process's comparison jobs, at most one per output folder. Thread-safe."""

    def __init__(self) -> None:
        self._jobs: dict[str, CompareJob] = {}
        self._lock = threading.Lock()

    def get(self, out: str | Path) -> CompareJob | None:
        return self._jobs.get(str(Path(out).resolve()))

    def latest(self, session: str) -> CompareJob | None:
        mine = [j for j in self._jobs.values() if j.session == session]
        return max(mine, key=lambda j: j.started) if mine else None

    def start(self, spec: CompareSpec, out: str | Path, session: str = "") -> CompareJob | None:
        """Start the comparison in a thread; None if this process is already running one into ``out``."""
        key = str(Path(out).resolve())
        with self._lock:
            current = self._jobs.get(key)
            if current is not None and current.running:
                return None
            job = CompareJob(key, spec, session)
            job.thread = threading.Thread(target=job.work, name=f"compare-{Path(key).name}", daemon=True)
            self._jobs[key] = job
            job.thread.start()
        return job
