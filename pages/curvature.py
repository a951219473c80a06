"""Curvature: the Hessian of the BT loss per epoch, and where each pair's share of it comes from."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from mars_core.present import figures, page_data, views
from mars_core.present.app_shell import epoch_picker, page_frame

store, run_id, done = page_frame(
    "Curvature", "For a linear reward the BT Hessian is H = mean σ'(Δ_i)·Δφ_i Δφ_iᵀ + λI, with σ'(t) = σ(t)(1 − σ(t)) "
    "peaking at t = 0. Pair i adds σ'(Δ_i)·‖Δφ_i‖² to trace(H).")
if done:
    runs = {r.id: views.run_label(r.id, r.name, r.config) for r in store.list_runs()}
    compare = st.multiselect("Runs to compare (e.g. one per strategy)", list(runs), default=[run_id],
                             format_func=runs.get, key="curvature_runs") or [run_id]
    tables = {runs[r]: store.epoch_table(r) for r in compare}
    frames = {label: views.epoch_frame(table) for label, table in tables.items()}
    trend = views.curvature_trend_frame(frames)
    st.plotly_chart(figures.curvature_trend_figure(trend), key="curvature_trend")

    spectrum = {label: views.spectrum_frame(table, label) for label, table in tables.items()}
    all_epochs = sorted({e for frame in frames.values() for e in frame["epoch"]})
    chosen = st.multiselect("Spectra of epochs", all_epochs, default=sorted({all_epochs[0], all_epochs[-1]}),
                            key="spectrum_epochs")
    shown = pd.concat(spectrum.values(), ignore_index=True)
    shown = shown[shown["epoch"].isin(chosen)]
    st.plotly_chart(figures.spectrum_figure(shown), key="spectrum")

    st.subheader("Which pairs carry the curvature?")
    epoch = epoch_picker(done, "curvature_epoch")
    points = views.curvature_scatter_frame(page_data.margins(store, run_id, epoch, "train"), epoch)
    st.plotly_chart(figures.curvature_scatter(points), key="curvature_scatter")
    facts = views.curvature_concentration(points)
    if facts["top"]:
        st.markdown(
            f"Of the {facts['top']} largest contributions, **{facts['top_share_small_margin']:.0%}** come from pairs "
            f"with |Δ| below the median (50% would mean no relation). Rank correlation of the contribution with "
            f"|Δ|: **{facts['rank_correlation']:+.2f}**; with ‖Δφ‖: **{facts['norm_correlation']:+.2f}**."
        )
    st.caption(
        "Honest reading: σ'(Δ) alone is largest at Δ = 0, but the contribution is σ'(Δ)·‖Δφ‖², and ‖Δφ‖ varies "
        "from pair to pair (colour, recovered exactly as √(contribution/σ'(Δ))). A pair with a small |Δ| but a "
        "small ‖Δφ‖ (two nearly identical responses) adds little curvature, while a pair far from the boundary "
        "with a large ‖Δφ‖ can add more. The dashed curve is what every pair would add with the median ‖Δφ‖. "
        "Ringed points got paraphrase budget this epoch (chosen by the previous epoch's model)."
    )

    st.subheader("Curvature of the pairs the strategy spent budget on")
    st.plotly_chart(figures.picked_curvature_figure(trend, views.CURVATURE_METRICS), key="picked_curvature")
    st.caption("picked: mean contribution of the original pairs weighted by their paraphrase counts, under the "
               "model that allocated; added: mean over the new synthetic pairs; all: mean over all original pairs.")
