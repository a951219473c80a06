"""Figures that stay light at 100,000 pairs: server-side 2-D densities, thinned lines, WebGL points.

A browser draws a few thousand SVG markers quickly and a hundred thousand in tens of seconds, so above
POINTS_MAX a per-pair scatter becomes a density (counts binned here, sent as a small heatmap) and only the
pairs a reader looks for (picked, hardest) stay points, drawn with WebGL (Scattergl).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

POINTS_MAX = 5_000  # above this many points a scatter becomes a density
LINE_POINTS = 2_000  # a line over sorted values keeps this many vertices (plus its head)


def too_many(n: int) -> bool:
    return n > POINTS_MAX


def density_trace(x: np.ndarray, y: np.ndarray, name: str, bins: tuple[int, int] = (120, 90),
                  x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
                  colorscale: str = "Greys", showscale: bool = True) -> go.Heatmap:
    """Pairs per cell as a heatmap (log-scaled colour, exact count on hover); empty cells are transparent."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    rx = x_range or ((float(x.min()), float(x.max())) if x.size else (0.0, 1.0))
    ry = y_range or ((float(y.min()), float(y.max())) if y.size else (0.0, 1.0))
    rx = rx if rx[1] > rx[0] else (rx[0] - 0.5, rx[0] + 0.5)
    ry = ry if ry[1] > ry[0] else (ry[0] - 0.5, ry[0] + 0.5)
    counts, xe, ye = np.histogram2d(x, y, bins=bins, range=(rx, ry))
    z = np.where(counts > 0, np.log10(np.maximum(counts, 1)) + 1, np.nan).T  # rows are y
    return go.Heatmap(
        x=(xe[:-1] + xe[1:]) / 2, y=(ye[:-1] + ye[1:]) / 2, z=z, customdata=counts.T.astype(int),
        colorscale=colorscale, showscale=showscale, name=f"{name} ({x.size:,} pairs, density)",
        colorbar={"title": {"text": "pairs (log)"}, "tickvals": [1, 2, 3, 4, 5], "ticktext": ["1", "10", "100",
                                                                                            "1k", "10k"]},
        hovertemplate="%{customdata} pairs<extra>" + name + "</extra>", showlegend=True, hoverongaps=False,
    )


def thin(n: int, keep: int = LINE_POINTS, head: int = 500) -> np.ndarray:
    """Indices of a line over n sorted values worth drawing: all of its head, then evenly spaced, and the last."""
    if n <= keep + head:
        return np.arange(n)
    return np.unique(np.concatenate([np.arange(head), np.linspace(head, n - 1, keep).round().astype(int)]))
