"""Creating runs in the app: settings widgets read from the config dataclasses, the New-run form, create_run.

Every field the CLI has a flag for (mars_core.run.settings) appears here with the same help text,
choices and default, so the form, the CLI and the stored config cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import groupby
from typing import Any

import streamlit as st

from mars_core.data.errors import DataError
from mars_core.present.app_shell import get_store, select_run
from mars_core.present.safe_markdown import escape_markdown
from mars_core.run import components
from mars_core.run.config import RunConfig
from mars_core.run.refine import RefinementRun
from mars_core.run.settings import Setting, config_from_values, form_settings
from mars_core.store.sqlite import StoreError

FILE_SOURCE = "file path…"
SOURCES = ("demo:text", "demo:toy", FILE_SOURCE)


# -- models ----------------------------------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the sentence encoder (once per server)…")
def _load_encoder(name: str) -> Any:
    return components.load_encoder(name)  # memoised there too; this layer adds the spinner


@st.cache_resource(show_spinner="Loading the paraphraser (once per server)…")
def _load_paraphraser(key: str, _config: Any) -> Any:
    return components.load_paraphraser(_config)


def ensure_models(config: RunConfig) -> None:
    """Load what a text run needs before a background step uses it, under a spinner (the toy needs none)."""
    if config.data.is_toy:
        return
    _load_encoder(config.refine.encoder)
    if config.allocation.strategy != "none" and config.refine.budget_per_epoch > 0:
        _load_paraphraser(repr(config.paraphrase), config.paraphrase)


def create_run(config: RunConfig, name: str | None) -> int | None:
    """Create and select a run (trains epoch 0); errors are shown, not raised."""
    try:
        with st.spinner("Creating the run: loading data and models, training epoch 0…"):
            ensure_models(config)
            run = RefinementRun.create(get_store(), config, name=name or None)
    except (DataError, ValueError, StoreError, OSError) as exc:
        st.error(escape_markdown(str(exc)))
        return None
    select_run(run.run_id)
    return run.run_id


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
        if st.form_submit_button("Create run"):
            try:
                config = form_config(values, {"data": path.strip() if source == FILE_SOURCE else source})
            except (ValueError, TypeError) as exc:
                st.error(escape_markdown(str(exc)))
                return
            if create_run(config, name.strip() or None) is not None:
                st.rerun()
