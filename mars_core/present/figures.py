"""Plotly figures for the app, as pure functions of the tables in views.py.

Each returns a `go.Figure` with its data spelled out (histograms as pre-binned bars, not client-side
binning), so a test can read the numbers a user would see from the figure's JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mars_core.analysis.curvature import sigmoid_prime
from mars_core.present import dense
from mars_core.present.palette import strategy_colour

SIGN_COLOURS = {"positive": "#1f77b4", "negative": "#d62728", "zero": "#7f7f7f"}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
MARGIN_AXIS = "Δ = r(x, y+) − r(x, y−)"
HARDEST_SHOWN = 500  # pairs still drawn as points over a density (largest curvature, smallest |Δ|)


def _layout(fig: go.Figure, title: str, **kwargs) -> go.Figure:
    # legend under the plot: above it, it collides with titles and subplot titles
    fig.update_layout(title=title, template="plotly_white", margin={"l": 50, "r": 20, "t": 70, "b": 40},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0}, **kwargs)
    return fig


def margin_histogram(samples: Mapping[int, np.ndarray], edges: np.ndarray, split: str = "test") -> go.Figure:
    """Δ per epoch on one set of bins (overlaid when several epochs are chosen); Δ < 0 is a mis-ranked pair."""
    edges = np.asarray(edges, dtype=float)
    centres, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig = go.Figure()
    for i, (epoch, values) in enumerate(samples.items()):
        counts, _ = np.histogram(np.asarray(values, dtype=float), bins=edges)
        fig.add_trace(go.Bar(
            x=centres, y=counts, width=widths, name=f"epoch {epoch}", marker_color=_PALETTE[i % len(_PALETTE)],
            opacity=0.55 if len(samples) > 1 else 0.9,
            hovertemplate="Δ ≈ %{x:.3f}<br>%{y} pairs<extra>epoch " + str(epoch) + "</extra>",
        ))
    fig.add_vline(x=0.0, line_dash="dash", line_color="black", annotation_text="Δ = 0", annotation_position="top")
    # the legend names the epoch even when only one is shown
    return _layout(fig, f"Margins on the {split} pairs", barmode="overlay", bargap=0, showlegend=True,
                   xaxis_title=MARGIN_AXIS, yaxis_title="pairs")


def quality_curves(epochs: pd.DataFrame, labels: Mapping[str, str]) -> go.Figure:
    """Accuracy-like metrics (0–1, left) and the margin SNR (right) over epochs."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy on held-out pairs", "margin SNR"))
    for i, (column, label) in enumerate(labels.items()):
        if column not in epochs or epochs[column].isna().all():
            continue
        col = 2 if "snr" in column else 1
        fig.add_trace(go.Scatter(x=epochs["epoch"], y=epochs[column], mode="lines+markers", name=label,
                                 line_color=_PALETTE[i % len(_PALETTE)]), row=1, col=col)
    fig.update_xaxes(title_text="epoch", dtick=1)
    return _layout(fig, "Held-out quality over epochs")


def allocation_figure(allocation: pd.DataFrame, title: str = "Stored allocation") -> go.Figure:
    """Shares q_i sorted from the largest (line) and the integer paraphrase counts they became (bars)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    n = len(allocation)
    bars, line = allocation, allocation
    if dense.too_many(n):  # a bar per pair (most of them 0) and a line vertex per pair: keep what can be seen
        bars, line = allocation[allocation["count"] > 0], allocation.iloc[dense.thin(n)]
        title += f" ({n:,} pairs; bars where the count is above 0)"
    fig.add_trace(go.Bar(x=bars["rank"], y=bars["count"], name="budget units (kept paraphrases)",
                         marker_color="#ff7f0e", opacity=0.6), secondary_y=True)
    fig.add_trace(go.Scatter(x=line["rank"], y=line["q"], mode="lines", name="share q_i",
                             line_color="#1f77b4"), secondary_y=False)
    fig.update_xaxes(title_text="pair rank by q (1 = largest share)")
    fig.update_yaxes(title_text="q_i", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="generations", secondary_y=True, rangemode="tozero", showgrid=False)
    return _layout(fig, title)


def strategy_comparison_figure(what_if: pd.DataFrame, summary: pd.DataFrame) -> go.Figure:
    """Side by side, at the same budget: each strategy's counts against the pair's |Δ| (and q as a line)."""
    strategies = list(dict.fromkeys(what_if["strategy"]))
    effective = dict(zip(summary["strategy"], summary["effective_n"], strict=True)) if len(summary) else {}
    sizes = what_if["strategy"].value_counts()
    thinned = {s: dense.too_many(int(sizes.get(s, 0))) for s in strategies}
    zeros = what_if[what_if["count"] == 0]["strategy"].value_counts()
    titles = [f"{s}: N_eff = {effective.get(s, float('nan')):.1f}"
              + (f"<br>({int(zeros.get(s, 0)):,} pairs at 0 not drawn)" if thinned[s] else "") for s in strategies]
    fig = make_subplots(rows=1, cols=max(1, len(strategies)), shared_yaxes=True, subplot_titles=titles,
                        specs=[[{"secondary_y": True}] * max(1, len(strategies))])
    for col, strategy in enumerate(strategies, start=1):
        part = what_if[what_if["strategy"] == strategy].assign(abs_margin=lambda d: d["margin"].abs())
        part = part.sort_values("abs_margin")
        colour = strategy_colour(strategy)
        dots, line, points = part, part, go.Scatter
        if thinned[strategy]:
            dots, line, points = part[part["count"] > 0], part.iloc[dense.thin(len(part))], go.Scattergl
        fig.add_trace(points(x=dots["abs_margin"], y=dots["count"], mode="markers", name=f"{strategy} counts",
                             marker={"color": colour, "size": 6}, legendgroup=strategy), row=1, col=col)
        fig.add_trace(go.Scatter(x=line["abs_margin"], y=line["q"], mode="lines", name=f"{strategy} q",
                                 line={"color": colour, "dash": "dot"}, legendgroup=strategy, showlegend=False),
                      row=1, col=col, secondary_y=True)
        fig.update_xaxes(title_text="|Δ| the allocation saw", row=1, col=col)
    fig.update_yaxes(title_text="generations", secondary_y=False, row=1, col=1)
    fig.update_yaxes(rangemode="tozero", secondary_y=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, rangemode="tozero", secondary_y=True)
    return _layout(fig, "Same budget, three strategies (dots: counts, dotted: q)")


def spectrum_figure(spectrum: pd.DataFrame) -> go.Figure:
    """|λ| by rank on a log axis, one line per (run, epoch); markers blue for λ > 0, red for λ < 0.

    Exact zeros (a rank-deficient Hessian) cannot sit on a log axis; they are left out and counted in the legend.
    """
    fig = go.Figure()
    groups = list(spectrum.groupby(["run", "epoch"], sort=True)) if len(spectrum) else []
    for i, ((run, epoch), part) in enumerate(groups):
        shown = part[part["abs_eigenvalue"] > 0]
        zeros = len(part) - len(shown)
        name = f"{run} · epoch {epoch}".strip(" ·") + (f" ({zeros} zero)" if zeros else "")
        fig.add_trace(go.Scatter(
            x=shown["index"], y=shown["abs_eigenvalue"], mode="lines+markers", name=name,
            line={"color": _PALETTE[i % len(_PALETTE)], "width": 1},
            marker={"color": [SIGN_COLOURS[s] for s in shown["sign"]], "size": 5},
            customdata=shown["eigenvalue"], hovertemplate="λ_%{x} = %{customdata:.3g}<extra>" + name + "</extra>",
        ))
    fig.update_yaxes(type="log", title_text="|λ|")
    fig.update_xaxes(title_text="eigenvalue rank (1 = largest)")
    return _layout(fig, "Hessian spectrum of the BT loss (marker blue: λ > 0, red: λ < 0)")


def curvature_trend_figure(trend: pd.DataFrame) -> go.Figure:
    """trace(H) and the top eigenvalue over epochs, one line per run (strategy comparisons)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("trace(H)", "largest eigenvalue λ_max"))
    for i, (run, part) in enumerate(trend.groupby("run", sort=False)):
        colour = _PALETTE[i % len(_PALETTE)]
        for col, column in ((1, "trace"), (2, "top_eigenvalue")):
            fig.add_trace(go.Scatter(x=part["epoch"], y=part[column], mode="lines+markers", name=str(run),
                                     line_color=colour, legendgroup=str(run), showlegend=col == 1), row=1, col=col)
    fig.update_xaxes(title_text="epoch", dtick=1)
    return _layout(fig, "Curvature over epochs")


def curvature_scatter(points: pd.DataFrame) -> go.Figure:
    """Each pair's curvature contribution σ'(Δ)‖Δφ‖² against |Δ|, coloured by ‖Δφ‖.

    The dashed curve is σ'(Δ)·median‖Δφ‖²: what the contributions would be if every pair had the same
    ‖Δφ‖. Points above or below it are pairs whose feature difference is larger or smaller than typical,
    which is why the largest contributions need not sit at Δ = 0. Above dense.POINTS_MAX pairs: a density,
    with the largest contributions and the allocated pairs still drawn as points (WebGL).
    """
    all_norms, reach = points["dphi_norm"], float(points["abs_margin"].max()) if len(points) else 1.0
    fig = go.Figure()
    title = "Per-pair curvature contribution (black outline: allocated budget this epoch)"
    if dense.too_many(len(points)):
        fig.add_trace(dense.density_trace(points["abs_margin"], points["curvature"], "training pairs"))
        top = points.nlargest(HARDEST_SHOWN, "curvature")
        shown = pd.concat([top, points[points["count"] > 0]]).drop_duplicates("pair_id")
        points, marker = shown, go.Scattergl
        title = (f"Per-pair curvature contribution: density of all pairs; points: the {HARDEST_SHOWN} largest "
                 "contributions and the allocated pairs (black outline)")
    else:
        marker = go.Scatter
    picked = points["count"] > 0
    fig.add_trace(marker(
        x=points["abs_margin"], y=points["curvature"], mode="markers",
        name="training pairs" if marker is go.Scatter else "largest contributions and allocated pairs",
        marker={"color": points["dphi_norm"], "colorscale": "Viridis", "size": 6, "opacity": 0.8,
                "colorbar": {"title": {"text": "‖Δφ‖"}},
                "line": {"color": np.where(picked, "black", "rgba(0,0,0,0)").tolist(), "width": 1}},
        customdata=np.stack([points["margin"], points["dphi_norm"], points["count"]], axis=-1)
        if len(points) else None,
        text=points["pair_id"],
        hovertemplate="%{text}<br>Δ = %{customdata[0]:.3f}<br>‖Δφ‖ = %{customdata[1]:.3f}"
                      "<br>contribution = %{y:.4f}<br>allocated %{customdata[2]}<extra></extra>",
    ))
    norms = all_norms.dropna()
    if len(norms) and len(points):
        grid = np.linspace(0.0, reach or 1.0, 200)
        fig.add_trace(go.Scatter(x=grid, y=np.asarray(sigmoid_prime(grid)) * float(np.median(norms)) ** 2,
                                 mode="lines", name="σ'(Δ)·median ‖Δφ‖²", line={"dash": "dash", "color": "black"}))
    fig.update_xaxes(title_text="|Δ|")
    fig.update_yaxes(title_text="σ'(Δ)·‖Δφ‖²")
    return _layout(fig, title)


def picked_curvature_figure(trend: pd.DataFrame, labels: Mapping[str, str]) -> go.Figure:
    """Mean curvature contribution of the picked pairs, of the added pairs and of all pairs, per epoch and run."""
    fig = go.Figure()
    dashes = ("solid", "dot", "dash")
    for i, (run, part) in enumerate(trend.groupby("run", sort=False)):
        for dash, (column, label) in zip(dashes, labels.items(), strict=False):
            if column not in part or part[column].isna().all():
                continue
            fig.add_trace(go.Scatter(x=part["epoch"], y=part[column], mode="lines+markers",
                                     name=f"{run}: {label}" if run else label,
                                     line={"color": _PALETTE[i % len(_PALETTE)], "dash": dash}))
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text="mean σ'(Δ)·‖Δφ‖²")
    return _layout(fig, "Curvature of the pairs the strategy spent budget on vs all pairs")


def ellipse_points(hessian: np.ndarray, scale: float = 2.0, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Points of scale·H^{1/2}·(unit circle): semi-axes scale·√λ_k along H's eigenvectors."""
    lam, vec = np.linalg.eigh(0.5 * (np.asarray(hessian, dtype=float) + np.asarray(hessian, dtype=float).T))
    angle = np.linspace(0.0, 2 * np.pi, n)
    circle = np.stack([np.cos(angle), np.sin(angle)])
    pts = vec @ (np.sqrt(np.clip(lam, 0.0, None))[:, None] * circle) * scale
    return pts[0], pts[1]


def _boundary(weights: np.ndarray, reach: float) -> tuple[list[float], list[float]]:
    w = np.asarray(weights, dtype=float)
    norm = float(np.linalg.norm(w))
    if norm == 0:
        return [], []
    direction = np.array([-w[1], w[0]]) / norm
    return [-reach * direction[0], reach * direction[0]], [-reach * direction[1], reach * direction[1]]


def toy_figure(
    points: pd.DataFrame, weights: np.ndarray, gold_weights: np.ndarray | None = None,
    hessian: np.ndarray | None = None, previous_weights: np.ndarray | None = None,
    previous_hessian: np.ndarray | None = None, ellipse_scale: float = 2.0, epoch: int | None = None,
) -> go.Figure:
    """The 2-D toy in Δφ space: pairs coloured by margin sign, the ones MARS picked ringed and sized by count,
    the boundary wᵀΔφ = 0 (now, before this epoch, and the gold one) and the Hessian ellipse."""
    fig = go.Figure()
    original = everything = points[~points["synthetic"]]
    synthetic = points[points["synthetic"]]
    kind = go.Scattergl if dense.too_many(len(points)) else go.Scatter  # WebGL, and a density, at scale
    xy = points[["dphi_x", "dphi_y"]].to_numpy(dtype=float)
    reach = float(np.abs(xy).max()) * 1.1 if len(xy) else 1.0
    if len(synthetic):
        fig.add_trace(kind(x=synthetic["dphi_x"], y=synthetic["dphi_y"], mode="markers", name="synthetic pairs",
                           marker={"size": 4, "color": "#9467bd", "opacity": 0.45}, text=synthetic["pair_id"]))
    if kind is go.Scattergl:  # a density of every pair; the pairs nearest the boundary stay points
        fig.add_trace(dense.density_trace(original["dphi_x"], original["dphi_y"], "original pairs",
                                          x_range=(-reach, reach), y_range=(-reach, reach), colorscale="Blues",
                                          showscale=False))
        original = original.loc[original["margin"].abs().nsmallest(dense.POINTS_MAX // 2).index]
    for sign, mask in (("right side (Δ > 0)", original["margin"] > 0), ("wrong side (Δ ≤ 0)", ~(original["margin"] > 0))):
        part = original[mask]
        if kind is go.Scattergl:
            sign += f", of the {len(original):,} nearest the boundary"
        fig.add_trace(kind(
            x=part["dphi_x"], y=part["dphi_y"], mode="markers", name=sign, text=part["pair_id"],
            marker={"size": 6, "color": "#1f77b4" if "right" in sign else "#d62728", "opacity": 0.7},
            customdata=part["margin"], hovertemplate="%{text}<br>Δ = %{customdata:.3f}<extra></extra>",
        ))
    picked = everything[everything["count"] > 0]
    if len(picked):
        fig.add_trace(kind(
            x=picked["dphi_x"], y=picked["dphi_y"], mode="markers", name=f"picked this epoch ({len(picked)})",
            marker={"size": 8 + 3 * np.sqrt(picked["count"].to_numpy(dtype=float)), "color": "rgba(0,0,0,0)",
                    "line": {"color": "#ff7f0e", "width": 2}},
            customdata=picked["count"], text=picked["pair_id"],
            hovertemplate="%{text}<br>%{customdata} generations<extra></extra>",
        ))
    lines = [(weights, "boundary wᵀΔφ = 0", "solid", "black")]
    if previous_weights is not None:
        lines.append((previous_weights, "boundary before this epoch (the model that picked)", "dot", "#ff7f0e"))
    if gold_weights is not None:
        lines.append((gold_weights, "gold boundary w*ᵀΔφ = 0", "dash", "#2ca02c"))
    for w, name, dash, colour in lines:
        bx, by = _boundary(w, reach)
        fig.add_trace(go.Scatter(x=bx, y=by, mode="lines", name=name, line={"dash": dash, "color": colour}))
    for h, name, dash in ((hessian, "Hessian ellipse", "solid"), (previous_hessian, "Hessian ellipse before", "dot")):
        if h is not None:
            ex, ey = ellipse_points(h, ellipse_scale)
            fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", name=name, line={"color": "#8c564b", "dash": dash}))
    fig.update_xaxes(title_text="Δφ₁", range=[-reach, reach], zeroline=True)
    fig.update_yaxes(title_text="Δφ₂", range=[-reach, reach], scaleanchor="x", scaleratio=1, zeroline=True)
    title = "The 2-D toy in Δφ = φ(y+) − φ(y−) space" + (f", epoch {epoch}" if epoch is not None else "")
    return _layout(fig, title, height=620)


__all__: Sequence[str] = (
    "margin_histogram", "quality_curves", "allocation_figure", "strategy_comparison_figure", "spectrum_figure",
    "curvature_trend_figure", "curvature_scatter", "picked_curvature_figure", "ellipse_points", "toy_figure",
)


def validation_curve_figure(epoch_table: Sequence[Mapping]) -> go.Figure | None:
    """The fine-tuned model's early-stopping check per fit: validation BT loss over optimiser steps, one line per
    epoch (legend: passes taken, the step whose weights were kept); None when no fit held pairs out."""
    fig = go.Figure()
    for i, rec in enumerate(epoch_table):
        details = (rec.get("metrics") or {}).get("fit_details") or {}
        curve = details.get("validation") or []
        if not curve:
            continue
        colour = _PALETTE[i % len(_PALETTE)]
        steps, losses = [c["step"] for c in curve], [c["loss"] for c in curve]
        fig.add_trace(go.Scatter(
            x=steps, y=losses, mode="lines+markers", line_color=colour,
            name=f"epoch {rec['epoch']}: {details.get('passes')} passes, kept step {details.get('best_step')}",
            customdata=[c["accuracy"] for c in curve],
            hovertemplate="step %{x}<br>loss %{y:.4f}<br>accuracy %{customdata:.3f}<extra></extra>"))
        best = next((c for c in curve if c["step"] == details.get("best_step")), None)
        if best is not None:
            fig.add_trace(go.Scatter(x=[best["step"]], y=[best["loss"]], mode="markers", showlegend=False,
                                     marker={"symbol": "star", "size": 13, "color": colour}, hoverinfo="skip"))
    if not fig.data:
        return None
    return _layout(fig, "Early stopping: validation loss per fit (★ = weights kept)", xaxis_title="optimiser step",
                   yaxis_title="BT loss on held-out training prompts")
