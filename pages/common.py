"""What every page shares: the store, the selected run, the sidebar (run picker, new run, Step) and model caching.

Session-state conventions other pages rely on:
  st.session_state["db_path"]  the store's path (default: env MARS_DB or runs/mars.db)
  st.session_state["run_id"]   the selected run's id, or None when the store has no runs
A Step runs in a background thread (one per run per server process), so navigating between pages
never cancels an epoch; the page that started it shows its progress and reruns when it is done.
"""

from __future__ import annotations

import logging
import os
import runpy
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from mars_core.augment.allocation import MARGIN_MODES, STRATEGIES, TAU_SCALES
from mars_core.data.loading import DataError
from mars_core.present.safe_markdown import escape_markdown
from mars_core.present.views import run_label
from mars_core.run import components
from mars_core.run.config import REVIEW_POLICIES, DataConfig, RefineConfig, RunConfig, with_overrides
from mars_core.run.refine import STAGES, RefinementRun, RunFinished, StepInProgress, StepOutcome
from mars_core.run.store import Store, StoreError

log = logging.getLogger(__name__)
DEFAULT_DB = "runs/mars.db"
APP_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app.py")
HOST = socket.gethostname()
TEXT_DEMO_NAME = "MARS on the text demo"
TOY_DEMO_NAME = "2-D toy (Teach page)"


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
    """The selected run: session state, else a ?run= query parameter, else the first run; None if none exist."""
    store = get_store()
    ids = [r.id for r in store.list_runs()]
    wanted = st.session_state.get("run_id")
    query = st.query_params.get("run")
    if query is not None and query != st.session_state.get("_query_run_applied"):
        st.session_state["_query_run_applied"] = query
        if query.isdigit():
            wanted = int(query)
    if wanted not in ids:
        wanted = ids[0] if ids else None
    st.session_state["run_id"] = wanted
    return wanted


def demo_configs() -> list[tuple[str, RunConfig]]:
    """The two runs a fresh store gets: MARS on the text demo (defaults) and the 2-D toy for teaching."""
    toy = RunConfig(
        data=DataConfig(source="demo:toy"),
        refine=RefineConfig(epochs=6, budget_per_epoch=40, cross_fit_folds=0),
    )
    return [(TEXT_DEMO_NAME, RunConfig()), (TOY_DEMO_NAME, toy)]


@st.cache_resource(show_spinner=False)
def _process_lock(name: str) -> threading.Lock:
    return threading.Lock()


def ensure_demo_runs() -> None:
    """On an empty store, build the demo runs once (not per rerun, not per tab) and select the text run."""
    path = db_path()
    if st.session_state.get("_demo_checked") == path:
        return
    store = get_store()
    with _process_lock(f"bootstrap:{path}"):
        if not store.list_runs():
            created: dict[str, int] = {}
            with st.spinner("First launch: building the demo runs (loads the sentence encoder and the "
                            "paraphraser, trains epoch 0). This happens once."):
                for name, config in demo_configs():
                    try:
                        ensure_models(config)
                        created[name] = RefinementRun.create(store, config, name=name).run_id
                    except Exception as exc:  # the other demo can still be built
                        log.exception("could not build demo run %s", name)
                        st.error(escape_markdown(f"Could not build the demo run '{name}': {type(exc).__name__}: {exc}"))
            if created:
                st.session_state["run_id"] = created.get(TEXT_DEMO_NAME, next(iter(created.values())))
    st.session_state["_demo_checked"] = path


# -- models ----------------------------------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the sentence encoder and the paraphraser (once per server)…")
def _load_models(encoder_name: str, paraphrase_key: str, _paraphrase_config: Any) -> tuple[Any, Any]:
    # components memoises too; this layer adds the spinner and survives Streamlit's module reloads
    return components.load_encoder(encoder_name), components.load_paraphraser(_paraphrase_config)


def ensure_models(config: RunConfig) -> None:
    """Load what a text run needs before a background step uses it (the toy needs nothing)."""
    if not config.data.is_toy:
        _load_models(config.refine.encoder, repr(config.paraphrase), config.paraphrase)


def run_config(store: Store, run_id: int) -> RunConfig:
    return RunConfig.from_dict(store.get_run(run_id).config)


@dataclass
class RunStatus:
    """A stored run's epoch, budget and stop reason, by the engine's own rules, without loading any model."""

    store: Store
    run_id: int
    config: RunConfig
    epoch: int

    budget_spent = RefinementRun.budget_spent
    budget_left = RefinementRun.budget_left
    stop_reason = RefinementRun.stop_reason

    @classmethod
    def of(cls, store: Store, run_id: int) -> RunStatus:
        last = store.last_epoch(run_id)
        return cls(store, run_id, run_config(store, run_id), -1 if last is None else last)


# -- stepping in the background ----------------------------------------------------------------------------
@dataclass
class StepJob:
    """One Step or Run-N request: its thread, where it is, and how it ended."""

    db: str
    run_id: int
    epochs: int
    session: str
    owner: str = field(default_factory=lambda: f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
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

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def progress(self, stage: str, done: int, total: int, detail: str = "") -> None:
        self.stage, self.done, self.total, self.detail = stage, done, max(total, 1), detail

    def fraction(self) -> float:
        within = (STAGES.index(self.stage) + self.done / self.total) / len(STAGES) if self.stage in STAGES else 0.0
        return min(1.0, (len(self.outcomes) + within) / self.epochs)

    def label(self) -> str:
        epoch = f"epoch {len(self.outcomes) + 1} of {self.epochs}" if self.epochs > 1 else "one epoch"
        if self.stage == "paraphrasing":
            return f"{epoch}: paraphrasing {self.done} of {self.total}"
        return f"{epoch}: {self.stage}"

    def work(self, store: Store) -> None:
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
        except Exception as exc:  # shown in the sidebar; the store still holds whole epochs only
            log.exception("step of run %s failed", self.run_id)
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.finished_at = time.time()


@st.cache_resource(show_spinner=False)
def _jobs() -> dict[tuple[str, int], StepJob]:
    return {}


def _session_id() -> str:
    if "_session_token" not in st.session_state:
        st.session_state["_session_token"] = uuid.uuid4().hex
    return st.session_state["_session_token"]


def job_for(run_id: int) -> StepJob | None:
    return _jobs().get((db_path(), run_id))


def start_steps(run_id: int, epochs: int) -> StepJob | None:
    """Start stepping a run in the background; None (and a warning) if this server is already stepping it."""
    store = get_store()
    ensure_models(run_config(store, run_id))
    with _process_lock("jobs"):
        jobs = _jobs()
        key = (db_path(), run_id)
        if key in jobs and jobs[key].running:
            st.sidebar.warning("This run is already being stepped (in this or another tab); wait for that epoch.")
            return None
        job = StepJob(db_path(), run_id, epochs, _session_id())
        job.thread = threading.Thread(target=job.work, args=(store,), name=f"step-run-{run_id}", daemon=True)
        jobs[key] = job
        job.thread.start()
    return job


def lock_is_stale(owner: str, live_owners: set[str]) -> bool | None:
    """True if the lock's owner is certainly gone, False if it is alive, None if it cannot be told from here."""
    parts = owner.split(":")
    if len(parts) != 3 or not parts[1].isdigit() or parts[0] != HOST:
        return None
    pid = int(parts[1])
    if pid == os.getpid():
        return owner not in live_owners
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def poll_step_job() -> None:
    """Called after every page: follow this session's step to its end, then rerun so the page shows it."""
    if not st.session_state.get("_awaiting_step"):
        return
    run_id = st.session_state.get("run_id")
    job = job_for(run_id) if run_id is not None else None
    box = st.session_state.get("_step_box")
    if job is None or job.session != _session_id():
        st.session_state["_awaiting_step"] = False
        return
    if job.running and box is not None:
        with box.container(), st.status(job.label(), expanded=True) as status:
            bar = st.progress(job.fraction(), text=job.label())
            while job.running:
                bar.progress(job.fraction(), text=job.label())
                status.update(label=job.label())
                time.sleep(0.3)
    elif job.running:
        job.thread.join()
    st.session_state["_awaiting_step"] = False
    st.rerun()


# -- page frame ------------------------------------------------------------------------------------------
_FRAME = threading.local()  # set while app.py draws a run; each session's script runs in one thread


@contextmanager
def app_frame() -> Iterator[None]:
    """app.py wraps the page in this: the page then knows the sidebar is already drawn."""
    _FRAME.active = True
    try:
        yield
    finally:
        _FRAME.active = False


def page_setup() -> None:
    """First line of every page: makes sure the page is shown inside app.py's navigation and sidebar.

    Streamlit runs a page file on its own when it treats pages/ as a legacy multipage folder (the
    first request of a server process on a deep link such as /pairs, or AppTest.switch_page). Then
    this runs app.py instead, which registers st.navigation, draws the sidebar and runs this page
    inside its frame, and stops the stand-alone run.
    """
    if getattr(_FRAME, "active", False):
        return
    runpy.run_path(str(APP_PATH), run_name="__main__")
    st.stop()


# -- sidebar ---------------------------------------------------------------------------------------------
def sidebar() -> int | None:
    """The shared sidebar; returns the selected run id (None when the store holds no runs)."""
    ensure_demo_runs()
    store = get_store()
    run_id = current_run_id()
    with st.sidebar:
        st.markdown("**MARS Explorer**")
        runs = store.list_runs()
        if runs:
            labels = {r.id: run_label(r.id, r.name, r.config) for r in runs}
            if st.session_state.get("_run_picker") != run_id:
                st.session_state["_run_picker"] = run_id
            st.selectbox("Run", list(labels), format_func=lambda i: labels[i], key="_run_picker",
                         on_change=lambda: st.session_state.update(run_id=st.session_state["_run_picker"]))
            _run_panel(store, run_id)
        else:
            st.info("No runs yet: create one below or on the Data page.")
        _new_run_form()
    return run_id


def _run_panel(store: Store, run_id: int) -> None:
    status = RunStatus.of(store, run_id)
    cfg = status.config
    job = job_for(run_id)
    stop = status.stop_reason() if status.epoch >= 0 else "the run has no epoch 0"
    a = cfg.allocation
    tau = f", τ = {a.tau:g} ({a.tau_scale}), m = {'|Δ|' if a.margin_mode == 'abs' else 'Δ'}" if a.strategy in (
        "mars", "won") else ""
    st.caption(f"{a.strategy}{tau} · margins {'cross-fitted ' + str(cfg.refine.cross_fit_folds) + '-fold' if cfg.refine.cross_fit_folds >= 2 else 'in-sample'}"
               f" · review policy **{cfg.refine.review_policy}**")
    c1, c2 = st.columns(2)
    c1.metric("Epoch", f"{max(status.epoch, 0)} / {cfg.refine.epochs}")
    c2.metric("Budget left", f"{status.budget_left()}", help=f"{status.budget_spent()} of "
              f"{cfg.refine.budget_total} paraphrase generations spent")
    if stop:
        st.info(escape_markdown(f"Finished: {stop}."))
    busy = job is not None and job.running
    if busy and job.session != _session_id():
        st.warning(f"Another tab is stepping this run ({job.label()}).")
    c1, c2 = st.columns([1, 1])
    step = c1.button("Step", key="step", type="primary", disabled=bool(stop) or busy,
                     help="Advance one epoch: score, allocate, paraphrase, filter, cross pairs, retrain, evaluate")
    n = c2.number_input("epochs", min_value=1, max_value=50, value=3, key="run_n", label_visibility="collapsed")
    run_n = st.button(f"Run {int(n)} epochs", key="run_n_button", disabled=bool(stop) or busy)
    st.session_state["_step_box"] = st.empty()
    if step or run_n:
        job = start_steps(run_id, 1 if step else int(n))
        if job is not None:
            st.session_state["_awaiting_step"] = True
            st.session_state["_step_box"].progress(0.0, text=job.label())
    _last_job_report(job)
    _lock_panel(store, run_id)


def _last_job_report(job: StepJob | None) -> None:
    if job is None or job.running or job.session != _session_id():
        return
    if job.error:
        st.error(escape_markdown(f"The step failed: {job.error}"))
    if job.warning:
        st.warning(escape_markdown(job.warning))
    if job.message:
        st.info(escape_markdown(job.message))
    if job.outcomes:
        last = job.outcomes[-1]
        seconds = sum(sum(o.stage_seconds.values()) for o in job.outcomes)
        with st.status(f"Epoch {last.epoch} done ({seconds:.1f} s)", state="complete", expanded=False):
            for outcome in job.outcomes:
                parts = ", ".join(f"{k} {v:.2f}s" for k, v in outcome.stage_seconds.items())
                st.caption(f"epoch {outcome.epoch}: {parts}")


def _lock_panel(store: Store, run_id: int) -> None:
    owner = store.step_lock_owner(run_id)
    if not owner:
        return
    live = {j.owner for j in _jobs().values() if j.running}
    stale = lock_is_stale(owner, live)
    if stale is False:
        return
    if stale:
        st.warning(escape_markdown(f"The step lock on this run is held by a process that no longer exists ({owner})."))
    else:
        st.warning(escape_markdown(f"This run is locked for stepping by {owner}. If no other process is stepping it, "
                                   "clear the lock."))
    if st.button("Clear the step lock", key="clear_lock"):
        store.release_step_lock(run_id, owner)
        st.rerun()


# -- creating runs ----------------------------------------------------------------------------------------
def settings_widgets(prefix: str, base: RunConfig | None = None) -> dict[str, dict[str, Any]]:
    """The run settings a user picks (strategy, τ, …), as with_overrides sections."""
    base = base or RunConfig()
    a, r = base.allocation, base.refine
    strategy = st.selectbox("Strategy", STRATEGIES, index=STRATEGIES.index(a.strategy), key=f"{prefix}_strategy",
                            help="mars: low-|Δ| pairs get more; uniform; won (West-of-N): confident pairs; none")
    tau = st.number_input("τ (temperature)", min_value=0.0, value=float(a.tau), step=0.5, key=f"{prefix}_tau")
    tau_scale = st.selectbox("τ scale", TAU_SCALES, index=TAU_SCALES.index(a.tau_scale), key=f"{prefix}_scale",
                             help="raw: τ on Δ as is (the paper); std: τ on Δ/std(Δ), scale-free")
    margin_mode = st.selectbox("Margin mode", MARGIN_MODES, index=MARGIN_MODES.index(a.margin_mode),
                               key=f"{prefix}_mode", help="abs: m = |Δ| (paper); signed: m = Δ (authors' code)")
    budget = st.number_input("Budget per epoch (generations)", min_value=0, value=r.budget_per_epoch, step=8,
                             key=f"{prefix}_budget")
    epochs = st.number_input("Epochs", min_value=1, value=r.epochs, key=f"{prefix}_epochs")
    folds = st.number_input("Cross-fit folds (0 = in-sample)", min_value=0, value=r.cross_fit_folds,
                            key=f"{prefix}_folds")
    policy = st.selectbox("Review policy", REVIEW_POLICIES, index=REVIEW_POLICIES.index(r.review_policy),
                          key=f"{prefix}_policy", help="auto: paraphrases train at once; gated: only accepted ones")
    return {
        "allocation": {"strategy": strategy, "tau": float(tau), "tau_scale": tau_scale, "margin_mode": margin_mode},
        "refine": {"budget_per_epoch": int(budget), "epochs": int(epochs), "cross_fit_folds": int(folds),
                   "review_policy": policy},
    }


def create_run(config: RunConfig, name: str | None) -> int | None:
    """Create and select a run (trains epoch 0); errors are shown, not raised."""
    store = get_store()
    try:
        with st.spinner("Creating the run: loading data and models, training epoch 0…"):
            ensure_models(config)
            run = RefinementRun.create(store, config, name=name or None)
    except (DataError, ValueError, StoreError, OSError) as exc:
        st.error(escape_markdown(str(exc)))
        return None
    st.session_state["run_id"] = run.run_id
    return run.run_id


def _new_run_form() -> None:
    with st.expander("New run"), st.form("new_run"):
        name = st.text_input("Name (optional)", key="new_name")
        source = st.selectbox("Data", ["demo:text", "demo:toy", "file path…"], key="new_source")
        path = st.text_input("File path (for 'file path…')", key="new_path")
        sections = settings_widgets("new")
        if st.form_submit_button("Create run"):
            try:
                data = {"source": path.strip() if source == "file path…" else source}
                config = with_overrides(RunConfig(), data=data, **sections)
            except (ValueError, TypeError) as exc:
                st.error(escape_markdown(str(exc)))
                return
            if create_run(config, name.strip() or None) is not None:
                st.rerun()


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

