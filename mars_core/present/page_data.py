"""What the pages read from the store, read once per stored epoch and shared by every session of the server.

At 100,000 pairs a run's margins are 200,000 rows and its pairs 100,000 objects: reading them costs
seconds, and every click reruns the page. They change only when an epoch is stored (margins, synthetic
pairs) so they are kept per (store, run, finished epochs); a deleted run or a new epoch is a new key.
Callers get shared objects: they filter and copy, never change them in place.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from mars_core.data.pairs import PreferencePair
from mars_core.present import views
from mars_core.review import labels
from mars_core.review import paraphrases as review
from mars_core.store.sqlite import Store

Stamp = tuple[float, tuple[int, ...]]


def stamp(store: Store, run_id: int) -> Stamp:
    """What the run's stored data is a function of: when it was created (ids can be reused) and its epochs."""
    return store.get_run(run_id).created_at, tuple(store.epochs(run_id))


@st.cache_resource(show_spinner=False, max_entries=6)
def _margins(db: str, run_id: int, at: Stamp) -> pd.DataFrame:
    columns, rows = Store(db).margin_columns(run_id)
    return views.margins_frame(pd.DataFrame.from_records(rows, columns=columns))


@st.cache_resource(show_spinner=False, max_entries=12)
def _pairs(db: str, run_id: int, at: Stamp, split: str | None, synthetic: bool | None) -> list[PreferencePair]:
    return Store(db).get_pairs(run_id, split=split, synthetic=synthetic)


def margins(store: Store, run_id: int, epoch: int | None = None, split: str | None = None) -> pd.DataFrame:
    """views.margins_frame(store.margin_rows(run_id, epoch, split)), from the server's copy."""
    frame = _margins(str(store.path), run_id, stamp(store, run_id))
    if epoch is not None:
        frame = frame[frame["epoch"] == epoch]
    if split is not None:
        frame = frame[frame["split"] == split]
    return frame.reset_index(drop=True) if epoch is not None or split is not None else frame.copy(deep=False)


def pairs(store: Store, run_id: int, split: str | None = None, synthetic: bool | None = None) -> list[PreferencePair]:
    """store.get_pairs(run_id, split, synthetic), from the server's copy (a shared list: do not change it)."""
    return _pairs(str(store.path), run_id, stamp(store, run_id), split, synthetic)


def label_scores(store: Store, run_id: int, epoch: int | None = None) -> labels.LabelScores | None:
    """labels.label_scores, from the server's copy: a pure function of stored margins (decisions are read live)."""
    return _label_scores(str(store.path), run_id, stamp(store, run_id), epoch)


@st.cache_resource(show_spinner=False, max_entries=6)
def _label_scores(db: str, run_id: int, at: Stamp, epoch: int | None) -> labels.LabelScores | None:
    return labels.label_scores(Store(db), run_id, epoch)


TABLE_ROWS = 1_000  # rows a table shows at once; a page picker reaches the rest


def table_page(total: int, key: str, rows: int = TABLE_ROWS) -> tuple[int, int]:
    """(start, stop) of the rows to show: all of them up to ``rows``, else a page picked under the table."""
    if total <= rows:
        return 0, total
    pages = (total + rows - 1) // rows
    page = int(st.number_input(f"Page (of {pages:,}, {rows:,} rows each)", 1, pages, 1, key=key))
    return (page - 1) * rows, min(page * rows, total)


def pairs_table_page(store: Store, run_id: int, kind: str, epoch: int | None,
                     key: str) -> tuple[int, int, int, pd.DataFrame]:
    """(total, start, stop, table) of one page of a run's train, test or synthetic pairs with their Δ at
    ``epoch``: reads only the rows shown, so the first visit costs the same at 1,000 and 100,000 pairs."""
    split, synthetic = ("train", True) if kind == "synthetic" else (kind, False)
    total = store.count_pairs(run_id, split=split, synthetic=synthetic)
    start, stop = table_page(total, key)
    pairs = store.get_pairs(run_id, split=split, synthetic=synthetic, offset=start, limit=stop - start)
    margins = store.pair_margins(run_id, epoch, [p.id for p in pairs]) if epoch is not None else None
    return total, start, stop, views.pairs_table(pairs, margins)


def cached_columns(path: str) -> list[str]:
    """views.peek_columns, read once per file version (it reads the whole file, as the loader does)."""
    try:
        stat = os.stat(path)
    except OSError:
        return []
    return _columns(path, stat.st_mtime_ns, stat.st_size)


@st.cache_data(show_spinner=False, max_entries=8)
def _columns(path: str, mtime_ns: int, size: int) -> list[str]:
    return views.peek_columns(path)


def review_queue(store: Store, run_id: int, model_epoch: int, model: Any, **query: Any) -> pd.DataFrame:
    """review.review_queue, recomputed only when a paraphrase's review state, an epoch or the filters change.

    The shift score's scale is the median |Δ| stored with the model's epoch (the same model's margins on the
    training pairs), so only paraphrased pairs are scored; the key holds
    each paraphrase's (status, reviewed_at), so any decision, even a second edit, is seen at once.
    """
    records = store.get_paraphrases(run_id)
    reviews = hash(tuple((r.id, r.status, r.reviewed_at) for r in records))
    stored = margins(store, run_id, model_epoch, "train")["margin"].to_numpy()
    typical = float(np.median(np.abs(stored))) if len(stored) else None
    return _queue(str(store.path), run_id, stamp(store, run_id), model_epoch, reviews, model,
                  {**query, "typical_margin": typical})


@st.cache_data(show_spinner=False, max_entries=4)
def _queue(db: str, run_id: int, at: Stamp, model_epoch: int, reviews: int, _model: Any, query: dict) -> pd.DataFrame:
    return review.review_queue(Store(db), run_id, model=_model, **query)


def toy_points(store: Store, run_id: int, epoch: int) -> pd.DataFrame:
    """views.toy_frame of the run's training pairs at ``epoch`` (Δφ of 100,000 pairs costs seconds), kept."""
    return _toy_points(str(store.path), run_id, stamp(store, run_id), epoch).copy(deep=False)


@st.cache_resource(show_spinner=False, max_entries=4)
def _toy_points(db: str, run_id: int, at: Stamp, epoch: int) -> pd.DataFrame:
    store = Store(db)
    return views.toy_frame(pairs(store, run_id, split="train"), margins(store, run_id, epoch), epoch)
