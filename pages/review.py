"""Review generated paraphrases before (gated) or while (auto) they train the reward model.

One item at a time, most suspicious first: original and paraphrase side by side with the
changed words marked, the filters' verdicts, and how far the paraphrase moves its pair's
margin. Every decision is signed and goes straight to the store in one transaction, so a
second reviewer on the same item gets "already decided by X" instead of overwriting it.
All dataset and generated text is escaped (never unsafe_allow_html).
"""

from __future__ import annotations

import streamlit as st

from mars_core.present import page_data
from mars_core.present.app_shell import page_frame
from mars_core.present.label_review import label_tab
from mars_core.present.model_cache import review_models
from mars_core.present.safe_markdown import diff_markdown, escape_markdown
from mars_core.review import paraphrases as review
from mars_core.store.sqlite import REVIEW_STATUSES, Store

ORDER_LABELS = {"suspicious": "Most suspicious first", "oldest": "Oldest first"}
EXPORT_SELECTIONS = {
    "reviewed": "reviewed: synthetic pairs whose paraphrases a person accepted or edited",
    "training": "training: what the next step trains on under this run's review mode",
    "all": "all: every stored training pair, with its review state",
}
SHOWN_COLUMNS = [
    "id", "status", "side", "epoch", "suspicion", "similarity", "margin", "reward_shift", "margin_shift",
    "polarity_source", "polarity_candidate", "negations", "reasons", "original", "paraphrase", "edited_text",
    "reviewer",
]


def _reward_model(db_path: str, run_id: int, epoch: int):
    """One model per run (its newest epoch), a couple of runs per server: see present/model_cache.py."""
    with st.spinner("Loading the reward model…"):
        return review_models().get(db_path, run_id, epoch,
                                   lambda: review.load_reward_model(Store(db_path), run_id, epoch))


def _flash(level: str, message: str) -> None:
    st.session_state.setdefault("review_flash", []).append((level, message))


def _show_flash() -> None:
    for level, message in st.session_state.pop("review_flash", []):
        getattr(st, level)(escape_markdown(message))


def _on_decision(action: str, store: Store, run_id: int, pid: str, expected: str) -> None:
    """Button callback: runs before the page re-renders, so the next item shows at once."""
    reviewer = st.session_state.get("reviewer", "")
    if action == "accept":
        outcome = review.accept(store, run_id, pid, reviewer, expected)
    elif action == "reject":
        outcome = review.reject(store, run_id, pid, reviewer, expected)
    elif action == "edit":
        text = st.session_state.get(f"review_edit_{pid}", "")
        outcome = review.edit(store, run_id, pid, reviewer, text, expected)
    else:
        outcome = review.skip(pid)
    _flash("success" if outcome.ok else "warning", outcome.message)
    if outcome.ok or outcome.conflict:
        seen = st.session_state.setdefault("review_seen", [])
        if pid not in seen:
            seen.append(pid)


def _reviewer_input() -> str:
    # the widget's own key is dropped when another page is shown; "reviewer" keeps the name for the session
    if "review_reviewer" not in st.session_state:
        st.session_state["review_reviewer"] = st.session_state.get("reviewer", "")
    name = st.text_input(
        "Your name", key="review_reviewer", placeholder="required: every decision is signed",
        help="Asked once per session; stored with each decision and in exports.",
    ).strip()
    st.session_state["reviewer"] = name
    return name


def _progress(store: Store, run_id: int) -> None:
    counts = review.progress_counts(store, run_id)
    cols = st.columns(5)
    for col, key in zip(cols, ("pending", *REVIEW_STATUSES[1:], "filtered"), strict=True):
        col.metric(key.capitalize(), counts[key])
    st.progress(
        counts["fraction_decided"],
        text=f"{counts['decided']} of {counts['reviewable']} reviewable paraphrases decided "
        f"({counts['filtered']} dropped by the filters are not reviewable)",
    )


def _filters(store: Store, run_id: int) -> dict:
    epochs = [e for e in store.epochs(run_id) if e > 0]
    last = store.last_epoch(run_id)
    margins = page_data.margins(store, run_id, last, "train")["margin"].tolist() if last is not None else []
    with st.expander("Filters and order", expanded=True):
        c1, c2, c3, c4 = st.columns(4)
        statuses = c1.multiselect(
            "Status", [*REVIEW_STATUSES, "filtered"], default=["pending"], key="review_status",
            help="filtered: dropped by the automatic filters; shown for reference, not reviewable",
        )
        side = c2.selectbox("Side", ["both", "chosen", "rejected"], key="review_side")
        epoch = c3.selectbox("Epoch", ["all", *epochs], key="review_epoch")
        order = c4.radio("Order", list(ORDER_LABELS), format_func=ORDER_LABELS.get, key="review_order")
        s1, s2 = st.columns(2)
        sim = s1.slider(
            "Cosine similarity to the original", 0.0, 1.0, (0.0, 1.0), step=0.01, key="review_similarity",
            help="Items without a measured similarity (toy vectors) show only with the full 0–1 range.",
        )
        margin_range = None
        if margins and max(margins) > min(margins):
            lo, hi = float(min(margins)), float(max(margins))
            chosen = s2.slider("Pair margin Δ (current model)", lo, hi, (lo, hi), key="review_margin")
            if chosen != (lo, hi):
                margin_range = chosen
    return {
        "status": tuple(statuses) or ("pending",), "side": None if side == "both" else side,
        "epoch": None if epoch == "all" else int(epoch), "order": order,
        "min_similarity": None if sim == (0.0, 1.0) else sim[0],
        "max_similarity": None if sim == (0.0, 1.0) else sim[1], "margin_range": margin_range,
    }


def _next_item(queue, seen: list[str]):
    remaining = queue[~queue["id"].isin(seen)]
    return None if remaining.empty else remaining.iloc[0]


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def _fmt(value, digits: int = 3) -> str:
    if not _finite(value):
        return "—" if value is None or isinstance(value, float) else str(value)
    return f"{value:.{digits}f}"


def _delta(value) -> str | None:
    return f"{value:+.3f}" if _finite(value) else None


def _focus(store: Store, run_id: int, queue, reviewer: str) -> None:
    seen = st.session_state.setdefault("review_seen", [])
    if queue.empty:
        st.info("Nothing to review with these filters.")
        return
    item = _next_item(queue, seen)
    if item is None:
        st.info(f"You have been through all {len(queue)} items matching the filters in this pass.")
        if st.button("Start another pass (show skipped items again)", key="review_restart"):
            st.session_state["review_seen"] = []
            st.rerun()
        return
    position = len(queue) - len(queue[~queue["id"].isin(seen)]) + 1
    st.caption(escape_markdown(
        f"Item {position} of {len(queue)} · {item['id']} · {item['side']} side · epoch {item['epoch']} · "
        f"status {item['status']} · suspicion {item['suspicion']:.2f} / 3"
    ))
    with st.expander("Prompt and the other response", expanded=False):
        st.text(item["prompt"])
        other = "rejected" if item["side"] == "chosen" else "chosen"
        st.caption(f"The other response of the pair ({other})")
        st.text(item["other_response"])

    left, right = diff_markdown(item["original"], item["paraphrase"])
    c1, c2 = st.columns(2)
    c1.markdown(f"**Original ({item['side']})**")
    c1.markdown(left)
    c2.markdown("**Paraphrase**")
    c2.markdown(right)
    if item["edited_text"]:
        st.caption("Stored edit")
        st.text(item["edited_text"])

    m = st.columns(5)
    m[0].metric("Cosine similarity", _fmt(item["similarity"]))
    m[1].metric("Reward, original", _fmt(item["reward_original"]))
    m[2].metric("Reward, paraphrase", _fmt(item["reward_paraphrase"]), delta=_delta(item["reward_shift"]))
    m[3].metric("Pair margin Δ", _fmt(item["margin"]))
    m[4].metric("Δ with the paraphrase", _fmt(item["margin_after"]), delta=_delta(item["margin_shift"]))
    if item["flips_margin"]:
        st.warning("With this paraphrase the current model ranks the pair the other way round "
                   "(the margin changes sign): check that the label still holds.")
    st.caption(escape_markdown(
        f"Filter verdicts: {item['reasons'] or 'passed every filter'} · polarity "
        f"{item['polarity_source'] or '—'} → {item['polarity_candidate'] or '—'} · "
        f"negations {item['negations']} · "
        "similarity to the other "
        f"response {_fmt(item['other_similarity'])} · length ratio {_fmt(item['length_ratio'], 2)} · "
        f"suspicion = polarity {item['polarity_score']:.2f} + "
        f"dissimilarity {item['dissimilarity_score']:.2f} "
        f"+ margin shift {item['shift_score']:.2f}"
    ))

    pid, expected = item["id"], item["status"]
    reviewable = expected != "filtered"
    if not reviewer:
        st.warning("Enter your name above to decide; nothing can be decided anonymously.")
    elif not reviewable:
        st.info("The filters dropped this candidate; it never trains and cannot be reviewed.")
    disabled = not reviewer or not reviewable
    st.text_area(
        "Edited paraphrase (stored beside the generated text; trains instead of it)",
        value=item["edited_text"] or item["paraphrase"], key=f"review_edit_{pid}", disabled=disabled,
    )
    b = st.columns(4)
    for col, (action, label) in zip(
        b, (("accept", "Accept"), ("reject", "Reject"), ("edit", "Save edit"), ("skip", "Skip")), strict=True
    ):
        col.button(
            label, key=f"review_{action}", disabled=disabled and action != "skip",
            type="primary" if action == "accept" else "secondary",
            on_click=_on_decision, args=(action, store, run_id, pid, expected),
        )


def _export(store: Store, run_id: int) -> None:
    selection = st.radio(
        "Rows", list(EXPORT_SELECTIONS), format_func=EXPORT_SELECTIONS.get, key="review_export_selection"
    )
    if not st.toggle("Prepare the files", key="review_export_prepare",
                     help="Builds the JSONL and CSV files (reads every pair of the run: seconds on a large run)"):
        return
    c1, c2 = st.columns(2)
    for col, fmt in zip((c1, c2), ("jsonl", "csv"), strict=True):
        data, n = review.export_bytes(store, run_id, selection, fmt)
        col.download_button(
            f"Download {fmt.upper()} ({n} rows)", data, file_name=f"mars-run{run_id}-{selection}.{fmt}",
            mime="application/jsonl" if fmt == "jsonl" else "text/csv", key=f"review_download_{fmt}",
        )
    st.caption("Columns: prompt, chosen, rejected (TRL's RewardTrainer reads them as is), then provenance, "
               "review status, reviewer and review time; edited paraphrases export the reviewer's text.")


def main() -> None:
    store, run_id, _ = page_frame("Review paraphrases", epochs=False)
    if run_id is None:
        st.info("Pick or create a run first (sidebar); its generated paraphrases appear here.")
        return
    last = store.last_epoch(run_id)
    run = store.get_run(run_id)
    st.caption(escape_markdown(f"Run {run_id}: {run.name}"))
    policy = review.review_policy(store, run_id)
    st.info(f"Review mode **{policy}**. {review.POLICY_EXPLAINED[policy]}")
    reviewer = _reviewer_input()
    _show_flash()
    _progress(store, run_id)
    if last is None or last == 0:
        st.info("No paraphrases yet: step the run to generate some.")
        st.subheader("Labels: likely mislabeled pairs")
        label_tab(store, run_id, reviewer)
        return
    query = _filters(store, run_id)
    picked = st.session_state.get("review_pair_ids")
    if picked:
        st.info(f"Showing only the paraphrases of the {len(picked)} pairs picked on the Margins page.")
        if st.button("Show the paraphrases of every pair", key="review_all_pairs"):
            st.session_state.pop("review_pair_ids", None)
            st.rerun()
        query["pair_ids"] = picked
    queue = page_data.review_queue(store, run_id, last, _reward_model(str(store.path), run_id, last), **query)
    focus, table, export, label_review = st.tabs(["One at a time", f"Table ({len(queue)})", "Export", "Labels"])
    with focus:
        _focus(store, run_id, queue, reviewer)
    with table:
        st.dataframe(queue[SHOWN_COLUMNS], hide_index=True, key="review_table")
    with export:
        _export(store, run_id)
    with label_review:
        label_tab(store, run_id, reviewer)


main()
