"""The small numbers and groupings pages show beside their figures, as pure functions over frames.

Pages only lay these out; the arithmetic (an angle, eigenvalues, deltas between epochs, which
margins an allocation saw) is tested here without a browser.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mars_core.present.views import toy_hessian

CURRENT_MARGINS = "the current model's in-sample margins"


# -- Margins: quality tiles ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tile:
    label: str
    value: str  # "n/a" when the metric is missing
    delta: str | None  # change since the previous epoch, None when it cannot be told


def quality_tiles(epochs: pd.DataFrame, epoch: int, metrics: Mapping[str, str]) -> list[Tile]:
    """One tile per metric at `epoch`, with its change since epoch − 1 (epochs: views.epoch_frame)."""
    row = epochs[epochs["epoch"] == epoch].iloc[0]
    before = epochs[epochs["epoch"] == epoch - 1]
    tiles = []
    for metric, label in metrics.items():
        value = _number(row.get(metric))
        prev = _number(before.iloc[0].get(metric)) if len(before) else math.nan
        shown = "n/a" if math.isnan(value) else f"{value:.3f}"
        delta = None if math.isnan(value) or math.isnan(prev) else f"{value - prev:+.3f}"
        tiles.append(Tile(label, shown, delta))
    return tiles


def _number(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


# -- Budget: the margins a what-if allocates on -------------------------------------------------------------
def allocation_sources(frame: pd.DataFrame, epoch: int, allocated: bool) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The epoch's original training rows and the margin vectors a what-if may allocate on, first = default.

    After an allocated epoch, the margins that allocation saw (cross-fitted or in-sample, as the run
    was configured) come first; the current model's in-sample margins are always offered.
    """
    rows = frame[(frame["epoch"] == epoch) & (frame["split"] == "train")]
    sources = {CURRENT_MARGINS: rows["margin"].to_numpy(dtype=float)}
    if allocated:
        saw = rows["alloc_margin"].to_numpy(dtype=float)
        if np.isfinite(saw).all():
            sources = {f"the margins epoch {epoch}'s allocation saw": saw, **sources}
    return rows, sources


# -- Pairs: synthetic pairs grouped by parent --------------------------------------------------------------
def parent_groups(synthetic: pd.DataFrame) -> pd.DataFrame:
    """One row per parent pair (parent_id, children, parent_margin), the smallest |parent Δ| first."""
    groups = synthetic.groupby("parent_id", sort=False).agg(
        children=("pair_id", "size"), parent_margin=("parent_margin", "first"))
    return groups.sort_values("parent_margin", key=lambda s: s.abs(), kind="stable").reset_index()


# -- Teach: the 2-D toy's read-outs --------------------------------------------------------------------------
@dataclass(frozen=True)
class ToyReadout:
    angle_deg: float  # between the learned w and the gold w*
    picked: int  # original pairs that got paraphrase budget at this epoch
    mean_abs_margin_picked: float  # nan when none was picked
    mean_abs_margin_all: float
    eigenvalues: tuple[float, float]  # of the BT Hessian, largest first


def toy_hessians(
    points: pd.DataFrame, weights: np.ndarray, prev_weights: np.ndarray | None, l2: float, epoch: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """The Hessian now, and the one before this epoch (previous model on the pairs it trained on), if any."""
    hessian = toy_hessian(points, weights, l2)
    before = points[points["epoch_added"] < epoch]
    previous = toy_hessian(before, prev_weights, l2) if prev_weights is not None and len(before) else None
    return hessian, previous


def toy_readout(points: pd.DataFrame, weights: np.ndarray, gold: np.ndarray, hessian: np.ndarray) -> ToyReadout:
    w, g = np.asarray(weights, dtype=float), np.asarray(gold, dtype=float)
    norm = np.linalg.norm(w) * np.linalg.norm(g)
    cos = float(w @ g / norm) if norm else 0.0
    originals = points[~points["synthetic"].astype(bool)]
    picked = originals[originals["count"] > 0]
    eig = np.linalg.eigvalsh(hessian)
    return ToyReadout(
        angle_deg=float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))),
        picked=len(picked),
        mean_abs_margin_picked=float(picked["margin"].abs().mean()) if len(picked) else math.nan,
        mean_abs_margin_all=float(originals["margin"].abs().mean()),
        eigenvalues=(float(eig[-1]), float(eig[0])),
    )
