"""Creating runs in the app: settings widgets read from the config dataclasses, the New-run form, create_run.

Every field the CLI has a flag for (mars_core.run.settings) appears here with the same help text,
choices and default, so the form, the CLI and the stored config cannot drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from itertools import groupby
from pathlib import Path
from typing import Any

import streamlit as st

from mars_core.data.errors import DataError
from mars_core.present.app_shell import get_store, select_run, session_id
from mars_core.present.job_progress import job_runner, report
from mars_core.present.safe_markdown import escape_markdown
from mars_core.run import components
from mars_core.run.config import RunConfig
from mars_core.run.jobs import Job, JobRefused
from mars_core.run.refine import RefinementRun
from mars_core.run.settings import Setting, config_from_values, form_settings
from mars_core.store.sqlite import Store, StoreError

log = logging.getLogger(__name__)

FILE_SOURCE = "file path…"
SOURCES = ("demo:text", "demo:toy", FILE_SOURCE)


# -- creating runs (a background job of the server) -------------------------------------------------------
def create_key(db: str | Path) -> str:
    """One run creation at a time per store (the demo runs on first launch, or a run from the forms)."""
    return f"create:{Path(db).resolve()}"


def start_create(runs: Sequence[tuple[str | None, RunConfig]], title: str) -> Job | None:
    """Create runs in a server job, so the page shows at once, encoding shows its progress, and a closed tab
    loses nothing; the tab that asked selects the new run when it is done. None (with a warning) if busy."""
    db, session = str(get_store().path), session_id()

    def body(job: Job) -> None:
        store = Store(db)
        for done, (name, config) in enumerate(runs):
            job.part(done, label=name or "")
            job.progress("loading models", 0, 1)
            parts = components.build_runtime(config, store)  # the paraphraser loads at the first Step
            reporting = parts.encoder.reporting(job.progress) if parts.encoder is not None else nullcontext()
            try:
                with reporting:
                    job.results.append(RefinementRun.create(store, config, name=name, runtime=parts,
                                                            progress=job.progress).run_id)
            except (DataError, ValueError, StoreError, OSError) as exc:
                if len(runs) == 1:
                    raise
                log.exception("could not create run %s", name)
                job.warning = f"Could not create the run '{name}': {type(exc).__name__}: {exc}"
        job.part(len(runs))

    job = Job(create_key(db), title, parts_total=len(runs), part_name="run", session=session)
    try:
        return job_runner().start(job, body)
    except JobRefused:
        st.warning("A run is being created for this store (in this or another tab); wait for it to finish.")
        return None


def create_run(config: RunConfig, name: str | None) -> Job | None:
    """Start creating a run (trains epoch 0) in the background; the sidebar follows it and selects it."""
    return start_create([(name or None, config)], f"creating the run '{name}'" if name else "creating a run")


def creation_unseen(job: Job | None) -> bool:
    """A finished creation job this session asked for and has not shown yet."""
    return (job is not None and not job.running and job.session == session_id()
            and st.session_state.get("_created_seen") != job.started)


def created_run(job: Job | None) -> None:
    """Once per finished creation job of this session: say how it ended and select the run it made."""
    if not creation_unseen(job):
        return
    st.session_state["_created_seen"] = job.started
    report(job, "run creation")
    if job.results:
        select_run(job.results[0])


# -- settings widgets -------------------------------------------------------------------------------------
def _label(spec: Setting) -> str:
    return spec.dest.replace("_", " ").capitalize()


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def setting_widget(spec: Setting, key: str, value: Any) -> Any:
    """One setting's widget, starting at `value`; text widgets return their text (see form_config)."""
    label, help_text = _label(spec), f"{spec.help} ({spec.flag})"
    if spec.widget == "select":
        options = [*spec.choices, *([None] if spec.optional else [])]
        return st.selectbox(label, options, index=options.index(value), key=key, help=help_text,
                            format_func=lambda v: "unset" if v is None else str(v))
    if spec.widget == "checkbox":
        return st.checkbox(label, value=bool(value), key=key, help=help_text)
    if spec.widget == "number":
        if spec.kind is int:
            picked = st.number_input(label, value=value, step=1, key=key, help=help_text,
                                     placeholder="unset" if spec.optional else None)
            return None if picked is None else int(picked)
        picked = st.number_input(label, value=None if value is None else float(value), step=0.1, format="%g",
                                 key=key, help=help_text, placeholder="unset" if spec.optional else None)
        return None if picked is None else float(picked)
    return st.text_input(label, value=_shown(value), key=key, help=help_text,
                         placeholder="unset" if spec.optional else None)


def settings_widgets(prefix: str, skip: Iterable[str] = (), base: RunConfig | None = None) -> dict[str, Any]:
    """Widgets for every form setting (one tab per config section), keyed by Setting.dest.

    `skip` names settings the caller sets itself (e.g. the Data page's format and column map).
    """
    base = base or RunConfig()
    specs = [s for s in form_settings() if s.dest not in set(skip)]
    sections = [(name, list(group)) for name, group in groupby(specs, key=lambda s: s.section)]
    values: dict[str, Any] = {}
    for tab, (_, group) in zip(st.tabs([name.capitalize() for name, _ in sections]), sections, strict=True):
        with tab:
            for spec in group:
                values[spec.dest] = setting_widget(spec, f"{prefix}_{spec.dest}", spec.value_in(base))
    return values


def form_config(widget_values: Mapping[str, Any], typed: Mapping[str, Any] | None = None) -> RunConfig:
    """The RunConfig a form describes: widget values (texts parsed as the CLI parses them) plus typed ones.

    Raises ValueError naming the flag of a bad value.
    """
    by_dest = {s.dest: s for s in form_settings()}
    values = {dest: by_dest[dest].from_text(v) if by_dest[dest].widget == "text" else v
              for dest, v in widget_values.items()}
    return config_from_values({**values, **(typed or {})})


def new_run_form() -> None:
    """The sidebar's New-run form: a data source (demo or file, optional held-out file) and every setting."""
    with st.expander("New run"), st.form("new_run"):
        name = st.text_input("Name (optional)", key="new_name")
        source = st.selectbox("Data", SOURCES, key="new_source")
        path = st.text_input(f"File path (for '{FILE_SOURCE}')", key="new_path")
        values = settings_widgets("new")
        submitted = st.form_submit_button("Create run")
        if submitted:
            try:
                config = form_config(values, {"data": path.strip() if source == FILE_SOURCE else source})
            except (ValueError, TypeError) as exc:
                st.error(escape_markdown(str(exc)))
                return
            if create_run(config, name.strip() or None) is not None:
                st.rerun()  # the sidebar follows the job
