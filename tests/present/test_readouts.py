"""The numbers pages show beside their figures, checked on small hand-made frames."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mars_core.present import readouts


def test_quality_tiles_show_values_and_changes_since_the_previous_epoch():
    epochs = pd.DataFrame({"epoch": [0, 1, 2], "acc": [0.5, 0.75, math.nan], "snr": [1.0, 0.5, 2.0]})
    metrics = {"acc": "Accuracy", "snr": "SNR"}
    assert readouts.quality_tiles(epochs, 0, metrics) == [
        readouts.Tile("Accuracy", "0.500", None), readouts.Tile("SNR", "1.000", None)]
    assert readouts.quality_tiles(epochs, 1, metrics) == [
        readouts.Tile("Accuracy", "0.750", "+0.250"), readouts.Tile("SNR", "0.500", "-0.500")]
    missing = readouts.quality_tiles(epochs, 2, metrics)
    assert missing[0] == readouts.Tile("Accuracy", "n/a", None) and missing[1].delta == "+1.500"
    assert readouts.quality_tiles(epochs.drop(columns="snr"), 1, metrics)[1] == readouts.Tile("SNR", "n/a", None)


def margins(alloc_margin: list[float]) -> pd.DataFrame:
    return pd.DataFrame({
        "epoch": [1, 1, 1, 1, 0], "split": ["train", "train", "test", "synthetic", "train"],
        "pair_id": ["a", "b", "t", "a~1", "a"], "margin": [0.1, -0.2, 0.3, 0.4, 0.5],
        "alloc_margin": [*alloc_margin, np.nan, np.nan, np.nan],
    })


def test_allocation_sources_offer_the_margins_the_allocation_saw_first():
    rows, sources = readouts.allocation_sources(margins([0.7, -0.9]), 1, allocated=True)
    assert rows["pair_id"].tolist() == ["a", "b"]
    assert list(sources) == ["the margins epoch 1's allocation saw", readouts.CURRENT_MARGINS]
    assert sources["the margins epoch 1's allocation saw"].tolist() == [0.7, -0.9]
    assert sources[readouts.CURRENT_MARGINS].tolist() == [0.1, -0.2]
    _, before = readouts.allocation_sources(margins([0.7, -0.9]), 1, allocated=False)
    assert list(before) == [readouts.CURRENT_MARGINS], "nothing was allocated yet"
    _, unknown = readouts.allocation_sources(margins([0.7, np.nan]), 1, allocated=True)
    assert list(unknown) == [readouts.CURRENT_MARGINS], "an incomplete record is not offered"


def test_parent_groups_count_children_smallest_parent_margin_first():
    synthetic = pd.DataFrame({"pair_id": ["p~1", "q~1", "q~2", "r~1", "p~2", "p~3"],
                              "parent_id": ["p", "q", "q", "r", "p", "p"],
                              "parent_margin": [0.9, -0.1, -0.1, 0.3, 0.9, 0.9]})
    groups = readouts.parent_groups(synthetic)
    assert groups.to_dict("list") == {"parent_id": ["q", "r", "p"], "children": [2, 1, 3],
                                      "parent_margin": [-0.1, 0.3, 0.9]}


def toy_points() -> pd.DataFrame:
    return pd.DataFrame({"pair_id": ["a", "b", "c", "a~1"], "dphi_x": [1.0, 0.0, 1.0, 1.1],
                         "dphi_y": [0.0, 1.0, 1.0, 0.1], "synthetic": [False, False, False, True],
                         "epoch_added": [0, 0, 0, 1], "margin": [0.5, -1.5, 2.0, 0.6], "count": [2, 0, 1, 0]})


def test_toy_readout_angle_picked_pairs_and_eigenvalues():
    points = toy_points()
    hessian = np.array([[2.0, 0.0], [0.0, 0.5]])
    readout = readouts.toy_readout(points, np.array([1.0, 1.0]), np.array([1.0, 0.0]), hessian)
    assert readout.angle_deg == pytest.approx(45.0)
    assert readout.picked == 2 and readout.mean_abs_margin_picked == pytest.approx(1.25)
    assert readout.mean_abs_margin_all == pytest.approx(4.0 / 3)
    assert readout.eigenvalues == (2.0, 0.5)
    flipped = readouts.toy_readout(points.assign(count=0), np.array([-1.0, 0.0]), np.array([1.0, 0.0]), hessian)
    assert flipped.angle_deg == pytest.approx(180.0) and flipped.picked == 0
    assert math.isnan(flipped.mean_abs_margin_picked)
    assert readouts.toy_readout(points, np.zeros(2), np.array([1.0, 0.0]), hessian).angle_deg == pytest.approx(90.0)


def test_toy_hessians_before_the_epoch_use_the_previous_model_on_the_older_pairs():
    points, w, w0 = toy_points(), np.array([0.3, -0.2]), np.array([0.1, 0.4])
    now, before = readouts.toy_hessians(points, w, w0, l2=0.01, epoch=1)
    dphi = points[["dphi_x", "dphi_y"]].to_numpy()
    s = 1 / (1 + np.exp(-(dphi @ w)))
    expected = (dphi * (s * (1 - s))[:, None]).T @ dphi / len(dphi) + 0.01 * np.eye(2)
    assert now == pytest.approx(expected)
    old = dphi[:3]
    s0 = 1 / (1 + np.exp(-(old @ w0)))
    assert before == pytest.approx((old * (s0 * (1 - s0))[:, None]).T @ old / 3 + 0.01 * np.eye(2))
    assert readouts.toy_hessians(points, w, None, 0.01, 0)[1] is None
