"""The sidebar every page shares: run picker, the run's status, Step / Run N, its lock, delete, New run.

A Step runs as a background job of the server (mars_core.run.jobs), one per run, which loads its models
itself: closing or reloading the tab, or navigating between pages, never cancels an epoch. Every page,
in any tab, follows the selected run's running job after it is drawn (`poll_step_job`) and reruns when it ends.
"""

from __future__ import annotations

import logging

import streamlit as st

from mars_core.present.app_shell import (
    current_run_id,
    db_path,
    get_store,
    process_lock,
    select_run,
    session_id,
)
from mars_core.present.job_progress import follow, job_runner, report
from mars_core.present.run_form import create_key, created_run, creation_unseen, new_run_form, start_create
from mars_core.present.safe_markdown import escape_markdown
from mars_core.present.views import run_label
from mars_core.run.demos import demo_configs
from mars_core.run.jobs import Job, JobRefused, start_steps, step_key
from mars_core.run.status import RunStatus
from mars_core.store.sqlite import Store, StoreError

log = logging.getLogger(__name__)


def ensure_demo_runs() -> None:
    """On an empty store, start building the demo runs once per server (a job: the page shows meanwhile)."""
    path = db_path()
    if st.session_state.get("_demo_checked") == path:
        return
    store = get_store()
    with process_lock(f"bootstrap:{path}"):
        job = job_runner().get(create_key(store.path))
        if not store.list_runs() and (job is None or not job.running) and not (job and job.results):
            start_create(demo_configs(), "First launch: building the demo runs (once)")
    st.session_state["_demo_checked"] = path


def sidebar() -> int | None:
    """The shared sidebar; returns the selected run id (None when the store holds no runs)."""
    ensure_demo_runs()
    store = get_store()
    creating = job_runner().get(create_key(store.path))
    created_run(creating)
    run_id = current_run_id()
    with st.sidebar:
        st.markdown("**MARS Explorer**")
        labels = {r.id: run_label(r.id, r.name, r.config) for r in store.list_runs()}
        # A job may create or delete a run between current_run_id() and this read: such a change shows on the
        # next draw (the job's end reruns the page), never as a panel for a run id that is not in the list.
        if run_id in labels:
            if st.session_state.get("_run_picker") != run_id:
                st.session_state["_run_picker"] = run_id
            st.selectbox("Run", list(labels), format_func=lambda i: labels[i], key="_run_picker",
                         on_change=lambda: select_run(st.session_state["_run_picker"]))
            _run_panel(store, run_id)
        elif creating is not None and creating.running:
            st.info("Building the first runs: their progress shows on the page.")
        else:
            st.info("No runs yet: create one below or on the Data page.")
        new_run_form()
    return run_id


def _run_panel(store: Store, run_id: int) -> None:
    status = RunStatus.read(store, run_id)
    cfg = status.config
    job = job_runner().get(step_key(store.path, run_id))
    a = cfg.allocation
    tau = f", τ = {a.tau:g} ({a.tau_scale}), m = {'|Δ|' if a.margin_mode == 'abs' else 'Δ'}" if a.strategy in (
        "mars", "won") else ""
    folds = cfg.refine.cross_fit_folds
    reward = "linear head" if cfg.reward.kind == "linear" else f"fine-tuned {cfg.reward.base}"
    st.caption(f"{a.strategy}{tau} · margins {'cross-fitted ' + str(folds) + '-fold' if folds >= 2 else 'in-sample'}"
               f" · reward model {reward} · review policy **{cfg.refine.review_policy}**")
    c1, c2 = st.columns(2)
    c1.metric("Epoch", f"{max(status.epoch, 0)} / {cfg.refine.epochs}")
    c2.metric("Budget left", f"{status.budget_left}", help=f"{status.budget_spent} of "
              f"{cfg.refine.budget_total} budget units (kept paraphrases) spent")
    stop = status.stop_reason
    if stop:
        st.info(escape_markdown(f"Finished: {stop}."))
    busy = job is not None and job.running
    if busy and job.session != session_id():
        st.caption(escape_markdown(f"Another tab started this step; it runs on the server ({job.label()})."))
    c1, c2 = st.columns([1, 1])
    step = c1.button("Step", key="step", type="primary", disabled=bool(stop) or busy,
                     help="Advance one epoch: score, allocate, paraphrase, filter, cross pairs, retrain, evaluate")
    n = c2.number_input("epochs", min_value=1, max_value=50, value=3, key="run_n", label_visibility="collapsed")
    run_n = st.button(f"Run {int(n)} epochs", key="run_n_button", disabled=bool(stop) or busy)
    st.session_state["_step_box"] = st.empty()
    if step or run_n:
        started = _start_steps(store, run_id, 1 if step else int(n))
        if started is not None:
            st.session_state["_awaiting_step"] = True  # rerun once it ends, even if it ends before the page is drawn
            job = started
        busy = job is not None and job.running
    _last_job_report(job)
    _lock_panel(store, run_id)
    _delete_panel(store, run_id, busy)


def _start_steps(store: Store, run_id: int, epochs: int) -> Job | None:
    """Start the job; it loads the models itself, so the step runs on even if this tab closes right away."""
    try:
        return start_steps(job_runner(), store.path, run_id, epochs, session_id())
    except JobRefused:
        st.warning("This run is already being stepped (in this or another tab); wait for that epoch.")
        return None


def poll_step_job() -> None:
    """Called after every page: follow a run being created and the selected run's running step (whoever
    started it); each follow reruns the page when its job ends."""
    creating = job_runner().get(create_key(get_store().path))
    if creating is not None and creating.running:
        follow(creating)
    if creation_unseen(creating):
        st.rerun()  # it ended while the page was drawn: show (and select) what it made
    run_id = st.session_state.get("run_id")
    if run_id is None:
        return
    job = job_runner().get(step_key(get_store().path, run_id))
    if job is None or not job.running:
        if st.session_state.pop("_awaiting_step", False):
            st.rerun()  # this session's job ended while the page was drawn: show how
        return
    st.session_state.pop("_awaiting_step", None)
    box = st.session_state.get("_step_box")
    if box is None:
        follow(job)
    else:
        with box.container():
            follow(job)


def _last_job_report(job: Job | None) -> None:
    if job is None or job.running or job.session != session_id():
        return
    report(job, "step")
    if job.results:
        last = job.results[-1]
        seconds = sum(o.seconds for o in job.results)  # each the sum of its stages, up to rounding
        with st.status(f"Epoch {last.epoch} done ({seconds:.1f} s)", state="complete", expanded=False):
            for outcome in job.results:
                parts = ", ".join(f"{k} {v:.2f}s" for k, v in outcome.stage_seconds.items())
                st.caption(f"epoch {outcome.epoch}: {parts}")


def _lock_panel(store: Store, run_id: int) -> None:
    """A lock nobody live holds: say whose it is (the store's one rule, store/locks.py) and offer to clear it."""
    lock = store.step_lock(run_id)
    if lock is None or lock.alive:
        return
    st.warning(escape_markdown(f"Step lock: {lock.describe()}."))
    if st.button("Clear the step lock", key="clear_lock"):
        store.release_step_lock(run_id, lock.owner)
        st.rerun()


def _delete_panel(store: Store, run_id: int, busy: bool) -> None:
    """Delete the selected run, after a confirmation naming it."""
    asked = st.session_state.get("_delete_asked") == run_id
    if not asked:
        if st.button("Delete this run…", key="delete_run", disabled=busy):
            st.session_state["_delete_asked"] = run_id
            st.rerun()
        return
    name = store.get_run(run_id).name
    st.warning(escape_markdown(f"Delete run #{run_id} ({name}) with all its epochs, pairs and reviews? "
                               "This cannot be undone."))
    c1, c2 = st.columns(2)
    if c1.button("Yes, delete", key="delete_confirm", type="primary", disabled=busy):
        st.session_state.pop("_delete_asked", None)
        try:
            store.delete_run(run_id)
        except StoreError as exc:
            st.error(escape_markdown(str(exc)))
            return
        select_run(None)
        st.rerun()
    if c2.button("Cancel", key="delete_cancel"):
        st.session_state.pop("_delete_asked", None)
        st.rerun()

