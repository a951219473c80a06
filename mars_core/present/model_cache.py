"""The reward models the Review page scores with, kept per server: one per run (its latest epoch asked), at
most a few runs. A fine-tuned reward model is a whole transformer; one cached per (run, epoch) without a
bound grew the server by one transformer per Step."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import streamlit as st


class LatestPerRun:
    """At most ``max_runs`` runs, one model each (the last epoch asked for); least recently used run goes first."""

    def __init__(self, max_runs: int = 2) -> None:
        self.max_runs = max_runs
        self._models: OrderedDict[tuple[str, int], tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, db: str, run_id: int, epoch: int, load: Callable[[], Any]) -> Any:
        """The model of (db, run) at ``epoch``, loaded by ``load()`` unless it is the one kept."""
        key = (db, run_id)
        with self._lock:
            kept = self._models.get(key)
            if kept is not None and kept[0] == epoch:
                self._models.move_to_end(key)
                return kept[1]
            self._models.pop(key, None)  # the older epoch's model goes before the new one loads
        model = load()
        with self._lock:
            self._models[key] = (epoch, model)
            self._models.move_to_end(key)
            while len(self._models) > self.max_runs:
                self._models.popitem(last=False)
        return model

    def entries(self) -> list[tuple[str, int, int]]:
        """(db, run, epoch) of what is kept, oldest use first."""
        with self._lock:
            return [(db, run, epoch) for (db, run), (epoch, _) in self._models.items()]


@st.cache_resource(show_spinner=False)
def review_models() -> LatestPerRun:
    """This server's cache, shared by every session."""
    return LatestPerRun(max_runs=2)
