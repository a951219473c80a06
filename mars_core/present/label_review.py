"""The Review page's Labels tab: likely mislabeled pairs one at a time, both responses side by side.

Layout only: the ranking, the decisions and their conflicts come from mars_core.review.labels. Every
dataset text is shown with st.text or escaped (never as markdown or HTML).
"""

from __future__ import annotations

import streamlit as st

from mars_core.analysis.label_errors import LABEL_DECISIONS
from mars_core.present import page_data
from mars_core.present.safe_markdown import escape_markdown
from mars_core.review import labels
from mars_core.store.sqlite import Store

BUTTONS = {"keep": "Keep the label", "swap": "Swap (the other is better)", "drop": "Drop the pair",
           "unsure": "Unsure"}


def _flash(level: str, message: str) -> None:
    st.session_state.setdefault("labels_flash", []).append((level, message))


def _on_decision(store: Store, run_id: int, pair_id: str, decision: str, expected: str | None, score: float) -> None:
    """Button callback: runs before the page re-renders, so the next pair shows at once."""
    if decision == "skip":
        outcome = labels.LabelOutcome(pair_id, True, f"Skipped {pair_id}; it stays undecided.")
    else:
        reviewer = st.session_state.get("reviewer", "")
        outcome = labels.decide(store, run_id, pair_id, decision, reviewer, expected, score)
    _flash("success" if outcome.ok else "warning", outcome.message)
    if outcome.ok or outcome.conflict:
        seen = st.session_state.setdefault("labels_seen", [])
        if pair_id not in seen:
            seen.append(pair_id)


def _pct(p: float) -> str:
    return f"{100 * p:.0f} %"


def label_tab(store: Store, run_id: int, reviewer: str) -> None:
    for level, message in st.session_state.pop("labels_flash", []):
        getattr(st, level)(escape_markdown(message))
    scores = page_data.label_scores(store, run_id)
    if scores is None:
        st.info(labels.why_no_scores(store, run_id))
        return
    counts = labels.progress(store, run_id, scores)
    st.caption(escape_markdown(
        f"Score σ(−Δ): the probability, under a model that never trained on the pair ({scores.folds}), that the "
        f"rejected response is the better one. {scores.n_flagged} of {len(scores.frame)} pairs score at least "
        f"{scores.threshold:.2f} (the mean confidence in the given labels: confident learning's flag)."
    ))
    for col, key in zip(st.columns(5), (*LABEL_DECISIONS, "flagged"), strict=True):
        col.metric(key.capitalize(), counts[key])
    only_flagged = st.toggle("Only flagged pairs", value=True, key="labels_only_flagged")
    queue = labels.ranking(store, run_id, undecided_only=True, scores=scores)
    if only_flagged:
        queue = queue[queue["flagged"]]
    seen = st.session_state.setdefault("labels_seen", [])
    remaining = queue[~queue["pair_id"].isin(seen)]
    if remaining.empty:
        st.info("No undecided pair left in this pass." if not queue.empty else "No undecided pair to review.")
        if seen and st.button("Start another pass (show skipped pairs again)", key="labels_restart"):
            st.session_state["labels_seen"] = []
            st.rerun()
    else:
        item = labels.with_texts(store, run_id, remaining.head(1)).iloc[0]
        _focus(store, run_id, item, len(queue) - len(remaining) + 1, len(queue), reviewer)
    with st.expander(f"Ranking and decisions ({len(scores.frame):,} pairs)"):
        start, stop = page_data.table_page(len(scores.frame), "labels_table_page")
        table = labels.with_texts(store, run_id, labels.ranking(store, run_id, scores=scores).iloc[start:stop])
        st.dataframe(table[["rank", "pair_id", "score", "confidence", "flagged", "decision", "reviewer",
                            "gold_margin", "prompt", "chosen", "rejected"]], hide_index=True, key="labels_table")
        st.caption("Decisions apply at the next Step (swapped pairs train reversed, dropped ones not at all; their "
                   "paraphrased children follow) and in exports (column label_decision).")


def _focus(store: Store, run_id: int, item, position: int, total: int, reviewer: str) -> None:
    st.caption(escape_markdown(
        f"Pair {position} of {total} · {item['pair_id']} · rank {item['rank']} · score {item['score']:.2f}"))
    st.markdown("**Prompt**")
    st.text(item["prompt"])
    left, right = st.columns(2)
    left.markdown("**Chosen** (labelled better)")
    left.text(item["chosen"])
    right.markdown("**Rejected** (labelled worse)")
    right.text(item["rejected"])
    m = st.columns(3)
    m[0].metric("Model's confidence in the label", _pct(item["confidence"]),
                help="σ(Δ) out of fold: how likely the chosen response is the better one, by a model that never "
                     "trained on this pair")
    m[1].metric("Out-of-fold margin Δ", f"{item['oof_margin']:+.3f}")
    gold = item["gold_margin"]
    m[2].metric("Gold margin (demo suites)", "—" if gold is None or gold != gold else f"{gold:+.3f}")
    if not reviewer:
        st.warning("Enter your name above to decide; nothing can be decided anonymously.")
    cols = st.columns(5)
    for col, action in zip(cols, (*LABEL_DECISIONS, "skip"), strict=True):
        col.button(
            BUTTONS.get(action, "Skip"), key=f"labels_{action}", disabled=not reviewer and action != "skip",
            type="primary" if action == "swap" else "secondary",
            on_click=_on_decision, args=(store, run_id, item["pair_id"], action, None, float(item["score"])),
            help=labels.DECISION_EXPLAINED.get(action, "leave it undecided for now"),
        )
