"""The background step runner: a Step (or "Run N epochs") runs in a thread, so a UI stays responsive.

A `StepJob` records where it is (stage, done of total, a detail such as "loss 0.61") and how it
ended (outcomes, the stop rule's message, another owner's lock, an error). `StepJobs` is one
process's registry: at most one job per (store, run), so two tabs never step the same run twice
from one server; across processes the store's step lock decides. Nothing here imports a UI.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mars_core.run import locks
from mars_core.run.refine import STAGES, RefinementRun, RunFinished, StepInProgress, StepOutcome
from mars_core.run.store import Store

log = logging.getLogger(__name__)

Listener = Callable[[str, int, int, str], None]


@dataclass
class StepJob:
    """One Step or Run-N request: its thread, where it is, and how it ended."""

    db: str
    run_id: int
    epochs: int
    session: str = ""  # who asked (the app: a browser session), so only that tab follows the job
    owner: str = field(default_factory=locks.new_owner)  # the step lock's owner while this job steps
    stage: str = "starting"
    detail: str = ""
    done: int = 0
    total: int = 1
    outcomes: list[StepOutcome] = field(default_factory=list)
    message: str | None = None  # the run finished (stop rule)
    warning: str | None = None  # another tab or process holds the step lock
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished_at: float | None = None
    thread: threading.Thread | None = None
    listeners: list[Listener] = field(default_factory=list)  # called on every progress report, in the job's thread

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def progress(self, stage: str, done: int, total: int, detail: str = "") -> None:
        self.stage, self.done, self.total, self.detail = stage, done, max(total, 1), detail
        for listener in self.listeners:
            listener(stage, done, total, detail)

    def fraction(self) -> float:
        """Share of the whole request done: finished epochs plus the stage reached in the current one."""
        within = (STAGES.index(self.stage) + self.done / self.total) / len(STAGES) if self.stage in STAGES else 0.0
        return min(1.0, (len(self.outcomes) + within) / self.epochs)

    def label(self) -> str:
        """e.g. "epoch 2 of 3: paraphrasing 5 of 40" or "one epoch: training 12 of 40 · loss 0.61"."""
        epoch = f"epoch {len(self.outcomes) + 1} of {self.epochs}" if self.epochs > 1 else "one epoch"
        text = f"{epoch}: {self.stage}"
        if self.total > 1:
            text += f" {self.done} of {self.total}"
        return f"{text} · {self.detail}" if self.detail else text

    def work(self, store: Store) -> None:
        """The thread's body: open the run and step it until done, finished, locked elsewhere or failed."""
        try:
            run = RefinementRun.open(store, self.run_id)
            for _ in range(self.epochs):
                try:
                    self.outcomes.append(run.step(progress=self.progress, lock_owner=self.owner))
                except RunFinished as exc:
                    self.message = str(exc)
                    break
                except StepInProgress as exc:
                    self.warning = str(exc)
                    break
        except Exception as exc:  # reported by whoever follows the job; the store holds whole epochs only
            log.exception("step of run %s failed", self.run_id)
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.finished_at = time.time()


class StepJobs:
    """This process's step jobs, at most one per (store, run). Thread-safe."""

    def __init__(self) -> None:
        self._jobs: dict[tuple[str, int], StepJob] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(store: Store, run_id: int) -> tuple[str, int]:
        return str(store.path.resolve()), run_id

    def get(self, store: Store, run_id: int) -> StepJob | None:
        """The run's latest job in this process (running or finished), if any."""
        return self._jobs.get(self._key(store, run_id))

    def start(
        self, store: Store, run_id: int, epochs: int, session: str = "", listener: Listener | None = None
    ) -> StepJob | None:
        """Start stepping the run in a background thread; None if this process is already stepping it."""
        key = self._key(store, run_id)
        with self._lock:
            current = self._jobs.get(key)
            if current is not None and current.running:
                return None
            job = StepJob(key[0], run_id, epochs, session, listeners=[listener] if listener else [])
            job.thread = threading.Thread(target=job.work, args=(store,), name=f"step-run-{run_id}", daemon=True)
            self._jobs[key] = job
            job.thread.start()
        return job
