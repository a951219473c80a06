"""Budget: how an epoch's paraphrase budget was split, and what other τ or strategies would have done."""

from __future__ import annotations

import dataclasses

import streamlit as st

from mars_core.present import figures, page_data, readouts, views
from mars_core.present.app_shell import epoch_picker, page_frame, run_config
from mars_core.run.epoch_metrics import AllocationSummary


def _number(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)  # summaries of older stores lack some values


store, run_id, done = page_frame(
    "Budget", "q_i = softmax(−τ·m_i / scale) with m = |Δ| (or Δ); the budget B_t of kept paraphrases is "
    "split into whole counts B_t·q_i.")
if done:
    config = run_config(store, run_id)
    frame = page_data.margins(store, run_id)
    allocated = [e for e in done if e >= 1]
    if allocated:
        epoch = epoch_picker(allocated, "budget_epoch")
        summary = AllocationSummary.from_dict(store.get_epoch(run_id, epoch).allocation)
        st.subheader(f"Epoch {epoch}: the allocation in force")
        cols = st.columns(4)
        cols[0].metric("Strategy", summary.strategy)
        cols[1].metric("τ (configured)", _number(summary.tau, "g"))
        cols[2].metric("τ in force", _number(summary.tau_in_force, ".3g"),
                       help="the τ applied to m itself: τ for raw, τ/std(Δ) for std; 0 for uniform/none")
        cols[3].metric("Effective pairs exp(H(q))", _number(summary.effective_n, ".1f"))
        st.markdown(
            f"Margin mode **{summary.margin_mode}** ({'m = |Δ|' if summary.margin_mode == 'abs' else 'm = Δ'}), "
            f"τ scale **{summary.tau_scale}**, margins the allocation saw: **{summary.margin_source}**, "
            f"budget **{summary.budget}** kept paraphrases, **{summary.total}** allocated over "
            f"**{summary.pairs_picked}** pairs."
        )
        table = views.allocation_frame(frame, epoch)
        st.plotly_chart(figures.allocation_figure(table, f"Epoch {epoch}: shares and counts, sorted"),
                        key="stored_allocation")
        with st.expander(f"Integer counts ({int((table['count'] > 0).sum())} pairs got budget)"):
            st.dataframe(table[table["count"] > 0], hide_index=True, key="counts_table")
    else:
        epoch = done[-1]
        st.info("Epoch 0 trains on the original pairs without augmentation, so nothing was allocated yet. "
                "Below: what the first Step would allocate on the current margins.")

    st.subheader("What if? (nothing is stepped)")
    rows, sources = readouts.allocation_sources(frame, epoch, allocated=bool(allocated))
    c1, c2, c3 = st.columns(3)
    source = c1.radio("Allocate on", list(sources), key="whatif_source")
    tau_max = max(20.0, float(config.allocation.tau))
    tau = c2.slider("τ", 0.0, tau_max, float(config.allocation.tau), 0.1, key="whatif_tau")
    budget = int(c3.number_input("Budget (generations)", 0, 100_000, config.refine.budget_per_epoch, key="whatif_budget"))
    alloc_config = dataclasses.replace(config.allocation, tau=float(tau))
    what_if, what_if_summary = views.what_if_allocations(
        sources[source], budget, alloc_config, seed=config.refine.seed, pair_ids=rows["pair_id"].tolist())
    mars = what_if_summary.set_index("strategy").loc["mars"]
    m1, m2, m3 = st.columns(3)
    m1.metric("MARS effective pairs exp(H(q))", f"{mars['effective_n']:.1f}", help=f"of {len(rows)} pairs")
    m2.metric("MARS τ in force", f"{mars['tau_in_force']:.3g}", help=f"τ scale: {alloc_config.tau_scale}")
    m3.metric("MARS pairs picked", int(mars["pairs_picked"]))
    st.caption(f"Margin mode {alloc_config.margin_mode}, τ scale {alloc_config.tau_scale}, rounding "
               f"{alloc_config.rounding}; uniform ignores τ, West-of-N (won) uses the same τ towards large m.")
    mars_table = what_if[what_if["strategy"] == "mars"].sort_values("rank")
    st.plotly_chart(figures.allocation_figure(mars_table, f"MARS at τ = {tau:g}: shares and counts, sorted"),
                    key="whatif_allocation")
    st.plotly_chart(figures.strategy_comparison_figure(what_if, what_if_summary), key="strategy_comparison")
    st.dataframe(what_if_summary, hide_index=True, key="whatif_summary", column_config={
        "effective_n": st.column_config.NumberColumn("effective pairs", format="%.1f"),
        "tau_in_force": st.column_config.NumberColumn("τ in force", format="%.3g"),
        "mean_abs_margin_picked": st.column_config.NumberColumn("mean |Δ| of allocated units", format="%.3f"),
    })
