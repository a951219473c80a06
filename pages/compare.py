"""Compare: does MARS beat its baselines here? Stored comparisons with error bars, and a small one started here."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from mars_core.compare.comparison import STRATEGY_SETTINGS, CompareSpec, start_comparison
from mars_core.compare.results import Comparison, comparison_title, list_comparisons, load_comparison
from mars_core.present import compare_figures as cf
from mars_core.present import compare_views as cv
from mars_core.present.app_shell import db_path, page_frame, session_id
from mars_core.present.job_progress import follow, job_runner, report
from mars_core.run.config import DataConfig, RefineConfig, RunConfig
from mars_core.run.jobs import JobRefused


@st.cache_data(show_spinner=False, max_entries=16)
def _load(path: str, mtime: float) -> dict:
    return load_comparison(path).to_dict()


def compare_root() -> Path:
    return Path(os.environ.get("MARS_COMPARE_DIR") or Path(db_path()).parent / "compare")


page_frame("Compare strategies", "Every strategy at the same paraphrase budget, over seeds that vary the split and "
           "the selection; differences are paired (same test pairs, same seed) with bootstrap 95% intervals.",
           epochs=False)
root = compare_root()
stored, start = st.tabs(["Stored comparisons", "Run a small comparison"])

with stored:
    folders = list_comparisons(root)
    if not folders:
        st.info(f"No stored comparison under `{root}`. Start a small one in the next tab, or run "
                f"`python -m mars_core compare --data demo --out {root}/NAME`.")
    else:
        options = [str(p) for p in folders]
        if st.session_state.get("_compare_show") in options:  # a job just finished: show its comparison
            st.session_state["compare_folder"] = st.session_state.pop("_compare_show")
        summary = Path(st.selectbox("Comparison", options, format_func=lambda p: comparison_title(Path(p)),
                                    key="compare_folder"))
        comparison = Comparison.from_dict(_load(str(summary), summary.stat().st_mtime))
        tag = comparison_title(summary)  # widget keys per comparison: their options differ between comparisons
        st.caption(cv.comparison_caption(comparison))
        metrics = cv.available_metrics(comparison)
        metric = st.selectbox("Metric", metrics, format_func=cv.metric_label, key=f"compare_metric:{tag}")
        label = cv.metric_label(metric)
        value = None
        if comparison.sweep != "none":
            values = [p["value"] for p in comparison.points]
            value = st.selectbox(cv.sweep_axis_label(comparison), values, index=len(values) - 1,
                                 key=f"compare_point:{tag}")
            st.plotly_chart(cf.sweep_figure(cv.sweep_frame(comparison, metric), cv.sweep_axis_label(comparison),
                                            label), key="compare_sweep")
        st.dataframe(cv.strategy_table(comparison, metric, value), hide_index=True)
        left, right = st.columns(2)
        with left:
            baseline = st.segmented_control("Difference to", ["uniform", "none", "won"], default="uniform",
                                            key="compare_baseline") or "uniform"
            st.plotly_chart(cf.difference_figure(cv.difference_frame(comparison, metric, baseline, value),
                                                 baseline, label), key="compare_difference")
        with right:
            st.plotly_chart(cf.distribution_figure(cv.distribution_frame(comparison, metric, value), label),
                            key="compare_distribution")
        st.caption(f"File: `{summary}` (CSV files and runs.db beside it). An interval that "
                   "contains 0 means this comparison cannot tell the strategies apart; the grey band is the "
                   "smallest difference it could have detected.")

with start:
    st.markdown("A small comparison on a built-in suite, run in the background. The 2-D toy needs no language "
                "model and takes seconds; the text demo paraphrases with the packaged LM and takes minutes.")
    jobs = job_runner()
    job = jobs.latest("compare:", session_id())
    with st.form("compare_form"):
        data = st.segmented_control("Data", ["toy", "demo"], default="toy", key="compare_data") or "toy"
        strategies = st.multiselect("Strategies", list(STRATEGY_SETTINGS), default=["none", "uniform", "won", "mars"],
                                    key="compare_strategies")
        c1, c2, c3 = st.columns(3)
        seeds = c1.number_input("Seeds", 1, 10, 3, key="compare_seeds")
        budget = c2.number_input("Budget per epoch", 1, 512, 16, key="compare_budget")
        epochs = c3.number_input("Epochs", 1, 5, 2, key="compare_epochs")
        name = st.text_input("Folder name", value=f"{data}-small", key="compare_name")
        submitted = st.form_submit_button("Start comparison", disabled=bool(job and job.running), key="compare_start")
    if submitted:
        spec = CompareSpec(
            base=RunConfig(data=DataConfig(source=f"demo:{'toy' if data == 'toy' else 'text'}",
                                           n_pairs=300 if data == "toy" else 120),
                           refine=RefineConfig(epochs=int(epochs), budget_per_epoch=int(budget))),
            strategies=tuple(strategies) or ("none", "uniform", "mars"), seeds=int(seeds),
        )
        out = root / "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name.strip() or "small")
        try:
            job = start_comparison(jobs, spec, out, session_id())
            st.session_state["_compare_show"] = str(out / "comparison.json")
        except JobRefused:
            st.warning(f"A comparison into `{out}` is already running in this server.")
        except ValueError as exc:
            st.error(str(exc))
    if job is not None and job.running:
        follow(job)
    if job is not None and not job.running:
        report(job, "comparison")
        if not job.error:
            st.success(f"Comparison done in {job.seconds:.0f} s: `{job.key.removeprefix('compare:')}` "
                       "(choose it under Stored comparisons).")
