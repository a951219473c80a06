"""Data: browse the current run's pairs, or load a preference file and start a run on it."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from mars_core.data.errors import DataError
from mars_core.data.loading import load_pairs
from mars_core.data.readers import COMPRESSIONS, EXTENSIONS
from mars_core.data.schemas import AXES, FORMATS, required_columns
from mars_core.present import page_data, views
from mars_core.present.app_shell import page_frame
from mars_core.present.page_data import cached_columns
from mars_core.present.run_form import create_run, form_config, settings_widgets
from mars_core.present.safe_markdown import escape_markdown
from mars_core.store.uploads import save_upload

store, run_id, _ = page_frame("Data", epochs=False)
browse, load = st.tabs(["Pairs of the current run", "Load a data file"])

with browse:
    if run_id is None:
        st.info("No run yet. Load a file in the next tab, or create a demo run in the sidebar.")
    else:
        record = store.get_run(run_id)
        st.caption(f"Run #{run_id}: {escape_markdown(record.data_source)}")
        kind = st.segmented_control("Show", ["train", "test", "synthetic"], default="train", key="data_split") or "train"
        last = store.last_epoch(run_id)
        total, start, stop, table = page_data.pairs_table_page(store, run_id, kind, last, "data_pairs_page")
        st.caption(f"{total:,} {kind} pairs" + (f" (rows {start + 1:,}–{stop:,} shown)" if total > stop - start
                                                else "")
                   + (f"; margin column: Δ at epoch {last}" if last is not None else ""))
        st.dataframe(table, hide_index=True, key="data_pairs_table")


with load:
    st.caption("JSONL, JSON, CSV or Parquet: generic prompt/chosen/rejected (with a column mapping), Anthropic "
               "HH-RLHF, PKU-SafeRLHF, UltraFeedback-binarized, Stanford SHP or OpenAI summarize-from-feedback. "
               "Bad rows are skipped and listed by row and field.")
    how = st.radio("Source", ["Upload a file", "Path on the server"], horizontal=True, key="data_how")
    path: Path | None = None
    if how == "Upload a file":
        kinds = [e.lstrip(".") for e in (*EXTENSIONS, *COMPRESSIONS)]
        upload = st.file_uploader("Preference file", type=kinds, key="data_upload",
                                  help="also compressed: .gz, .bz2, .zst (e.g. the official HH-RLHF .jsonl.gz)")
        if upload is not None:
            path = save_upload(store.path, upload.name, upload.getvalue())
    else:
        text = st.text_input("Path", key="data_path", placeholder="data/my_pairs.jsonl")
        path = Path(text.strip()).expanduser() if text.strip() else None
    c1, c2 = st.columns(2)
    fmt = c1.selectbox("Format", ["auto", *FORMATS], key="data_format", help="auto detects it when unambiguous")
    axis = c2.selectbox("PKU-SafeRLHF axis", AXES, key="data_axis",
                        help="which label decides chosen: better_response_id (helpful) or safer_response_id (harmless)")
    column_map: dict[str, str] = {}
    if fmt in ("auto", "generic") and path is not None:
        columns = cached_columns(str(path))
        with st.expander("Column mapping (generic files whose columns have other names)"):
            for name in required_columns("generic"):
                options = ["(same name)", *columns]
                picked = st.selectbox(f"'{name}' is in column", options, key=f"data_map_{name}")
                if picked != "(same name)":
                    column_map[name] = picked
    if st.button("Load", key="data_load", disabled=path is None, type="primary"):
        try:
            pairs, report = load_pairs(path, fmt, column_map or None, axis)
        except (DataError, ValueError, OSError) as exc:
            st.session_state.pop("data_loaded", None)
            st.error(escape_markdown(str(exc)))
        else:
            st.session_state["data_loaded"] = {
                "path": str(path), "format": report.format, "column_map": column_map or None, "axis": axis,
                "summary": report.summary(), "skipped": [s._asdict() for s in report.skipped],
                "preview": views.pairs_table(pairs[:200]), "n": len(pairs),
            }
    loaded = st.session_state.get("data_loaded")
    if loaded:
        st.success(escape_markdown(loaded["summary"]))
        if loaded["skipped"]:
            st.caption("Skipped rows")
            st.dataframe(loaded["skipped"], hide_index=True, key="data_skipped")
        st.caption(f"First {min(200, loaded['n'])} of {loaded['n']} pairs")
        st.dataframe(loaded["preview"], hide_index=True, key="data_preview")
        st.subheader("Start a run on this file")
        name = st.text_input("Run name", value=Path(loaded["path"]).stem, key="data_run_name")
        with st.expander("Settings", expanded=True):
            values = settings_widgets("data", skip=("format", "column_map", "axis"))
        if st.button("Create run (trains epoch 0)", key="data_create"):
            try:
                config = form_config(values, {"data": loaded["path"], "format": loaded["format"],
                                              "column_map": loaded["column_map"], "axis": loaded["axis"]})
            except (ValueError, TypeError) as exc:
                st.error(escape_markdown(str(exc)))
            else:
                if create_run(config, name.strip() or None) is not None:
                    st.session_state.pop("data_loaded", None)
                    st.rerun()
