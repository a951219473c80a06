"""Bradley-Terry training of the linear head: it lowers the loss and reaches the known optimum."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from mars_core.model.train import TrainConfig, bt_loss, fit_linear_bt, global_torch_rng


def _loss(w: np.ndarray, delta_phi: np.ndarray, l2: float) -> float:
    return float(bt_loss(torch.as_tensor(w, dtype=torch.float64), torch.as_tensor(delta_phi, dtype=torch.float64), l2))


def test_one_dimensional_optimum_is_log_two():
    # two of three pairs say +1, one says -1: the unregularised optimum solves 2(1 - σ(w)) = σ(w), w = log 2
    delta_phi = np.array([[1.0], [1.0], [-1.0]])
    w, report = fit_linear_bt(delta_phi, TrainConfig(l2=0.0, tolerance=1e-10))
    assert w[0] == pytest.approx(math.log(2), abs=1e-5)
    assert report.loss == pytest.approx((2 * math.log(1.5) + math.log(3)) / 3, abs=1e-9)
    assert report.n_pairs == 3 and report.iterations >= 1


def test_fit_lowers_the_loss_and_matches_an_independent_optimiser():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=5)
    x = rng.normal(size=(200, 5))
    labels = rng.random(200) < 1 / (1 + np.exp(-(x @ truth)))
    delta_phi = np.where(labels[:, None], x, -x)  # chosen minus rejected
    config = TrainConfig(l2=1e-2, tolerance=1e-9)
    w, report = fit_linear_bt(delta_phi, config)
    assert report.loss < _loss(np.zeros(5), delta_phi, config.l2) - 0.05, "training lowered the loss from w = 0"
    reference = minimize(_loss, np.zeros(5), args=(delta_phi, config.l2), method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(w, reference.x, atol=1e-4)
    assert report.loss == pytest.approx(reference.fun, abs=1e-8)


def test_warm_and_cold_starts_reach_the_same_optimum():
    rng = np.random.default_rng(1)
    delta_phi = rng.normal(size=(80, 4)) + 0.3
    config = TrainConfig(l2=1e-2, tolerance=1e-10)
    cold, _ = fit_linear_bt(delta_phi, config)
    warm, _ = fit_linear_bt(delta_phi, config, init=np.full(4, 3.0))
    np.testing.assert_allclose(warm, cold, atol=1e-4)
    ignored, _ = fit_linear_bt(delta_phi, TrainConfig(l2=1e-2, tolerance=1e-10, warm_start=False), init=np.full(4, 9.0))
    np.testing.assert_allclose(ignored, cold, atol=1e-4)


def test_no_pairs_keeps_the_weights():
    w, report = fit_linear_bt(np.zeros((0, 3)), TrainConfig(), init=np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(w, [1.0, 2.0, 3.0])
    assert report.n_pairs == 0 and math.isnan(report.loss)


def test_config_validation():
    for bad in (dict(l2=-1.0), dict(max_iter=0), dict(tolerance=0.0)):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_the_global_torch_generator_is_seeded_inside_the_section_and_restored_after():
    torch.manual_seed(123)
    outside = torch.rand(3)
    torch.manual_seed(123)
    with global_torch_rng(5):
        first = torch.rand(3)
    with global_torch_rng(5):
        assert torch.equal(torch.rand(3), first), "same seed, same draws"
    assert torch.equal(torch.rand(3), outside), "the caller's stream goes on as if the section never ran"


def test_the_section_is_held_by_one_thread_at_a_time():
    inside, release, entered = threading.Event(), threading.Event(), []

    def holder() -> None:
        with global_torch_rng(1):
            inside.set()
            release.wait(10)

    def second() -> None:
        with global_torch_rng(2):
            entered.append(release.is_set())

    first_thread, second_thread = threading.Thread(target=holder), threading.Thread(target=second)
    first_thread.start()
    assert inside.wait(10)
    second_thread.start()
    second_thread.join(0.3)
    assert entered == [], "the second job waits while the first holds the generator"
    release.set()
    first_thread.join(10)
    second_thread.join(10)
    assert entered == [True]
