"""SQLite persistence for runs, pairs, paraphrases and their reviews, and finished epochs.

One file in WAL mode so the app's readers never block the writer. Every write that must
be all-or-nothing (an epoch, a review decision) is a single transaction, so a crash or a
SIGKILL leaves whole epochs only. The public methods are the whole interface: nothing
outside this module writes SQL, which keeps a PostgreSQL backend a drop-in later.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mars_core.data.pairs import PreferencePair
from mars_core.store import locks
from mars_core.store.label_decisions import LabelDecisionStore
from mars_core.store.records import (
    PARAPHRASE_STATUSES,
    REVIEW_STATUSES,
    EpochRecord,
    LabelConflict,
    LabelDecision,
    MarginRow,
    ParaphraseRecord,
    ReviewConflict,
    RunRecord,
    StoreError,
    pack_arrays,
    to_json,
    unpack_arrays,
)
from mars_core.store.run_files import remove_run_folders
from mars_core.store.schema import SCHEMA, SCHEMA_VERSION

# the records live in records.py; importing them from here keeps working
__all__ = ["PARAPHRASE_STATUSES", "REVIEW_STATUSES", "EpochRecord", "LabelConflict", "LabelDecision", "MarginRow",
           "ParaphraseRecord", "ReviewConflict", "RunDeleted", "RunRecord", "Store", "StoreError"]

PAIR_COLUMNS = ("pair_id, prompt, chosen, rejected, source, parent_id, epoch_added, gold_margin, "
                "chosen_paraphrase_id, rejected_paraphrase_id")  # PreferencePair's fields, in order
MAX_SQL_IDS = 10_000  # ids asked for with IN (...); more are filtered in Python (SQLite allows 32,766 variables)


def _synthetic(synthetic: bool | None) -> str:
    """The WHERE clause part that keeps synthetic pairs (True), originals (False) or both (None)."""
    return "" if synthetic is None else " AND parent_id IS NOT NULL" if synthetic else " AND parent_id IS NULL"


def _select(table: str, run_id: int, extra: str = "", columns: str = "*", **equal: Any) -> tuple[str, list[Any]]:
    """SELECT ``columns`` for one run, narrowed by column = value (a list or tuple means IN); None means any."""
    query, args = f"SELECT {columns} FROM {table} WHERE run_id = ?{extra}", [run_id]
    for column, value in equal.items():
        if value is None:
            continue
        values = [value] if isinstance(value, (str, int, float)) else list(value)
        query += f" AND {column} IN ({','.join('?' * len(values))})"
        args += values
    return query, args


class Store(LabelDecisionStore):
    """The project's database. Safe to share between threads: each call opens its own connection.

    Label-decision methods (decide_label, label_decisions, label_log, apply_label_decisions) come from
    store/label_decisions.py.
    """

    def __init__(self, path: str | os.PathLike[str], read_only: bool = False, create: bool = True) -> None:
        """Open (and by default create) a store.

        ``read_only``: what a command that only reads uses (runs, export, ...): nothing is created or changed,
        and a file that is not a MARS store is an error. ``create=False``: the file must already be a store
        (delete), but may then be written.
        """
        self.path = Path(path)
        self.read_only = read_only
        if self.path.is_dir():
            raise StoreError(f"store path {self.path} is a directory, expected a database file")
        if read_only or not create:
            self._check_existing()
            if read_only:
                return
        _make_parent(self.path)
        try:
            with self._connect() as con:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(SCHEMA)
                con.execute(  # a version-1 store got the new tables above: record that it is current now
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?) ON CONFLICT(key) DO UPDATE "
                    "SET value = excluded.value WHERE CAST(meta.value AS INTEGER) < CAST(excluded.value AS INTEGER)",
                    (str(SCHEMA_VERSION),),
                )
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot open the store {self.path} (SQLite said: {exc})") from exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a MARS store (SQLite said: {exc})") from exc

    def _check_existing(self) -> None:
        """A clear error unless the file exists and is one of our stores; reads only."""
        if not self.path.exists():
            raise StoreError(f"store {self.path} does not exist")
        if not self.path.is_file():
            raise StoreError(f"store {self.path} is not a file")
        if self.path.stat().st_size == 0:
            raise StoreError(f"{self.path} is an empty file, not a MARS store (nothing was written to it)")
        try:
            with self._connect(read_only=True) as con:
                row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                con.execute("SELECT id FROM runs LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a MARS store (SQLite said: {exc})") from exc
        if row is None:
            raise StoreError(f"{self.path} is not a MARS store (it has no schema version)")

    # -- connections ---------------------------------------------------------------------
    @contextmanager
    def _connect(self, read_only: bool | None = None) -> Iterator[sqlite3.Connection]:
        if read_only if read_only is not None else self.read_only:  # mode=ro: SQLite itself refuses every write
            con = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", timeout=30.0, isolation_level=None,
                                  uri=True)
        else:
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA synchronous=NORMAL")
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: the writer lock is taken up front, so no deadlock upgrades."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # -- runs ------------------------------------------------------------------------------
    def create_run(
        self, name: str, config: dict[str, Any], data_source: str, train: Iterable[PreferencePair],
        test: Iterable[PreferencePair], epoch0: EpochRecord | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> int:
        """A run, its original data and (given) its epoch 0, together or not at all.

        A run stored without epoch 0 cannot be opened, so RefinementRun.create passes epoch 0
        here: a process killed while creating leaves nothing behind, never a half run.
        """
        with self._transaction() as con:
            cur = con.execute(
                "INSERT INTO runs(name, config, data_source, created_at) VALUES (?, ?, ?, ?)",
                (name, to_json(config), data_source, time.time()),
            )
            run_id = int(cur.lastrowid)
            self._insert_pairs(con, run_id, train, "train")
            self._insert_pairs(con, run_id, test, "test")
            if epoch0 is not None:
                self._insert_epoch(con, run_id, epoch0)
            if before_commit is not None:
                before_commit()
        return run_id

    def delete_run(self, run_id: int, force: bool = False) -> list[Path]:
        """Remove a run and everything stored for it, in one transaction, then its checkpoint folders.

        Refused while a live process holds its step lock (``force`` overrides: that step then stops at its commit
        with RunDeleted). The fine-tuned checkpoints the run's epochs reference are removed when they lie in
        the store's own ``<db stem>-runs/`` folder (where runs write them); the folders removed are returned.
        Caches shared between runs stay.
        """
        with self._transaction() as con:
            row = con.execute("SELECT lock_owner, lock_time FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"no run with id {run_id} in {self.path}")
            if not force and row["lock_owner"] and not locks.is_stale(row["lock_owner"], row["lock_time"]):
                raise StoreError(
                    f"run {run_id} is being stepped by {row['lock_owner']}; wait for that epoch to finish "
                    "(or --force: that step then stops without storing its epoch)"
                )
            states = con.execute("SELECT model_state FROM epochs WHERE run_id = ?", (run_id,)).fetchall()
            for table in ("margins", "review_log", "paraphrases", "pairs", "epochs"):
                con.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            con.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        return remove_run_folders(self.path, [unpack_arrays(r["model_state"]) for r in states])

    def update_run_config(self, run_id: int, config: dict[str, Any]) -> None:
        """Replace a run's stored settings (e.g. a raised epoch cap when a finished run is extended)."""
        with self._transaction() as con:
            cur = con.execute("UPDATE runs SET config = ? WHERE id = ?", (to_json(config), run_id))
            if cur.rowcount == 0:
                raise StoreError(f"no run with id {run_id} in {self.path}")

    def list_runs(self) -> list[RunRecord]:
        with self._connect() as con:
            rows = con.execute("SELECT * FROM runs ORDER BY id").fetchall()
        return [self._run(row) for row in rows]

    def get_run(self, run_id: int) -> RunRecord:
        with self._connect() as con:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run with id {run_id} in {self.path}")
        return self._run(row)

    @staticmethod
    def _run(row: sqlite3.Row) -> RunRecord:
        return RunRecord(row["id"], row["name"], json.loads(row["config"]), row["data_source"], row["created_at"])

    def acquire_step_lock(self, run_id: int, owner: str, stale_after_s: float = locks.LOCK_MAX_AGE_S) -> bool:
        """Claim the right to step this run; False if another live owner holds it (two tabs, two processes).

        A holder that is gone (same host, process ended or killed) loses the lock at once; one that
        cannot be checked keeps it for ``stale_after_s`` (see run.locks).
        """
        now = time.time()
        with self._transaction() as con:
            row = con.execute("SELECT lock_owner, lock_time FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return False
            held = row["lock_owner"]
            if held is not None and held != owner and not locks.is_stale(held, row["lock_time"], now, stale_after_s):
                return False
            con.execute("UPDATE runs SET lock_owner = ?, lock_time = ? WHERE id = ?", (owner, now, run_id))
        locks.mark_held(owner)
        return True

    def release_step_lock(self, run_id: int, owner: str) -> None:
        with self._transaction() as con:
            con.execute(
                "UPDATE runs SET lock_owner = NULL, lock_time = NULL WHERE id = ? AND lock_owner = ?",
                (run_id, owner),
            )
        locks.mark_released(owner)

    def step_lock_owner(self, run_id: int) -> str | None:
        with self._connect() as con:
            row = con.execute("SELECT lock_owner FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else row["lock_owner"]

    def step_lock(self, run_id: int) -> locks.LockStatus | None:
        """Who holds the run's step lock, whether that holder still runs, and whether it is stale; None if free."""
        with self._connect() as con:
            row = con.execute("SELECT lock_owner, lock_time FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else locks.lock_status(row["lock_owner"], row["lock_time"])

    # -- pairs -----------------------------------------------------------------------------
    @staticmethod
    def _insert_pairs(con: sqlite3.Connection, run_id: int, pairs: Iterable[PreferencePair], split: str) -> None:
        con.executemany(
            "INSERT INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (run_id, p.id, split, p.prompt, p.chosen, p.rejected, p.source, p.parent_id, p.epoch_added,
                 p.gold_margin, p.chosen_paraphrase_id, p.rejected_paraphrase_id)
                for p in pairs
            ],
        )

    def get_pairs(self, run_id: int, split: str | None = None, synthetic: bool | None = None,
                  ids: Sequence[str] | None = None, offset: int = 0, limit: int | None = None) -> list[PreferencePair]:
        """Pairs as stored (synthetic ones with their generated texts, before review edits), in stored order.

        ``ids``, ``offset`` and ``limit`` read only what a page shows: at 100,000 pairs the whole list costs
        about a second, a page of 1,000 a few milliseconds."""
        wanted = set(ids) if ids is not None and len(ids) > MAX_SQL_IDS else None  # past SQLite's variable limit
        if wanted is not None and (limit is not None or offset):
            raise ValueError(f"a page (offset, limit) of more than {MAX_SQL_IDS:,} named pairs is not supported")
        query, args = _select("pairs", run_id, _synthetic(synthetic), PAIR_COLUMNS, split=split,
                              pair_id=None if wanted is not None else ids)
        query += " ORDER BY rowid" + (" LIMIT ? OFFSET ?" if limit is not None or offset else "")
        if limit is not None or offset:
            args += [-1 if limit is None else limit, offset]
        with self._connect() as con:
            con.row_factory = None  # plain tuples in PreferencePair's field order: 2x faster at 100,000 pairs
            rows = con.execute(query, args).fetchall()
        return [PreferencePair(*row) for row in rows if wanted is None or row[0] in wanted]

    def count_pairs(self, run_id: int, split: str | None = None, synthetic: bool | None = None) -> int:
        query, args = _select("pairs", run_id, _synthetic(synthetic), "count(*)", split=split)
        with self._connect() as con:
            return int(con.execute(query, args).fetchone()[0])

    def training_pairs(self, run_id: int, review_policy: str) -> list[PreferencePair]:
        """The training set the next step fits on: originals plus the synthetic pairs review allows.

        ``auto``: every synthetic pair except those built from a rejected paraphrase.
        ``gated``: only synthetic pairs whose paraphrases are all accepted or edited.
        Edited paraphrases contribute the reviewer's text, not the generated one. Label decisions apply
        last: a swapped original (and its synthetic children) trains reversed, a dropped one not at all.
        """
        if review_policy not in ("auto", "gated"):
            raise ValueError(f"review_policy must be 'auto' or 'gated', got {review_policy!r}")
        allowed = ("accepted", "edited") if review_policy == "gated" else ("pending", "accepted", "edited")
        statuses = self.paraphrase_statuses(run_id)
        out: list[PreferencePair] = []
        for pair in self.get_pairs(run_id, split="train"):
            changes: dict[str, str] = {}
            usable = True
            for side, pid in (("chosen", pair.chosen_paraphrase_id), ("rejected", pair.rejected_paraphrase_id)):
                if pid is None:
                    continue
                status, edited = statuses.get(pid, ("rejected", None))
                if status not in allowed:
                    usable = False
                    break
                if status == "edited" and edited:
                    changes[side] = edited
            if usable:
                out.append(pair.with_changes(**changes) if changes else pair)
        return self.apply_label_decisions(run_id, out)

    # -- paraphrases and review ------------------------------------------------------------
    def paraphrase_statuses(self, run_id: int) -> dict[str, tuple[str, str | None]]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT id, status, edited_text FROM paraphrases WHERE run_id = ?", (run_id,)
            ).fetchall()
        return {row["id"]: (row["status"], row["edited_text"]) for row in rows}

    def get_paraphrases(
        self, run_id: int, status: str | Iterable[str] | None = None, side: str | None = None,
        epoch: int | None = None,
    ) -> list[ParaphraseRecord]:
        query, args = _select("paraphrases", run_id, status=status, side=side, epoch=epoch)
        with self._connect() as con:
            rows = con.execute(query + " ORDER BY rowid", args).fetchall()
        return [self._paraphrase(row) for row in rows]

    def get_paraphrase(self, run_id: int, paraphrase_id: str) -> ParaphraseRecord:
        with self._connect() as con:
            row = con.execute(
                "SELECT * FROM paraphrases WHERE run_id = ? AND id = ?", (run_id, paraphrase_id)
            ).fetchone()
        if row is None:
            raise StoreError(f"no paraphrase {paraphrase_id!r} in run {run_id}")
        return self._paraphrase(row)

    @staticmethod
    def _paraphrase(row: sqlite3.Row) -> ParaphraseRecord:
        return ParaphraseRecord(
            id=row["id"], pair_id=row["pair_id"], side=row["side"], epoch=row["epoch"],
            source_text=row["source_text"], text=row["text"], model=row["model"], similarity=row["similarity"],
            verdicts=json.loads(row["verdicts"]), status=row["status"], edited_text=row["edited_text"],
            reviewer=row["reviewer"], reviewed_at=row["reviewed_at"], created_at=row["created_at"],
        )

    def decide(
        self, run_id: int, paraphrase_id: str, status: str, reviewer: str, edited_text: str | None = None,
        expected_status: str = "pending",
    ) -> ParaphraseRecord:
        """Record one review decision atomically.

        The update only applies if the item is still in ``expected_status``: a second reviewer
        who loaded the same item gets ReviewConflict instead of silently overwriting.
        """
        if status not in ("accepted", "rejected", "edited", "pending"):
            raise ValueError(f"review decision must be accepted, rejected, edited or pending, got {status!r}")
        if not reviewer or not reviewer.strip():
            raise ValueError("a review decision needs the reviewer's name")
        if status == "edited" and not (edited_text and edited_text.strip()):
            raise ValueError("an edit needs the edited text (it must not be empty)")
        now = time.time()
        with self._transaction() as con:
            row = con.execute(
                "SELECT status, reviewer FROM paraphrases WHERE run_id = ? AND id = ?", (run_id, paraphrase_id)
            ).fetchone()
            if row is None:
                raise StoreError(f"no paraphrase {paraphrase_id!r} in run {run_id}")
            if row["status"] == "filtered":
                raise ValueError(f"paraphrase {paraphrase_id} was removed by the filters and cannot be reviewed")
            if row["status"] != expected_status:
                raise ReviewConflict(paraphrase_id, row["status"], row["reviewer"])
            con.execute(
                "UPDATE paraphrases SET status = ?, edited_text = ?, reviewer = ?, reviewed_at = ? "
                "WHERE run_id = ? AND id = ?",
                (status, edited_text if status == "edited" else None, reviewer.strip(), now, run_id, paraphrase_id),
            )
            con.execute(
                "INSERT INTO review_log VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, paraphrase_id, status, edited_text, reviewer.strip(), now),
            )
        return self.get_paraphrase(run_id, paraphrase_id)

    def review_counts(self, run_id: int) -> dict[str, int]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT status, COUNT(*) AS n FROM paraphrases WHERE run_id = ? GROUP BY status", (run_id,)
            ).fetchall()
        counts = dict.fromkeys(PARAPHRASE_STATUSES, 0)
        counts.update({row["status"]: row["n"] for row in rows})
        return counts

    def review_log(self, run_id: int) -> list[dict[str, Any]]:
        with self._connect() as con:
            rows = con.execute("SELECT * FROM review_log WHERE run_id = ? ORDER BY rowid", (run_id,)).fetchall()
        return [dict(row) for row in rows]

    # -- epochs ----------------------------------------------------------------------------
    def commit_epoch(
        self, run_id: int, record: EpochRecord, before_commit: Callable[[], None] | None = None
    ) -> None:
        """Write a finished epoch whole or not at all.

        ``before_commit`` runs inside the open transaction (used by the crash test to kill the
        process at the worst moment).
        """
        with self._transaction() as con:
            if con.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise RunDeleted(f"run {run_id} was deleted from {self.path} while epoch {record.epoch} was being "
                                 "computed; nothing of that epoch was stored")
            if con.execute(
                "SELECT 1 FROM epochs WHERE run_id = ? AND epoch = ?", (run_id, record.epoch)
            ).fetchone():
                raise StoreError(f"run {run_id} already has epoch {record.epoch}")
            self._insert_epoch(con, run_id, record)
            if before_commit is not None:
                before_commit()

    def _insert_epoch(self, con: sqlite3.Connection, run_id: int, record: EpochRecord) -> None:
        con.executemany(
            "INSERT INTO paraphrases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (p.id, run_id, p.pair_id, p.side, p.epoch, p.source_text, p.text, p.model, p.similarity,
                 to_json(p.verdicts), p.status, p.edited_text, p.reviewer, p.reviewed_at, p.created_at)
                for p in record.new_paraphrases
            ],
        )
        self._insert_pairs(con, run_id, record.new_pairs, "train")
        con.executemany(
            "INSERT INTO margins VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (run_id, record.epoch, m.pair_id, m.split, float(m.margin), m.alloc_margin, m.q, m.count,
                 m.curvature)
                for m in record.margins
            ],
        )
        con.execute(
            "INSERT INTO epochs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, record.epoch, to_json(record.metrics), to_json(record.allocation), to_json(record.curvature),
             pack_arrays(record.model_state), record.seconds, time.time()),
        )

    def epochs(self, run_id: int) -> list[int]:
        with self._connect() as con:
            rows = con.execute("SELECT epoch FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)).fetchall()
        return [row["epoch"] for row in rows]

    def last_epoch(self, run_id: int) -> int | None:
        done = self.epochs(run_id)
        return done[-1] if done else None

    def get_epoch(self, run_id: int, epoch: int, with_model: bool = False) -> EpochRecord:
        """An epoch's summaries (and model state if asked); margins via ``margins_frame``."""
        with self._connect() as con:
            row = con.execute(
                "SELECT * FROM epochs WHERE run_id = ? AND epoch = ?", (run_id, epoch)
            ).fetchone()
        if row is None:
            raise StoreError(f"run {run_id} has no epoch {epoch}")
        return EpochRecord(
            epoch=row["epoch"], metrics=json.loads(row["metrics"]), allocation=json.loads(row["allocation"]),
            curvature=json.loads(row["curvature"]),
            model_state=unpack_arrays(row["model_state"]) if with_model else None, seconds=row["seconds"],
        )

    def epoch_table(self, run_id: int) -> list[dict[str, Any]]:
        """One dict per epoch: metrics, allocation summary, curvature summary (for curves and tables)."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT epoch, metrics, allocation, curvature, seconds FROM epochs WHERE run_id = ? ORDER BY epoch",
                (run_id,),
            ).fetchall()
        return [
            {"epoch": r["epoch"], "metrics": json.loads(r["metrics"]), "allocation": json.loads(r["allocation"]),
             "curvature": json.loads(r["curvature"]), "seconds": r["seconds"]}
            for r in rows
        ]

    def margin_rows(self, run_id: int, epoch: int | None = None, split: str | None = None) -> list[dict[str, Any]]:
        query, args = _select("margins", run_id, epoch=epoch, split=split)
        with self._connect() as con:
            rows = con.execute(query + " ORDER BY epoch, rowid", args).fetchall()
        return [dict(row) for row in rows]

    def margin_columns(self, run_id: int, epoch: int | None = None,
                       split: str | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """margin_rows as (column names, plain tuples): 3x faster than dicts at 100,000 pairs (the app's pages)."""
        query, args = _select("margins", run_id, epoch=epoch, split=split)
        with self._connect() as con:
            con.row_factory = None
            cursor = con.execute(query + " ORDER BY epoch, rowid", args)
            return [d[0] for d in cursor.description], cursor.fetchall()

    def pair_margins(self, run_id: int, epoch: int, ids: Sequence[str]) -> dict[str, float]:
        """{pair_id: Δ at ``epoch``} for the given pairs only (a page's worth; the primary key finds them)."""
        query, args = _select("margins", run_id, epoch=epoch, pair_id=ids)
        with self._connect() as con:
            return {r["pair_id"]: r["margin"] for r in con.execute(query, args).fetchall()}

    def margins_complete(self, run_id: int, epoch: int, split: str, column: str = "alloc_margin") -> bool:
        """Whether ``epoch`` stored ``column`` for every ``split`` pair (e.g. out-of-fold margins), counted in SQL."""
        if column not in ("margin", "alloc_margin", "q", "count", "curvature"):
            raise ValueError(f"not a margins column: {column!r}")
        query, args = _select("margins", run_id, "", f"count(*), count({column})", epoch=epoch, split=split)
        with self._connect() as con:
            total, present = con.execute(query, args).fetchone()
        return bool(total) and total == present

    def copy_to(self, path: str | os.PathLike[str]) -> Path:
        """A consistent copy of the whole store at ``path`` (SQLite's online backup): e.g. the private store
        of a non-main process of a distributed run (run/distributed.py)."""
        target = Path(path)
        with self._connect() as source:
            copy = sqlite3.connect(target)
            try:
                source.backup(copy)
            finally:
                copy.close()
        return target

    # -- caches ----------------------------------------------------------------------------
    def generation_count(self) -> int | None:
        """Cached LM generation calls: the LM work actually done, shared by every run of this store (None for a
        store too old to have the cache)."""
        try:
            with self._connect() as con:
                return int(con.execute("SELECT COUNT(*) FROM generation_cache").fetchone()[0])
        except sqlite3.OperationalError:
            return None

    def get_features(self, keys: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self._connect() as con:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows = con.execute(
                    f"SELECT key, vector FROM feature_cache WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                out.update({row["key"]: np.frombuffer(row["vector"], dtype=np.float32).copy() for row in rows})
        return out

    def put_features(self, vectors: dict[str, np.ndarray]) -> None:
        with self._transaction() as con:
            con.executemany(
                "INSERT OR IGNORE INTO feature_cache VALUES (?, ?)",
                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in vectors.items()],
            )

    def get(self, key: str) -> list[str] | None:
        """Generation cache lookup (the paraphraser's cache protocol)."""
        with self._connect() as con:
            row = con.execute("SELECT texts FROM generation_cache WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row["texts"])

    def put(self, key: str, texts: list[str]) -> None:
        """Generation cache write; committed at once so a crash mid-epoch never regenerates."""
        with self._transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO generation_cache VALUES (?, ?, ?)", (key, json.dumps(texts), time.time())
            )


class RunDeleted(StoreError):
    """The run was deleted (``delete --force``) while a step was computing one of its epochs."""


def _make_parent(path: Path) -> None:
    """Create the store's folder, or say which part of the path is in the way."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        blocker = next((p for p in [path.parent, *path.parent.parents] if p.exists() and not p.is_dir()), path.parent)
        raise StoreError(f"cannot create the store {path}: {blocker} is a file, not a folder") from exc
    except OSError as exc:
        raise StoreError(f"cannot create the folder for the store {path}: {exc.strerror or exc}") from exc
