"""Server-side densities and thinned lines: what replaces one marker per pair at 100,000 pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mars_core.present import dense, figures


def test_a_density_counts_every_pair_once_and_leaves_empty_cells_blank():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=100_000), rng.normal(size=100_000)
    x[:3] = np.nan  # unusable points are not counted
    trace = dense.density_trace(x, y, "pairs", bins=(50, 40))
    counts = np.asarray(trace.customdata)
    assert counts.shape == (40, 50) and counts.sum() == 100_000 - 3
    z = np.asarray(trace.z, dtype=float)
    assert np.isnan(z[counts == 0]).all() and np.allclose(z[counts > 0], np.log10(counts[counts > 0]) + 1)
    assert "99,997 pairs" in trace.name


def test_thin_keeps_the_head_and_the_last_point_of_a_long_line():
    idx = dense.thin(100_000)
    assert idx[0] == 0 and idx[-1] == 99_999 and (np.diff(idx) > 0).all()
    assert set(range(500)) <= set(idx.tolist()) and len(idx) <= dense.LINE_POINTS + 500
    assert dense.thin(1_000).tolist() == list(range(1_000))


def test_the_allocation_figure_at_scale_keeps_every_allocated_pair():
    n = 50_000
    q = np.sort(np.random.default_rng(2).dirichlet(np.ones(n)))[::-1]
    counts = np.zeros(n, dtype=int)
    counts[[0, 1, 2, 7, 40_000]] = [3, 2, 1, 1, 1]
    table = pd.DataFrame({"rank": np.arange(1, n + 1), "q": q, "count": counts})
    fig = figures.allocation_figure(table, "t")
    bars = next(t for t in fig.data if t.type == "bar")
    assert list(bars.x) == [1, 2, 3, 8, 40_001] and list(bars.y) == [3, 2, 1, 1, 1]
    line = next(t for t in fig.data if t.type == "scatter")
    assert line.x[0] == 1 and line.x[-1] == n and len(line.x) < 3_000
    assert "50,000 pairs" in fig.layout.title.text
