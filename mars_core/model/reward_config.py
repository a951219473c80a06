"""Which reward model a run trains, and how the fine-tuned transformer is trained.

One frozen dataclass (a section of RunConfig): ``kind`` picks the linear head on frozen MiniLM
features (the theorem's exact setting; its knobs are TrainConfig) or a fine-tuned
AutoModelForSequenceClassification with one output (the paper's setting; every other field here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

REWARD_MODEL_KINDS = ("linear", "finetune")
PRECISIONS = ("auto", "no", "bf16", "fp16")
CURVATURE_PARAMS = ("head", "last_block")
HEAD_INITS = ("linear_probe", "fresh")
VALIDATION_METRICS = ("loss", "scaled_loss")  # model/fit_plan.py: EarlyStopping


@dataclass(frozen=True)
class RewardModelConfig:
    """The reward model of a run: linear head or fine-tuned transformer (and the latter's training)."""

    kind: str = field(default="linear", metadata={
        "help": "linear: a BT head on frozen MiniLM features; finetune: train a transformer end to end",
        "flag": "--reward-model", "choices": REWARD_MODEL_KINDS, "form": True})
    base: str = field(default="packaged:minilm", metadata={
        "help": "finetune: start checkpoint (packaged:minilm, a local path such as a TRL RewardTrainer output, "
                "or a hub id)", "flag": "--base", "form": True})
    max_length: int = field(default=256, metadata={
        "help": "finetune: tokens per (prompt, response). A linear-probe head reads the linear model's text (the "
                "prompt's last 96 word pieces, then the response, cut at the end: at 256, MiniLM's own limit, the "
                "probe is the linear model's fit); a fresh head reads the whole prompt cut from the left so the "
                "response's tail survives", "flag": "--max-length"})
    learning_rate: float = field(default=2e-5, metadata={
        "help": "finetune: AdamW learning rate (small: after the linear probe the encoder should move a little)",
        "flag": "--lr"})
    weight_decay: float = field(default=0.0, metadata={"help": "finetune: AdamW decoupled weight decay"})
    warmup_fraction: float = field(default=0.1, metadata={
        "help": "finetune: share of each fit's optimiser steps with linear warm-up (then linear decay to 0)"})
    head_init: str = field(default="linear_probe", metadata={
        "help": "finetune: linear_probe = a head on mean-pooled features fitted by Bradley-Terry first, then the "
                "encoder fine-tuned (LP-FT; starts at the linear head's accuracy); fresh = a new random head on the "
                "model's own pooler (TRL's default)", "flag": "--head-init", "choices": HEAD_INITS, "form": True})
    min_steps: int = field(default=96, metadata={
        "help": "finetune: optimiser steps per fit at least (passes over the pairs follow from the data size)",
        "flag": "--min-steps"})
    max_passes: int = field(default=4, metadata={
        "help": "finetune: passes over the training pairs per fit at most (caps --min-steps on small data)",
        "flag": "--max-passes"})
    validation_fraction: float = field(default=0.15, metadata={
        "help": "finetune: share of the training pairs held out by prompt for early stopping (0 = none)",
        "flag": "--validation-fraction", "form": False})
    min_validation_pairs: int = field(default=100, metadata={
        "help": "finetune: the validation slice's smallest size: below it the fit trains on every pair for its "
                "planned steps, without early stopping. A slice of a few dozen pairs measures noise: at 300 HH "
                "pairs (a ~50-pair slice) it stopped at step 0 where training on gained ~2 points (docs/results.md)",
        "flag": "--min-validation-pairs", "form": False})
    patience: int = field(default=3, metadata={
        "help": "finetune: validation checks without improvement before a fit stops (best weights kept)",
        "form": False})
    validation_metric: str = field(default="loss", metadata={
        "help": "finetune: what early stopping minimises on the validation slice: loss = the BT loss of the margins; "
                "scaled_loss = the BT loss at the best single temperature (scale-free: margins that grow but rank "
                "the held-out pairs better count as better)", "flag": "--validation-metric",
        "choices": VALIDATION_METRICS, "form": False})
    eval_every: int = field(default=0, metadata={
        "help": "finetune: optimiser steps between validation checks; 0 = twice per pass", "form": False})
    dropout: bool = field(default=False, metadata={
        "help": "finetune: keep the base model's dropout while training (off, as TRL's RewardTrainer defaults: the "
                "fit is then deterministic and the same on one process or many)", "form": False})
    probe_l2: float = field(default=1e-3, metadata={
        "help": "finetune: L2 strength of the linear probe (as the linear model's TrainConfig.l2)", "form": False})
    batch_size: int = field(default=16, metadata={
        "help": "finetune: pairs per micro-batch (chosen and rejected go in one forward pass)",
        "flag": "--batch-size"})
    grad_accum: int = field(default=1, metadata={
        "help": "finetune: micro-batches per optimiser step", "flag": "--grad-accum", "form": False})
    score_batch_size: int = field(default=128, metadata={
        "help": "finetune: texts per inference batch when scoring", "flag": "--score-batch-size", "form": False})
    warm_start: bool = field(default=True, metadata={
        "help": "finetune: continue from the previous epoch's weights (else restart from --base each Step)"})
    seed: int = field(default=0, metadata={
        "help": "finetune: seed for the new head, dropout and batch order (the run's --seed)", "flag": "--seed"})
    precision: str = field(default="auto", metadata={
        "help": "finetune: autocast dtype; auto = bf16 on a GPU that has it, else fp16 on GPU, none on CPU",
        "flag": "--precision", "form": False, "choices": PRECISIONS})
    cpu_bf16: bool = field(default=True, metadata={
        "help": "finetune: on a CPU with native bfloat16 (AMX or AVX512-BF16), run the training steps' forward and "
                "backward under bfloat16 autocast (weights, optimiser, the linear probe, validation and scoring stay "
                "float32; on a Sapphire Rapids core the steps ran 1.2x faster, the same test predictions); no = "
                "float32 throughout. Ignored on a GPU (see --precision) and on CPUs without it",
        "flag": "--cpu-bf16", "form": False})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "finetune: recompute activations in the backward pass (less memory, ~30% slower)",
        "flag": "--gradient-checkpointing", "form": False})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "finetune: allow a --base model's own Python code to run (off unless you trust it)",
        "flag": "--trust-remote-code", "form": False})
    curvature_params: str = field(default="head", metadata={
        "help": "finetune: parameters whose curvature is measured: head (the score layer; exact per pair, "
                "cheap) or last_block (head + last transformer block + pooler; per-pair backward, costly)",
        "flag": "--curvature-params", "form": False, "choices": CURVATURE_PARAMS})
    curvature_pairs: int = field(default=256, metadata={
        "help": "finetune: pairs sub-sampled (seeded) for the Hessian spectrum; the method string says so"})
    device: str | None = field(default=None, metadata={
        "help": "finetune: cpu or cuda; None lets accelerate pick (the GPU of this process when present)"})

    def __post_init__(self) -> None:
        if self.kind not in REWARD_MODEL_KINDS:
            raise ValueError(f"reward model kind must be one of {', '.join(REWARD_MODEL_KINDS)}, got {self.kind!r}")
        if not self.base or not self.base.strip():
            raise ValueError("base model is empty: use packaged:minilm, a local path or a hub id")
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8 tokens, got {self.max_length}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        for name in ("min_steps", "max_passes", "patience", "min_validation_pairs", "batch_size", "grad_accum", "score_batch_size",
                     "curvature_pairs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {', '.join(HEAD_INITS)}, got {self.head_init!r}")
        if not 0.0 <= self.validation_fraction < 0.5:
            raise ValueError(f"validation_fraction must be in [0, 0.5), got {self.validation_fraction}")
        if self.validation_metric not in VALIDATION_METRICS:
            raise ValueError(f"validation_metric must be one of {', '.join(VALIDATION_METRICS)}, "
                             f"got {self.validation_metric!r}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0 (0 = twice per pass), got {self.eval_every}")
        if self.probe_l2 < 0:
            raise ValueError(f"probe_l2 must be >= 0, got {self.probe_l2}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.curvature_params not in CURVATURE_PARAMS:
            raise ValueError(
                f"curvature_params must be one of {', '.join(CURVATURE_PARAMS)}, got {self.curvature_params!r}")
