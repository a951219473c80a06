"""How long one fit of the fine-tuned model trains, and when it stops.

Length is counted in optimiser steps, not passes: 300 pairs in batches of 16 are 19 steps a pass, too few for
anything to move, while 20,000 pairs are plenty in one. So a fit takes at least ``min_steps`` steps, as many
passes as that needs, capped at ``max_passes`` (small data is not memorised by repetition). Early stopping
watches the BT loss on a slice of the training pairs held out BY PROMPT (a paraphrase shares its parent's
prompt, so it cannot leak across; a prompt stays on its side in every fit of a run) and keeps the weights of
the best evaluation, step 0 included: after a linear probe, that is a floor at the probe's own validation
loss. How the slice and the probe fit together: finetune.py, ``FinetuneRewardModel.fit``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from mars_core.data.pairs import PreferencePair

MIN_VALIDATION_PAIRS = 8  # fewer than this measures noise: train on everything, no early stopping
MIN_IMPROVEMENT = 1e-4  # in validation BT loss (nats per pair)


def plan_passes(steps_per_pass: int, min_steps: int, max_passes: int) -> int:
    """Passes over the data that reach ``min_steps`` optimiser steps, at least 1 and at most ``max_passes``."""
    if steps_per_pass < 1:
        return 1
    return max(1, min(max_passes, math.ceil(min_steps / steps_per_pass)))


def held_out_prompt(prompt: str, fraction: float, seed: int) -> bool:
    """Whether ``prompt`` is in the validation slice: its seeded hash falls under ``fraction``."""
    digest = hashlib.blake2b(f"{seed}\x00{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < fraction


def split_by_prompt(
    pairs: Sequence[PreferencePair], fraction: float, seed: int, min_pairs: int = MIN_VALIDATION_PAIRS
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, validation): the pairs of prompts whose seeded hash is under ``fraction``, held out.

    Membership is decided per prompt, not by drawing from the list at hand, so a prompt is on the same side in
    every fit of a run (paraphrases added, a run resumed in a new process): the encoder never trains on a
    prompt that a later fit validates on. Returns every pair as training data when the slice would be under
    ``min_pairs`` (at least MIN_VALIDATION_PAIRS) or would take every prompt (one prompt for all pairs, as in
    some toy sets). A run whose data grows past ``min_pairs`` starts validating then, on prompts its earlier
    fits trained on: every check, step 0's included, is then equally optimistic.
    """
    min_pairs = max(min_pairs, MIN_VALIDATION_PAIRS)
    if fraction <= 0 or len(pairs) < 2 * min_pairs:
        return list(pairs), []
    prompts = set(p.prompt for p in pairs)
    held = {prompt for prompt in prompts if held_out_prompt(prompt, fraction, seed)}
    validation = [p for p in pairs if p.prompt in held]
    if len(validation) < min_pairs or len(held) == len(prompts):
        return list(pairs), []
    return [p for p in pairs if p.prompt not in held], validation


def scaled_bt_loss(margins: np.ndarray) -> float:
    """min over s >= 0 of the mean BT loss of s·Δ: the loss at the best single temperature, so scale-free.

    Fine-tuning after a linear probe keeps growing the margins; the plain loss then rises on held-out pairs
    (over-confidence) while their ranking, what accuracy counts, improves. This measures the ranking alone and
    is smooth, unlike the accuracy of a few dozen pairs. Convex in s: a bounded scalar search finds it.
    """
    margins = np.asarray(margins, dtype=np.float64)
    if not len(margins) or not np.any(margins):
        return math.log(2.0)
    scale = 1.0 / max(float(np.abs(margins).max()), 1e-12)  # search s·max|Δ| in [0, 50]: loss ≥ e^-50 there

    def loss(s: float) -> float:
        return float(np.mean(np.logaddexp(0.0, -s * scale * margins)))

    best = minimize_scalar(loss, bounds=(0.0, 50.0), method="bounded", options={"xatol": 1e-6})
    return min(float(best.fun), math.log(2.0))  # s = 0 is always allowed: chance


@dataclass
class EarlyStopping:
    """Best validation loss so far, the weights that had it, and whether patience has run out.

    ``metric``: "loss" (the BT loss of the margins) or "scaled_loss" (scaled_bt_loss) decides what is best.
    """

    patience: int
    metric: str = "loss"
    curve: list[dict[str, float]] = field(default_factory=list)
    best_loss: float = math.inf
    best_step: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    since_best: int = 0

    def record(self, step: int, margins: np.ndarray, model: torch.nn.Module) -> bool:
        """Log one evaluation; keep a CPU copy of the weights if they are the best; True = stop now."""
        check = {"step": step, "loss": float(np.mean(np.logaddexp(0.0, -margins))),
                 "scaled_loss": scaled_bt_loss(margins), "accuracy": float(np.mean(margins > 0))}
        self.curve.append(check)
        loss = check[self.metric]
        if loss < self.best_loss - MIN_IMPROVEMENT:
            self.best_loss, self.best_step, self.since_best = loss, step, 0
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return False
        self.since_best += 1
        return self.since_best >= self.patience

    def restore_best(self, model: torch.nn.Module, last_step: int) -> bool:
        """Put the best weights back unless the last step had them; True if weights changed."""
        if self.best_state is None or self.best_step == last_step:
            return False
        model.load_state_dict(self.best_state)
        return True


def rows_of(batch: np.ndarray, processes: int, rank: int) -> tuple[np.ndarray, float]:
    """This process's rows of a batch, and 1.0; a process left without rows runs one row with weight 0
    (DDP needs every process in every backward pass)."""
    mine = batch[rank::processes]
    return (mine, 1.0) if len(mine) else (batch[:1], 0.0)


def linear_schedule(optimizer: torch.optim.Optimizer, steps: int, warmup_fraction: float):
    """Linear warm-up over the first share of steps, then linear decay to zero (Trainer's default shape)."""
    warmup = int(steps * warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
