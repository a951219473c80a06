"""Figures of a comparison (frames from compare_views -> go.Figure): curves with error bars, per-seed
distributions, and paired differences with their confidence intervals. Pure functions, tested by their JSON."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from mars_core.present.palette import strategy_colour as _colour  # one palette for every page


def sweep_figure(frame: pd.DataFrame, x_title: str, y_title: str) -> go.Figure:
    """Mean over seeds per strategy against the swept value, error bars ±1 std across seeds."""
    fig = go.Figure()
    for strategy, rows in frame.groupby("strategy", sort=False):
        numeric = pd.to_numeric(rows["value"], errors="coerce")
        rows = rows.assign(_x=numeric).sort_values("_x") if numeric.notna().all() else rows
        fig.add_trace(go.Scatter(
            x=rows["value"], y=rows["mean"], name=str(strategy), mode="lines+markers",
            error_y={"type": "data", "array": rows["std"].fillna(0.0).tolist(), "visible": True},
            line={"color": _colour(str(strategy))},
            hovertemplate="%{x}: %{y:.4f}<extra>" + str(strategy) + "</extra>",
        ))
    fig.update_layout(xaxis_title=x_title, yaxis_title=f"{y_title} (mean ± std over seeds)",
                      margin={"t": 30, "b": 40}, legend_title_text="strategy")
    return fig


def distribution_figure(frame: pd.DataFrame, y_title: str) -> go.Figure:
    """One box per strategy with every seed's value as a point: how much seeds alone move the metric."""
    fig = go.Figure()
    for strategy, rows in frame.groupby("strategy", sort=False):
        fig.add_trace(go.Box(
            y=rows["value"], name=str(strategy), boxpoints="all", jitter=0.3, pointpos=0,
            marker={"color": _colour(str(strategy))}, text=[f"seed {s}" for s in rows["seed"]],
        ))
    fig.update_layout(yaxis_title=f"{y_title} (one point per seed)", showlegend=False, margin={"t": 30, "b": 40})
    return fig


def difference_figure(frame: pd.DataFrame, baseline: str, x_title: str) -> go.Figure:
    """Strategy − baseline with its paired bootstrap 95% CI; the dotted band is ± the smallest detectable
    difference, so a reader sees at once whether an effect of that size could have been found."""
    fig = go.Figure()
    if not frame.empty:
        est = frame["estimate"]
        fig.add_trace(go.Scatter(
            x=est, y=frame["strategy"], mode="markers", name="estimate",
            marker={"size": 10, "color": [_colour(s) for s in frame["strategy"]]},
            error_x={"type": "data", "symmetric": False, "array": (frame["ci_high"] - est).fillna(0).tolist(),
                     "arrayminus": (est - frame["ci_low"]).fillna(0).tolist(), "visible": True},
            hovertemplate="%{y}: %{x:+.4f}<extra></extra>",
        ))
        mdd = frame["mdd"].dropna()
        if len(mdd):
            width = float(mdd.max())
            fig.add_vrect(x0=-width, x1=width, fillcolor="#cccccc", opacity=0.25, line_width=0,
                          annotation_text="smallest detectable", annotation_position="top left")
    fig.add_vline(x=0, line_dash="dot")
    fig.update_layout(xaxis_title=f"{x_title}: strategy − {baseline} (95% CI)", showlegend=False,
                      margin={"t": 30, "b": 40})
    return fig
