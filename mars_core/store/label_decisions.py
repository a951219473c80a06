"""Reviewers' corrections of original labels (keep / swap / drop / unsure): the store's methods for them.

A mixin of Store (sqlite.py), kept apart so each file reads in one sitting; the SQL stays in the store package.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import AbstractContextManager
from typing import Any

from mars_core.analysis.label_errors import LABEL_DECISIONS, apply_label_decisions
from mars_core.data.pairs import PreferencePair
from mars_core.store.records import LabelConflict, LabelDecision, StoreError


class LabelDecisionStore:
    """Needs the host's _connect, _transaction and get_pairs (Store provides them)."""

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]: ...  # Store's

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...  # Store's

    def get_pairs(
        self, run_id: int, split: str | None = None, synthetic: bool | None = None
    ) -> list[PreferencePair]: ...  # Store's

    def apply_label_decisions(self, run_id: int, pairs: list[PreferencePair]) -> list[PreferencePair]:
        """These pairs as the run's label decisions correct them (analysis.label_errors.apply_label_decisions)."""
        decisions = {pid: d.decision for pid, d in self.label_decisions(run_id).items()}
        if not decisions:
            return pairs
        return apply_label_decisions(pairs, decisions, self._reversed_children(run_id, pairs, decisions))

    def _reversed_children(
        self, run_id: int, pairs: list[PreferencePair], decisions: dict[str, str]
    ) -> set[str]:
        """Synthetic pairs built while their parent trained swapped: their chosen side descends from the
        parent's stored rejected response (directly or through the paraphrase that replaced it)."""
        children = [p for p in pairs if p.is_synthetic and p.parent_id in decisions]
        if not children:
            return set()
        parents = {p.id: p for p in self.get_pairs(run_id, split="train", synthetic=False) if p.id in decisions}
        with self._connect() as con:
            sources = {r["id"]: r["source_text"] for r in con.execute(
                "SELECT id, source_text FROM paraphrases WHERE run_id = ?", (run_id,)).fetchall()}
        out = set()
        for child in children:
            parent = parents.get(child.parent_id or "")
            origin = sources.get(child.chosen_paraphrase_id or "", child.chosen)
            if parent is not None and origin == parent.rejected and origin != parent.chosen:
                out.add(child.id)
        return out

    # -- label decisions -------------------------------------------------------------------
    def decide_label(
        self, run_id: int, pair_id: str, decision: str, reviewer: str, expected: str | None = None,
        score: float | None = None,
    ) -> LabelDecision:
        """Record one verdict on an original training pair's label, with its log line, in one transaction.

        Applies only if the pair's current decision is still ``expected`` (None: undecided), so a second
        reviewer who loaded the same pair gets LabelConflict instead of silently overwriting.
        """
        if decision not in LABEL_DECISIONS:
            raise ValueError(f"label decision must be one of {', '.join(LABEL_DECISIONS)}, got {decision!r}")
        if not reviewer or not reviewer.strip():
            raise ValueError("a label decision needs the reviewer's name")
        now = time.time()
        with self._transaction() as con:
            pair = con.execute(
                "SELECT split, parent_id FROM pairs WHERE run_id = ? AND pair_id = ?", (run_id, pair_id)
            ).fetchone()
            if pair is None:
                raise StoreError(f"no pair {pair_id!r} in run {run_id}")
            if pair["split"] != "train" or pair["parent_id"] is not None:
                raise ValueError(f"pair {pair_id} is not an original training pair; only those labels can be corrected")
            row = con.execute(
                "SELECT decision, reviewer FROM label_decisions WHERE run_id = ? AND pair_id = ?", (run_id, pair_id)
            ).fetchone()
            current = None if row is None else row["decision"]
            if current != expected:
                raise LabelConflict(pair_id, current, None if row is None else row["reviewer"])
            con.execute(
                "INSERT OR REPLACE INTO label_decisions VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, pair_id, decision, reviewer.strip(), now, score),
            )
            con.execute(
                "INSERT INTO label_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, pair_id, decision, current, reviewer.strip(), score, now),
            )
        return LabelDecision(pair_id, decision, reviewer.strip(), now, score)

    def label_decisions(self, run_id: int) -> dict[str, LabelDecision]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT * FROM label_decisions WHERE run_id = ? ORDER BY decided_at", (run_id,)
            ).fetchall()
        return {
            r["pair_id"]: LabelDecision(r["pair_id"], r["decision"], r["reviewer"], r["decided_at"], r["score"])
            for r in rows
        }

    def label_log(self, run_id: int) -> list[dict[str, Any]]:
        with self._connect() as con:
            rows = con.execute("SELECT * FROM label_log WHERE run_id = ? ORDER BY rowid", (run_id,)).fetchall()
        return [dict(row) for row in rows]

