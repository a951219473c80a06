"""Store rows -> pandas tables for the app's pages, as pure functions.

Why a module of its own: the pages then only lay out widgets, and everything a page computes
(which pairs are hardest, what a different τ would allocate, each pair's ‖Δφ‖) is testable
without a browser. Nothing here touches Streamlit, the database or a model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mars_core.analysis.curvature import linear_bt_hessian, sigmoid_prime
from mars_core.augment.allocation import AllocationConfig, allocate
from mars_core.data import readers
from mars_core.data.pairs import PreferencePair
from mars_core.data.toy import toy_features
from mars_core.store.sqlite import ParaphraseRecord

MARGIN_COLUMNS = ("epoch", "pair_id", "split", "margin", "alloc_margin", "q", "count", "curvature")
SPLITS = ("train", "test", "synthetic")
WHAT_IF_STRATEGIES = ("mars", "uniform", "won")
# The per-epoch metrics the Margins page plots, with the label a reader sees.
QUALITY_METRICS = {
    "test_accuracy": "pairwise accuracy (Δ > 0)",
    "test_gold_accuracy": "agreement with the gold reward",
    "test_snr": "margin SNR mean(Δ)/std(Δ)",
}
CURVATURE_METRICS = {
    "picked_curvature": "pairs the strategy picked (weighted by count)",
    "added_curvature": "pairs it added (synthetic)",
    "mean_curvature": "all original training pairs",
}


# -- epochs ------------------------------------------------------------------------------------------
def _scalar(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def epoch_frame(epoch_table: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per epoch: the scalar metrics, the allocation summary (prefixed alloc_) and the spectrum's head."""
    rows = []
    for rec in epoch_table:
        metrics = rec.get("metrics") or {}
        allocation = rec.get("allocation") or {}
        curvature = rec.get("curvature") or {}
        top = curvature.get("top_k") or curvature.get("eigenvalues") or []
        row: dict[str, Any] = {k: v for k, v in metrics.items() if _scalar(v)}
        row.update({f"alloc_{k}": v for k, v in allocation.items()})
        row.update(
            epoch=int(rec["epoch"]),
            seconds=rec.get("seconds"),
            trace=curvature.get("trace"),
            top_eigenvalue=top[0] if top else None,
            condition_number=curvature.get("condition_number"),
            paraphrases_allocated=int(allocation.get("total", 0) or 0),
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["epoch", "seconds", "trace", "top_eigenvalue", "paraphrases_allocated"])
    for column in frame.columns:
        if column.startswith("alloc_") and frame[column].dtype == object:
            continue  # strategy, margin mode, ... stay text
        converted = pd.to_numeric(frame[column], errors="coerce")
        if converted.notna().sum() == frame[column].notna().sum():
            frame[column] = converted.astype(float) if column != "epoch" else converted.astype(int)
    return frame.sort_values("epoch").reset_index(drop=True)


# -- margins -----------------------------------------------------------------------------------------
def margins_frame(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Store.margin_rows (or margin_columns as a frame) as a table, with |Δ|; q, count and curvature are NaN
    where the epoch has none."""
    if isinstance(rows, pd.DataFrame):
        frame = rows.reindex(columns=list(MARGIN_COLUMNS))
    else:
        frame = pd.DataFrame([{c: r.get(c) for c in MARGIN_COLUMNS} for r in rows], columns=list(MARGIN_COLUMNS))
    for column in ("margin", "alloc_margin", "q", "curvature"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    frame["count"] = pd.to_numeric(frame["count"], errors="coerce")
    frame["epoch"] = pd.to_numeric(frame["epoch"], errors="coerce")
    frame["abs_margin"] = frame["margin"].abs()
    return frame


def margins_by_epoch(frame: pd.DataFrame, split: str, epochs: Iterable[int] | None = None) -> dict[int, np.ndarray]:
    """{epoch: Δ of that split} for the epochs asked (all present if None), in epoch order."""
    rows = frame[frame["split"] == split]
    wanted = sorted(set(rows["epoch"].astype(int))) if epochs is None else sorted({int(e) for e in epochs})
    return {e: rows.loc[rows["epoch"] == e, "margin"].to_numpy(dtype=float) for e in wanted}


def shared_bins(samples: Iterable[np.ndarray], n_bins: int = 40) -> np.ndarray:
    """Bin edges that cover every sample, with 0 on an edge so right- and mis-ranked pairs never share a bin.

    One set of edges for all epochs is what makes histograms of different epochs comparable by eye.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    values = np.concatenate([np.asarray(s, dtype=float).reshape(-1) for s in samples] or [np.zeros(0)])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.linspace(-1.0, 1.0, n_bins + 1)
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    width = (hi - lo) / n_bins
    first, last = math.floor(lo / width), max(math.ceil(hi / width), math.floor(lo / width) + 1)
    while first * width > lo:  # float rounding must never leave a value outside the edges
        first -= 1
    while last * width < hi:
        last += 1
    return np.arange(first, last + 1) * width


def hardest_pairs(
    frame: pd.DataFrame, pairs: Sequence[PreferencePair], epoch: int, split: str = "train", n: int = 20,
    misranked_only: bool = False,
) -> pd.DataFrame:
    """The pairs the model is least sure of (smallest |Δ|), or the mis-ranked ones (Δ < 0, most wrong first)."""
    rows = frame[(frame["epoch"] == epoch) & (frame["split"] == split)]
    if misranked_only:
        rows = rows[rows["margin"] < 0].sort_values(["margin", "pair_id"])
    else:
        rows = rows.sort_values(["abs_margin", "pair_id"])
    rows = rows.head(n)
    by_id = {p.id: p for p in pairs}
    out = pd.DataFrame({
        "pair_id": rows["pair_id"].to_list(),
        "margin": rows["margin"].to_numpy(dtype=float),
        "misranked": (rows["margin"] < 0).to_list(),
        "gold_margin": [by_id[i].gold_margin if i in by_id else None for i in rows["pair_id"]],
        "prompt": [by_id[i].prompt if i in by_id else "" for i in rows["pair_id"]],
        "chosen": [by_id[i].chosen if i in by_id else "" for i in rows["pair_id"]],
        "rejected": [by_id[i].rejected if i in by_id else "" for i in rows["pair_id"]],
    })
    out["gold_margin"] = pd.to_numeric(out["gold_margin"], errors="coerce").astype(float)
    return out


def likely_mislabeled(suspects: pd.DataFrame) -> pd.DataFrame:
    """The label-error ranking (review.labels.suspects) as the Margins page shows it: scores, then texts."""
    columns = ["rank", "pair_id", "score", "oof_margin", "flagged", "decision", "gold_margin", "prompt", "chosen",
               "rejected"]
    out = suspects.reindex(columns=columns).copy()
    out["gold_margin"] = pd.to_numeric(out["gold_margin"], errors="coerce").astype(float)
    return out.reset_index(drop=True)


# -- allocation --------------------------------------------------------------------------------------
def allocation_frame(frame: pd.DataFrame, epoch: int) -> pd.DataFrame:
    """An epoch's stored allocation: one row per original training pair, largest share first (rank 1)."""
    rows = frame[(frame["epoch"] == epoch) & (frame["split"] == "train") & frame["q"].notna()]
    rows = rows.sort_values(["q", "pair_id"], ascending=[False, True]).reset_index(drop=True)
    out = rows[["pair_id", "alloc_margin", "margin", "q", "count"]].copy()
    out["count"] = out["count"].fillna(0).astype(int)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


def what_if_allocations(
    margins: Sequence[float] | np.ndarray, budget: int, config: AllocationConfig, seed: int = 0,
    strategies: Sequence[str] = WHAT_IF_STRATEGIES, pair_ids: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What each strategy would allocate on these margins at the same budget (nothing is stepped).

    Returns (long table: strategy, pair, margin, score m, q, count, rank by q; summary per strategy:
    effective number exp(H(q)), τ in force, pairs picked, generations allocated).
    """
    margins = np.asarray(margins, dtype=float)
    ids = list(pair_ids) if pair_ids is not None else [str(i) for i in range(margins.size)]
    if len(ids) != margins.size:
        raise ValueError(f"{len(ids)} pair ids for {margins.size} margins")
    long_parts, summary = [], []
    for strategy in strategies:
        alloc = allocate(margins, int(budget), dataclasses.replace(config, strategy=strategy), seed=seed)
        part = pd.DataFrame({
            "strategy": strategy, "pair_id": ids, "margin": margins, "score": alloc.scores, "q": alloc.q,
            "count": alloc.counts.astype(int),
        })
        part["rank"] = part["q"].rank(method="first", ascending=False).astype(int)
        long_parts.append(part)
        summary.append({
            "strategy": strategy, "effective_n": alloc.effective_n, "tau_in_force": alloc.tau_in_force,
            "pairs_picked": int(np.count_nonzero(alloc.counts)), "generations": alloc.total,
            "mean_abs_margin_picked": float(np.average(np.abs(margins), weights=alloc.counts))
            if alloc.total > 0 else float("nan"),
        })
    return pd.concat(long_parts, ignore_index=True), pd.DataFrame(summary)


# -- curvature ---------------------------------------------------------------------------------------
def spectrum_frame(epoch_table: Sequence[Mapping[str, Any]], label: str = "") -> pd.DataFrame:
    """Every stored eigenvalue: run label, epoch, index (1 = largest), λ, |λ| and its sign."""
    rows = []
    for rec in epoch_table:
        curvature = rec.get("curvature") or {}
        eigs = curvature.get("eigenvalues") or curvature.get("top_k") or []
        for i, lam in enumerate(eigs, start=1):
            lam = float(lam)
            sign = "positive" if lam > 0 else "negative" if lam < 0 else "zero"
            rows.append({"run": label, "epoch": int(rec["epoch"]), "index": i, "eigenvalue": lam,
                         "abs_eigenvalue": abs(lam), "sign": sign})
    return pd.DataFrame(rows, columns=["run", "epoch", "index", "eigenvalue", "abs_eigenvalue", "sign"])


def curvature_trend_frame(epoch_frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """{run label: epoch_frame} -> one long table of trace, top eigenvalue and the curvature means per epoch."""
    columns = ["run", "epoch", "trace", "top_eigenvalue", *CURVATURE_METRICS]
    parts = []
    for label, frame in epoch_frames.items():
        part = pd.DataFrame({"run": label, "epoch": frame["epoch"]})
        for column in columns[2:]:
            part[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame else np.nan
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def curvature_scatter_frame(frame: pd.DataFrame, epoch: int) -> pd.DataFrame:
    """Per training pair: |Δ|, its curvature contribution σ'(Δ)‖Δφ‖², and ‖Δφ‖ recovered from the two.

    ‖Δφ‖ = sqrt(contribution / σ'(Δ)) is exact (σ' > 0 everywhere); it is NaN only where σ'(Δ)
    underflows (|Δ| beyond ~700), far outside any trained model's margins.
    """
    rows = frame[(frame["epoch"] == epoch) & (frame["split"] == "train") & frame["curvature"].notna()]
    sp = np.asarray(sigmoid_prime(rows["margin"].to_numpy(dtype=float)), dtype=float).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm_sq = np.where(sp > 1e-300, rows["curvature"].to_numpy(dtype=float) / sp, np.nan)
    return pd.DataFrame({
        "pair_id": rows["pair_id"].to_list(),
        "margin": rows["margin"].to_numpy(dtype=float),
        "abs_margin": rows["abs_margin"].to_numpy(dtype=float),
        "curvature": rows["curvature"].to_numpy(dtype=float),
        "sigma_prime": sp,
        "dphi_norm": np.sqrt(np.clip(norm_sq, 0.0, None)),
        "count": rows["count"].fillna(0).to_numpy(dtype=int),
    })


# -- pairs and paraphrases ---------------------------------------------------------------------------
def pairs_table(pairs: Sequence[PreferencePair], margins: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Pairs as rows (text columns first), with each pair's margin (Store.pair_margins) where one is given."""
    table = pd.DataFrame({
        "pair_id": [p.id for p in pairs], "prompt": [p.prompt for p in pairs], "chosen": [p.chosen for p in pairs],
        "rejected": [p.rejected for p in pairs], "source": [p.source for p in pairs],
        "parent_id": [p.parent_id for p in pairs], "epoch_added": [p.epoch_added for p in pairs],
        "gold_margin": pd.to_numeric(pd.Series([p.gold_margin for p in pairs], dtype=object), errors="coerce"),
    })
    if margins is not None:
        table["margin"] = [float(margins.get(p.id, np.nan)) for p in pairs]
    return table


def synthetic_pairs_frame(
    pairs: Sequence[PreferencePair], paraphrases: Sequence[ParaphraseRecord], frame: pd.DataFrame
) -> pd.DataFrame:
    """Each synthetic pair beside its parent: texts, which sides were paraphrased, their similarity and
    review status, and the reward model's margin on the child and the parent in the epoch it was added."""
    by_id = {p.id: p for p in pairs}
    records = {r.id: r for r in paraphrases}
    margin_at = {(int(e), pid): m for e, pid, m in frame[["epoch", "pair_id", "margin"]].itertuples(index=False)}
    rows = []
    for pair in pairs:
        if not pair.is_synthetic:
            continue
        parent = by_id.get(pair.parent_id or "")
        row = {
            "pair_id": pair.id, "parent_id": pair.parent_id, "epoch_added": pair.epoch_added,
            "prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected,
            "parent_chosen": parent.chosen if parent else "", "parent_rejected": parent.rejected if parent else "",
            "margin": margin_at.get((pair.epoch_added, pair.id), np.nan),
            "parent_margin": margin_at.get((pair.epoch_added, pair.parent_id), np.nan),
        }
        for side, pid in (("chosen", pair.chosen_paraphrase_id), ("rejected", pair.rejected_paraphrase_id)):
            record = records.get(pid) if pid else None
            row[f"{side}_paraphrased"] = record is not None
            row[f"{side}_similarity"] = record.similarity if record and record.similarity is not None else np.nan
            row[f"{side}_status"] = record.status if record else ""
            row[f"{side}_kind"] = (record.verdicts or {}).get("kind", "paraphrase") if record else ""
        rows.append(row)
    columns = ["pair_id", "parent_id", "epoch_added", "prompt", "chosen", "rejected", "parent_chosen",
               "parent_rejected", "margin", "parent_margin"] + [
        f"{s}_{k}" for s in ("chosen", "rejected") for k in ("paraphrased", "similarity", "status", "kind")]
    return pd.DataFrame(rows, columns=columns)


# -- the 2-D toy ---------------------------------------------------------------------------------------
def toy_frame(pairs: Sequence[PreferencePair], frame: pd.DataFrame, epoch: int) -> pd.DataFrame:
    """Toy pairs known at ``epoch`` as points Δφ = φ(y+) − φ(y−), with that epoch's margin and allocation count."""
    known = [p for p in pairs if p.epoch_added <= epoch]
    if not known:
        return pd.DataFrame(columns=["pair_id", "dphi_x", "dphi_y", "synthetic", "epoch_added", "margin", "count"])
    dphi = toy_features([p.chosen for p in known]) - toy_features([p.rejected for p in known])
    rows = frame[frame["epoch"] == epoch].drop_duplicates("pair_id").set_index("pair_id")
    ids = [p.id for p in known]
    return pd.DataFrame({
        "pair_id": ids, "dphi_x": dphi[:, 0], "dphi_y": dphi[:, 1] if dphi.shape[1] > 1 else 0.0,
        "synthetic": [p.is_synthetic for p in known], "epoch_added": [p.epoch_added for p in known],
        "margin": pd.Series(ids).map(rows["margin"]).astype(float).to_numpy(),
        "count": pd.Series(ids).map(rows["count"]).fillna(0).astype(int).to_numpy(),
    })


def toy_hessian(points: pd.DataFrame, weights: np.ndarray, l2: float = 0.0) -> np.ndarray:
    """The exact 2×2 BT Hessian mean σ'(wᵀΔφ)ΔφΔφᵀ + λI over the training pairs in a toy frame."""
    dphi = points[["dphi_x", "dphi_y"]].to_numpy(dtype=float)
    return linear_bt_hessian(dphi, dphi @ np.asarray(weights, dtype=float), l2)


# -- files ---------------------------------------------------------------------------------------------
def peek_columns(path: str | Path) -> list[str]:
    """The column names a data file has (for the column-mapping widgets); [] if unreadable.

    The loader's own reader (data/readers.py), so compressed uploads (.gz, .bz2, .zst) and columns that
    only appear in later rows are seen exactly as load_pairs will see them.
    """
    return readers.peek_columns(Path(path))


def run_label(run_id: int, name: str, config: Mapping[str, Any]) -> str:
    """How a run is named in pickers: '#3 demo text suite · mars τ=1'."""
    alloc = config.get("allocation", {}) if isinstance(config, Mapping) else {}
    strategy = alloc.get("strategy", "?")
    tau = f" τ={alloc.get('tau'):g}" if strategy in ("mars", "won") and alloc.get("tau") is not None else ""
    return f"#{run_id} {name} · {strategy}{tau}"


def curvature_concentration(points: pd.DataFrame, top: int = 20) -> dict[str, float]:
    """How far the largest curvature contributions come from the small-|Δ| pairs, in numbers.

    ``top_share_small_margin``: of the ``top`` largest contributions, the share with |Δ| below the median |Δ|
    (0.5 would be no relation). ``rank_correlation``: Spearman correlation of |Δ| and the contribution
    (negative: smaller |Δ|, larger contribution). ``norm_correlation``: the same for ‖Δφ‖.
    """
    if len(points) < 3:
        return {"top_share_small_margin": float("nan"), "rank_correlation": float("nan"),
                "norm_correlation": float("nan"), "top": 0}
    top = min(top, len(points))
    largest = points.nlargest(top, "curvature")
    median = float(points["abs_margin"].median())
    ranks = points[["abs_margin", "curvature", "dphi_norm"]].rank()
    return {
        "top_share_small_margin": float((largest["abs_margin"] < median).mean()),
        "rank_correlation": float(ranks["abs_margin"].corr(ranks["curvature"])),
        "norm_correlation": float(ranks["dphi_norm"].corr(ranks["curvature"])),
        "top": top,
    }
