"""figures.py: each figure carries the numbers the page means to show (read back from its JSON)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from mars_core.analysis.curvature import linear_bt_hessian, sigmoid_prime
from mars_core.augment.allocation import AllocationConfig
from mars_core.present import figures, views


def decode_arrays(node):
    """Plotly 7 writes numeric arrays as {"dtype", "bdata"} (base64); turn them back into lists."""
    if isinstance(node, dict):
        if "bdata" in node and "dtype" in node:
            values = np.frombuffer(base64.b64decode(node["bdata"]), dtype=np.dtype(node["dtype"]))
            if "shape" in node:
                values = values.reshape([int(n) for n in str(node["shape"]).split(",")])
            return values.tolist()
        return {k: decode_arrays(v) for k, v in node.items()}
    if isinstance(node, list):
        return [decode_arrays(v) for v in node]
    return node


def _spec(fig: go.Figure) -> dict:
    assert isinstance(fig, go.Figure)
    return decode_arrays(json.loads(fig.to_json()))


def test_margin_histogram_bins_every_epoch_on_the_same_edges():
    rng = np.random.default_rng(0)
    samples = {0: rng.normal(0, 1, 300), 2: rng.normal(1.5, 0.7, 250)}
    edges = views.shared_bins(samples.values(), 30)
    spec = _spec(figures.margin_histogram(samples, edges, "test"))
    bars = [t for t in spec["data"] if t["type"] == "bar"]
    assert [b["name"] for b in bars] == ["epoch 0", "epoch 2"]
    assert bars[0]["x"] == bars[1]["x"]
    assert [sum(b["y"]) for b in bars] == [300, 250]
    expected, _ = np.histogram(samples[2], edges)
    assert bars[1]["y"] == expected.tolist()
    assert spec["layout"]["barmode"] == "overlay"


def test_quality_curves_skip_metrics_without_data():
    epochs = pd.DataFrame({"epoch": [0, 1], "test_accuracy": [0.7, 0.8], "test_gold_accuracy": [np.nan, np.nan],
                           "test_snr": [1.0, 1.2]})
    spec = _spec(figures.quality_curves(epochs, views.QUALITY_METRICS))
    names = [t["name"] for t in spec["data"]]
    assert names == [views.QUALITY_METRICS["test_accuracy"], views.QUALITY_METRICS["test_snr"]]
    assert spec["data"][1]["xaxis"] == "x2"  # SNR on its own axis


def test_allocation_figure_shows_sorted_shares_and_counts():
    what_if, _ = views.what_if_allocations(np.linspace(-1, 2, 40), 25, AllocationConfig(tau=2.0), strategies=("mars",))
    table = what_if.sort_values("rank")
    spec = _spec(figures.allocation_figure(table))
    bar = next(t for t in spec["data"] if t["type"] == "bar")
    line = next(t for t in spec["data"] if t["type"] == "scatter")
    assert sum(bar["y"]) == 25
    assert np.all(np.diff(line["y"]) <= 1e-15)


def test_strategy_comparison_has_one_panel_per_strategy_at_equal_budget():
    what_if, summary = views.what_if_allocations(np.linspace(-1, 2, 40), 24, AllocationConfig(tau=2.0))
    spec = _spec(figures.strategy_comparison_figure(what_if, summary))
    counts = {t["legendgroup"]: sum(t["y"]) for t in spec["data"] if t["mode"] == "markers"}
    assert counts == {"mars": 24, "uniform": 24, "won": 24}
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert titles[1] == "uniform: N_eff = 40.0"


def test_spectrum_figure_log_axis_sign_colours_and_zero_count():
    spectrum = pd.DataFrame({
        "run": "r", "epoch": [1, 1, 1, 1], "index": [1, 2, 3, 4], "eigenvalue": [2.0, 0.5, 0.0, -0.1],
        "abs_eigenvalue": [2.0, 0.5, 0.0, 0.1], "sign": ["positive", "positive", "zero", "negative"],
    })
    spec = _spec(figures.spectrum_figure(spectrum))
    assert spec["layout"]["yaxis"]["type"] == "log"
    trace = spec["data"][0]
    assert trace["y"] == [2.0, 0.5, 0.1]
    assert trace["marker"]["color"] == [figures.SIGN_COLOURS["positive"]] * 2 + [figures.SIGN_COLOURS["negative"]]
    assert "(1 zero)" in trace["name"]


def test_curvature_trend_one_line_per_run_in_both_panels():
    trend = pd.DataFrame({"run": ["a", "a", "b", "b"], "epoch": [0, 1, 0, 1], "trace": [1, 2, 3, 4],
                          "top_eigenvalue": [0.5, 0.6, 0.7, 0.8]})
    spec = _spec(figures.curvature_trend_figure(trend))
    assert [(t["name"], t["xaxis"]) for t in spec["data"]] == [("a", "x"), ("a", "x2"), ("b", "x"), ("b", "x2")]
    assert spec["data"][3]["y"] == [0.7, 0.8]


def test_curvature_scatter_colours_by_delta_phi_and_draws_the_equal_norm_curve():
    margins = np.array([-0.1, 0.5, 2.0, 3.0])
    norms = np.array([0.2, 1.0, 3.0, 1.0])
    points = pd.DataFrame({"pair_id": list("abcd"), "margin": margins, "abs_margin": np.abs(margins),
                           "curvature": sigmoid_prime(margins) * norms**2, "dphi_norm": norms, "count": [0, 2, 0, 1]})
    spec = _spec(figures.curvature_scatter(points))
    dots, curve = spec["data"]
    assert dots["marker"]["color"] == norms.tolist()
    assert dots["marker"]["line"]["color"] == ["rgba(0,0,0,0)", "black", "rgba(0,0,0,0)", "black"]
    assert curve["y"][0] == pytest.approx(0.25 * np.median(norms) ** 2)  # σ'(0) = 1/4 at the left end
    assert np.argmax(curve["y"]) == 0
    assert int(np.argmax(dots["y"])) == 2  # the largest contribution here is far from Δ = 0


def test_picked_curvature_figure_has_a_line_per_available_metric():
    trend = pd.DataFrame({"run": "", "epoch": [0, 1, 2], "picked_curvature": [np.nan, 0.2, 0.1],
                          "added_curvature": [np.nan, 0.15, 0.1], "mean_curvature": [0.1, 0.1, 0.08]})
    spec = _spec(figures.picked_curvature_figure(trend, views.CURVATURE_METRICS))
    assert [t["name"] for t in spec["data"]] == list(views.CURVATURE_METRICS.values())


def test_ellipse_points_lie_on_the_hessian_ellipse():
    rng = np.random.default_rng(1)
    dphi = rng.normal(size=(50, 2)) * [1.0, 0.3]
    hessian = linear_bt_hessian(dphi, dphi @ np.array([1.0, -2.0]), l2=1e-3)
    x, y = figures.ellipse_points(hessian, scale=2.0)
    pts = np.stack([x, y], axis=1)
    quad = np.einsum("ij,jk,ik->i", pts, np.linalg.inv(hessian), pts)
    assert quad == pytest.approx(np.full(len(pts), 4.0))


def test_toy_figure_draws_boundary_perpendicular_to_w_and_rings_the_picked_pairs():
    points = pd.DataFrame({"pair_id": ["a", "b", "c", "s"], "dphi_x": [1.0, -0.5, 0.2, 0.3],
                           "dphi_y": [0.5, 0.4, -0.1, 0.1], "synthetic": [False, False, False, True],
                           "epoch_added": [0, 0, 0, 1], "margin": [1.5, -0.9, 0.5, np.nan], "count": [0, 3, 1, 0]})
    w = np.array([2.0, -1.0])
    hessian = np.array([[0.2, 0.05], [0.05, 0.1]])
    spec = _spec(figures.toy_figure(points, w, np.array([2.0, -1.0]), hessian, w * 0.5, hessian * 2, epoch=1))
    by_name = {t["name"]: t for t in spec["data"]}
    line = by_name["boundary wᵀΔφ = 0"]
    direction = np.array([line["x"][1] - line["x"][0], line["y"][1] - line["y"][0]])
    assert abs(direction @ w) < 1e-9
    picked = by_name["picked this epoch (2)"]
    assert picked["text"] == ["b", "c"]
    assert by_name["wrong side (Δ ≤ 0)"]["text"] == ["b"]
    assert by_name["synthetic pairs"]["text"] == ["s"]
    assert {"Hessian ellipse", "Hessian ellipse before", "gold boundary w*ᵀΔφ = 0"} <= set(by_name)
    assert spec["layout"]["yaxis"]["scaleanchor"] == "x"
