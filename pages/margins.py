"""Margins: the distribution of Δ per epoch, held-out quality over epochs, and the hardest pairs."""

from __future__ import annotations

import streamlit as st

from mars_core.present import figures, page_data, readouts, views
from mars_core.present.app_shell import epoch_picker, page_frame
from mars_core.review import labels

store, run_id, done = page_frame(
    "Margins", "Δ = r(x, y+) − r(x, y−): positive when the reward model ranks the pair as labelled. "
    "MARS spends its paraphrase budget where |Δ| is small.")
if done:
    frame = page_data.margins(store, run_id)
    epochs = views.epoch_frame(store.epoch_table(run_id))
    split = st.segmented_control("Pairs", ["test", "train", "synthetic"], default="test", key="margins_split",
                                 help="test: held-out pairs; train: the original training pairs; "
                                      "synthetic: the pairs added in that epoch") or "test"
    left, right = st.columns([2, 3])
    with left:
        epoch = epoch_picker(done, "margins_epoch")
    overlay = right.multiselect("Overlay other epochs (same bins)", [e for e in done if e != epoch],
                                key="margins_overlay")
    shown = sorted({epoch, *overlay})
    samples = views.margins_by_epoch(frame, split, shown)
    edges = views.shared_bins(views.margins_by_epoch(frame, split).values())
    st.subheader(f"Epoch {epoch}")
    if all(len(v) == 0 for v in samples.values()):
        st.info(f"No {split} margins at epoch {epoch}" + (" (synthetic pairs appear from epoch 1)." if split ==
                                                            "synthetic" else "."))
    st.plotly_chart(figures.margin_histogram(samples, edges, split), key="margin_histogram")

    tiles = readouts.quality_tiles(epochs, epoch, views.QUALITY_METRICS)
    for col, tile in zip(st.columns(len(tiles)), tiles, strict=True):
        col.metric(tile.label, tile.value, tile.delta)
    st.plotly_chart(figures.quality_curves(epochs, views.QUALITY_METRICS), key="quality_curves")
    validation = figures.validation_curve_figure(store.epoch_table(run_id))  # fine-tuned model only
    if validation is not None:
        st.plotly_chart(validation, key="validation_curve")

    st.subheader("Hardest pairs")
    c1, c2, c3 = st.columns(3)
    kind = c1.radio("Show", ["smallest |Δ|", "mis-ranked (Δ < 0)"], key="hard_kind", horizontal=True)
    hard_split = c2.radio("Among", ["train", "test"], key="hard_split", horizontal=True)
    n = int(c3.number_input("How many", 5, 500, 20, step=5, key="hard_n"))
    pairs = page_data.pairs(store, run_id, split=hard_split, synthetic=False)
    hard = views.hardest_pairs(frame, pairs, epoch, hard_split, n, misranked_only=kind.startswith("mis"))
    if hard.empty:
        st.success("No mis-ranked pairs at this epoch." if kind.startswith("mis") else "No pairs.")
    else:
        st.dataframe(hard, hide_index=True, key="hard_table", column_config={
            "margin": st.column_config.NumberColumn("Δ", format="%.3f"),
            "gold_margin": st.column_config.NumberColumn("gold Δ", format="%.3f"),
        })
        if hard_split == "train":
            if st.button("Review the paraphrases of these pairs", key="review_hard"):
                st.session_state["review_pair_ids"] = hard["pair_id"].tolist()
                st.switch_page("pages/review.py")
            st.caption("Opens the Review page on the paraphrases of these pairs only.")

    st.subheader("Likely mislabeled")
    scores = page_data.label_scores(store, run_id, epoch)
    if scores is None:
        st.info(labels.why_no_scores(store, run_id))
    else:
        n_sus = int(st.number_input("How many", 5, 500, 20, step=5, key="mislabeled_n"))
        st.dataframe(views.likely_mislabeled(labels.suspects(store, run_id, n_sus, scores=scores)), hide_index=True,
                     key="mislabeled_table", column_config={
                         "score": st.column_config.NumberColumn("P(label wrong)", format="%.3f"),
                         "oof_margin": st.column_config.NumberColumn("out-of-fold Δ", format="%.3f"),
                         "gold_margin": st.column_config.NumberColumn("gold Δ", format="%.3f")})
        st.caption(f"σ(−Δ) from {scores.folds}: the chance, by a model that never trained on the pair, that the "
                   f"rejected response is the better one; {scores.n_flagged} pairs reach the confident-learning "
                   f"threshold {scores.threshold:.2f}. Correct them on the Review page (Labels tab).")
