"""Pairs: each synthetic pair beside its parent, word-level changes marked, with similarity and margins.

All dataset and generated text goes through st.text or diff_markdown (escaped markdown);
nothing here uses unsafe_allow_html.
"""

from __future__ import annotations

import math

import streamlit as st

from mars_core.present import page_data, readouts, views
from mars_core.present.app_shell import page_frame
from mars_core.present.safe_markdown import diff_markdown, escape_markdown

store, run_id, done = page_frame(
    "Pairs", "Original and paraphrased pairs side by side. Red strike-through: words the paraphrase dropped; "
    "green bold: words it added.")


def _num(value: float, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _side(label: str, original: str, text: str, paraphrased: bool, similarity: float, status: str, kind: str) -> None:
    st.markdown(f"**{label}**")
    if not paraphrased:
        st.caption("original response, unchanged")
        st.text(text)
        return
    before, after = diff_markdown(original, text)
    st.caption(f"{'contrast rewrite' if kind == 'contrast_rewrite' else 'paraphrase'} · similarity "
               f"{_num(similarity)} · review: {escape_markdown(status)}")
    a, b = st.columns(2)
    with a:
        st.caption("original")
        st.markdown(before)
    with b:
        st.caption("new")
        st.markdown(after)


if done:
    children = page_data.pairs(store, run_id, split="train", synthetic=True)
    related = {p.id for p in children} | {p.parent_id for p in children}
    parents = [p for p in page_data.pairs(store, run_id, split="train", synthetic=False) if p.id in related]
    frame = page_data.margins(store, run_id)
    frame = frame[frame["pair_id"].isin(related)]  # only the margins of these pairs (not all 100,000)
    synthetic = views.synthetic_pairs_frame(parents + children, store.get_paraphrases(run_id), frame)
    counts = store.review_counts(run_id)
    st.caption(f"{len(synthetic)} synthetic pairs; paraphrases: {counts.get('pending', 0)} pending, "
               f"{counts.get('accepted', 0)} accepted, {counts.get('edited', 0)} edited, "
               f"{counts.get('rejected', 0)} rejected, {counts.get('filtered', 0)} dropped by the filters.")
    if synthetic.empty:
        st.info("No synthetic pairs yet: press Step in the sidebar to paraphrase the pairs the strategy picks.")
    else:
        epochs = sorted(synthetic["epoch_added"].unique().tolist())
        c1, c2 = st.columns([1, 3])
        epoch = c1.selectbox("Added in epoch", ["all", *epochs], key="pairs_epoch")
        rows = synthetic if epoch == "all" else synthetic[synthetic["epoch_added"] == epoch]
        parents = readouts.parent_groups(rows)
        options = parents["parent_id"].tolist()
        info = {r.parent_id: (r.children, r.parent_margin) for r in parents.itertuples()}
        parent_id = c2.selectbox(
            "Parent pair (smallest |Δ| first)", options, key="pairs_parent",
            format_func=lambda p: f"{p} · {info[p][0]} new pairs · parent Δ {_num(info[p][1])}",
        )
        children = rows[rows["parent_id"] == parent_id]
        first = children.iloc[0]
        st.subheader("Parent")
        st.caption(f"Δ when the children were added: {_num(first['parent_margin'])}")
        st.caption("prompt")
        st.text(first["prompt"])
        c1, c2 = st.columns(2)
        with c1:
            st.caption("chosen (y+)")
            st.text(first["parent_chosen"])
        with c2:
            st.caption("rejected (y−)")
            st.text(first["parent_rejected"])
        st.subheader(f"{len(children)} synthetic pairs")
        for child in children.itertuples():
            with st.container(border=True):
                st.caption(f"{escape_markdown(child.pair_id)} · epoch {child.epoch_added} · reward model's Δ on it: "
                           f"{_num(child.margin)} (parent {_num(child.parent_margin)})")
                left, right = st.columns(2)
                with left:
                    _side("chosen (y+)", child.parent_chosen, child.chosen, child.chosen_paraphrased,
                          child.chosen_similarity, child.chosen_status, child.chosen_kind)
                with right:
                    _side("rejected (y−)", child.parent_rejected, child.rejected, child.rejected_paraphrased,
                          child.rejected_similarity, child.rejected_status, child.rejected_kind)
        with st.expander("All synthetic pairs as a table"):
            st.dataframe(rows.drop(columns=["prompt"]), hide_index=True, key="synthetic_table")
