"""Teach: MARS on a 2-D toy, where the reward is w·Δφ and everything can be drawn."""

from __future__ import annotations

import numpy as np
import streamlit as st

from mars_core.data.toy import toy_gold_weights
from mars_core.present import figures, page_data, readouts
from mars_core.present.app_shell import epoch_picker, epochs_or_notice, page_frame, run_config, select_run
from mars_core.present.safe_markdown import escape_markdown

store, run_id, _ = page_frame("Teach: MARS in two dimensions", epochs=False)
config = run_config(store, run_id) if run_id is not None else None

if config is not None and not config.data.is_toy:
    toys = [r for r in store.list_runs() if r.config.get("data", {}).get("source") == "demo:toy"]
    st.info("This page draws the 2-D toy; the selected run is not one.")
    if toys and st.button(f"Switch to the toy run #{toys[0].id} ({escape_markdown(toys[0].name)})", key="to_toy"):
        select_run(toys[0].id)
        st.rerun()
    st.stop()

done = epochs_or_notice(store, run_id)
if done:
    epoch = epoch_picker(done, "teach_epoch")
    points = page_data.toy_points(store, run_id, epoch)
    record = store.get_epoch(run_id, epoch, with_model=True)
    weights = np.asarray(record.model_state["weights"], dtype=float)
    previous = store.get_epoch(run_id, epoch - 1, with_model=True) if epoch - 1 in done else None
    prev_weights = np.asarray(previous.model_state["weights"], dtype=float) if previous else None
    hessian, prev_hessian = readouts.toy_hessians(points, weights, prev_weights, config.train.l2, epoch)
    gold = toy_gold_weights(2)
    st.plotly_chart(figures.toy_figure(points, weights, gold, hessian, prev_weights, prev_hessian, epoch=epoch),
                    key="toy_figure")
    readout = readouts.toy_readout(points, weights, gold, hessian)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Angle between w and w*", f"{readout.angle_deg:.1f}°")
    c2.metric("Pairs picked this epoch", readout.picked)
    picked_mean = "—" if readout.picked == 0 else f"{readout.mean_abs_margin_picked:.2f}"
    c3.metric("Mean |Δ| picked / all", f"{picked_mean} / {readout.mean_abs_margin_all:.2f}")
    c4.metric("Hessian eigenvalues", ", ".join(f"{e:.3f}" for e in readout.eigenvalues))
    st.caption(
        "Each point is one pair's Δφ = φ(y+) − φ(y−); blue points are ranked right (wᵀΔφ > 0), red ones wrong. "
        "Orange rings: the pairs that got paraphrase budget at this epoch (ring size grows with the count), chosen "
        "by the model before this epoch (dotted orange boundary). Purple dots: synthetic pairs (paraphrases are "
        "small perturbations of φ). The brown ellipse is 2·H^{1/2}·(unit circle): semi-axes 2√λ_k along H's "
        "eigenvectors, drawn at the same scale every epoch, so a shrinking ellipse means a flatter loss. Its long "
        "axis points where the uncertain pairs' Δφ spread out. Press Step in the sidebar and watch it move."
    )
    if epoch == 0:
        st.info("Epoch 0 is the model trained on the original pairs; nothing was picked yet. Press Step.")
    with st.expander("The maths in three lines", expanded=True):
        st.markdown("Bradley-Terry: the reward model prefers y+ with probability σ(Δ), Δ = wᵀΔφ; training "
                    "minimises")
        st.latex(r"L(w) = -\frac{1}{N}\sum_i \log \sigma(\Delta_i) + \frac{\lambda}{2}\lVert w\rVert^2,"
                 r"\qquad \Delta_i = w^\top \Delta\phi_i")
        st.markdown("Its curvature per pair is σ′(Δ), largest for pairs on the boundary:")
        st.latex(r"\sigma'(t) = \sigma(t)\,(1-\sigma(t)) \le \tfrac14,\qquad "
                 r"H = \frac{1}{N}\sum_i \sigma'(\Delta_i)\,\Delta\phi_i\,\Delta\phi_i^\top + \lambda I")
        st.markdown("MARS gives each pair a share of the paraphrase budget that falls with its margin:")
        st.latex(r"q_i = \frac{\exp(-\tau\,|\Delta_i|)}{\sum_j \exp(-\tau\,|\Delta_j|)}")
