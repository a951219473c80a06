"""Bradley-Terry training of a linear reward head, and the one guarded use of torch's global generator.

L-BFGS rather than Adam: with L2 the linear BT loss is strictly convex, so L-BFGS reaches
the unique optimum in a few dozen deterministic iterations, without a learning rate to tune
and with the same answer from a warm or a cold start (up to the tolerance). That makes
strategy comparisons about the data, not about optimiser noise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mars_core.model.encoders import pick_device


@dataclass(frozen=True)
class TrainConfig:
    """How the reward model is fitted each epoch."""

    l2: float = field(default=1e-3, metadata={"help": "L2 strength λ on the weights (adds λ·I to the Hessian)"})
    max_iter: int = field(default=200, metadata={"help": "L-BFGS iterations at most"})
    tolerance: float = field(default=1e-7, metadata={"help": "stop when the gradient's max-norm falls below this"})
    warm_start: bool = field(default=True, metadata={"help": "start from the previous epoch's weights"})
    device: str | None = field(default=None, metadata={"help": "cuda, mps or cpu; None picks the best available"})

    def __post_init__(self) -> None:
        if self.l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {self.l2}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        if self.tolerance <= 0:
            raise ValueError(f"tolerance must be > 0, got {self.tolerance}")


@dataclass
class FitReport:
    loss: float
    iterations: int
    seconds: float
    n_pairs: int
    device: str
    details: dict[str, Any] = field(default_factory=dict)  # model-specific, e.g. how many pairs were truncated


_GLOBAL_TORCH_RNG = threading.RLock()


@contextmanager
def global_torch_rng(seed: int) -> Iterator[None]:
    """Torch's global generator, seeded, for code that cannot take a ``torch.Generator`` (a transformer's
    dropout masks, a new layer's initialisation), held by one thread at a time and restored afterwards.

    Every other random draw in mars_core comes from a generator seeded from (run seed, epoch) and passed
    down; jobs run in threads of one process, so reseeding the global generators there would let one
    job's draws move another's. Code that needs the global generator runs inside this section instead.
    """
    with _GLOBAL_TORCH_RNG, torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def bt_loss(weights: torch.Tensor, delta_phi: torch.Tensor, l2: float) -> torch.Tensor:
    """−mean log σ(wᵀΔφ) + (λ/2)‖w‖²; softplus(−Δ) is the stable form of −log σ(Δ)."""
    return F.softplus(-(delta_phi @ weights)).mean() + 0.5 * l2 * weights.dot(weights)


def fit_linear_bt(
    delta_phi: np.ndarray, config: TrainConfig, init: np.ndarray | None = None
) -> tuple[np.ndarray, FitReport]:
    """Weights w minimising the BT loss on Δφ = φ(x, y+) − φ(x, y−). The bias cancels in Δ."""
    start = time.perf_counter()
    device = pick_device(config.device)
    if device == "mps":  # no float64 on MPS
        device = "cpu"
    x = torch.as_tensor(np.asarray(delta_phi, dtype=np.float64), device=device)
    d = x.shape[1]
    w0 = np.zeros(d) if init is None or not config.warm_start else np.asarray(init, dtype=np.float64)
    if w0.shape != (d,):
        w0 = np.zeros(d)
    w = torch.tensor(w0, device=device, requires_grad=True)
    if len(x) == 0:
        return w0.astype(np.float32), FitReport(float("nan"), 0, 0.0, 0, device)
    optimizer = torch.optim.LBFGS(
        [w], lr=1.0, max_iter=config.max_iter, tolerance_grad=config.tolerance, tolerance_change=1e-12,
        history_size=20, line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = bt_loss(w, x, config.l2)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        loss = float(bt_loss(w, x, config.l2))
    iterations = int(optimizer.state[optimizer._params[0]].get("n_iter", 0))
    report = FitReport(loss, iterations, time.perf_counter() - start, len(x), device)
    return w.detach().cpu().numpy().astype(np.float32), report
