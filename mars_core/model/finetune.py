"""A reward model that fine-tunes a transformer end to end (the paper's setting), behind the RewardModel protocol.

Any ``AutoModelForSequenceClassification`` with one output: the packaged MiniLM by default (its score
head is new), a local folder (ours, or TRL RewardTrainer's) or a hub id. A new head starts as a linear
probe on mean-pooled features by default (pooled_head.py), and each fit's length and early stop follow
fit_plan.py. Devices come from Hugging Face accelerate: CPU here, one GPU when present, several with
``torchrun``/``accelerate launch`` (the rows of every batch split across processes, DDP all-reduces the
gradients, scores gathered, only the main process writes checkpoints: one process's fit, up to float
reduction order). Multi-process runs were exercised on CPU (gloo) only; the CUDA paths follow accelerate's API.

Why it is cheaper than the common implementation: see batching.py (one forward pass for chosen and
rejected, length buckets, dynamic padding); plus gradient accumulation weighted by pairs, autocast on GPU,
scoring under inference_mode in large length-sorted batches, and a score cache that lives only as long as
the weights it was computed with (cleared by every fit and load).
"""

from __future__ import annotations

import contextlib
import functools
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from accelerate import Accelerator
from accelerate.utils import gather_object
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from mars_core.analysis.curvature import SpectrumSummary, sigmoid_prime
from mars_core.data.pairs import PreferencePair
from mars_core.model.batching import PairTokenizer, length_buckets, pad_batch
from mars_core.model.checkpoints import checkpoint_state, read_checkpoint_state, replace_folder
from mars_core.model.encoders import PROMPT_TOKENS, resolve_model
from mars_core.model.finetune_curvature import deep_pair_curvature, deep_spectrum, head_spectrum
from mars_core.model.fit_plan import EarlyStopping, linear_schedule, plan_passes, rows_of, split_by_prompt
from mars_core.model.pooled_head import PooledScorer, score_layer, stored_pooling
from mars_core.model.precision import training_dtype
from mars_core.model.reward_config import RewardModelConfig
from mars_core.model.train import FitReport, TrainConfig, fit_linear_bt, global_torch_rng

Progress = Callable[..., None]
MAX_GRAD_NORM = 1.0  # the usual clip (TRL/Trainer default): one bad batch cannot undo an epoch


@functools.cache
def shared_accelerator(mixed_precision: str, cpu: bool) -> Accelerator:
    """One Accelerator per process and setting (accelerate's state is a process-wide singleton)."""
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu)


def resolve_precision(config: RewardModelConfig) -> tuple[str, bool]:
    """(mixed_precision, cpu) for accelerate: autocast only where a GPU will run the model."""
    cuda = torch.cuda.is_available() and config.device in (None, "cuda")
    if config.precision != "auto":
        return config.precision if cuda else "no", not cuda
    if not cuda:
        return "no", True
    return ("bf16" if torch.cuda.is_bf16_supported() else "fp16"), False


class FinetuneRewardModel:
    """r(x, y) = the scalar output of a fine-tuned sequence classifier on ``prompt + "\\n\\n" + response``."""

    def __init__(self, config: RewardModelConfig | None = None, *, _shared: tuple | None = None) -> None:
        self.config = config or RewardModelConfig(kind="finetune")
        self.name = f"finetune[{self.config.base}]"
        precision, cpu = resolve_precision(self.config)
        self.accelerator = shared_accelerator(precision, cpu)
        self.device = self.accelerator.device
        self.train_dtype = training_dtype(self.config, self.device)
        self.source = resolve_model(self.config.base)
        if _shared is None:
            tokenizer = AutoTokenizer.from_pretrained(str(self.source), trust_remote_code=self.config.trust_remote_code)
            _shared = (tokenizer, {})
        self.tokenizer, self._batchers = _shared  # one PairTokenizer per layout, shared with fresh() copies
        self.fits = 0  # fits since the base checkpoint: fit n of a run writes epoch n−1
        self.checkpoint_dir: Path | None = None
        self.last_checkpoint: Path | None = None
        self._load_weights(self.source)

    # -- weights --------------------------------------------------------------------------------
    def _load_weights(self, source: Path | str) -> None:
        try:  # the new score head starts the same every time
            with global_torch_rng(self.config.seed), _quiet_transformers():  # "classifier newly initialised" ...
                model, info = AutoModelForSequenceClassification.from_pretrained(
                    str(source), num_labels=1, trust_remote_code=self.config.trust_remote_code,
                    output_loading_info=True,
                )
        except (OSError, ValueError) as exc:
            raise ValueError(f"could not load {source} as a sequence classifier with one output: {exc}") from exc
        # the score bias adds the same constant to both rewards, so it cancels in every margin and the BT loss
        # gives it no gradient: frozen, it is honestly not a trainable parameter (curvature and tests agree)
        head = score_layer(model)
        head_name = next(name for name, module in model.named_modules() if module is head)
        new_head = any(str(k).startswith(head_name + ".") for k in info.get("missing_keys", ()))
        if head.bias is not None:
            head.bias.requires_grad_(False)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self._batcher(None).pad_id
        if self.config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        if not self.config.dropout:
            for module in model.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = 0.0
        # a trained head (ours or TRL's) keeps the pooling it was trained with; a new one gets the configured start
        probe = self.config.head_init == "linear_probe"
        pooling = ("mean" if probe else "cls") if new_head else stored_pooling(model)
        self.model = PooledScorer(model, pooling).to(self.device)
        self._scores: dict[tuple[str, str], tuple[float, np.ndarray]] = {}  # valid for these weights only

    @property
    def probes(self) -> bool:
        """Whether each fit starts with a linear probe: a mean-pooled head under ``head_init=linear_probe``."""
        return self.model.pooling == "mean" and self.config.head_init == "linear_probe"

    @property
    def batcher(self) -> PairTokenizer:
        """The token layout of this model's pooling: a mean-pooled head reads the sentence encoder's text."""
        return self._batcher(PROMPT_TOKENS if self.model.pooling == "mean" else None)

    def _batcher(self, prompt_tokens: int | None) -> PairTokenizer:
        if prompt_tokens not in self._batchers:
            self._batchers[prompt_tokens] = PairTokenizer(self.tokenizer, self.config.max_length, prompt_tokens)
        return self._batchers[prompt_tokens]

    def use_checkpoint_dir(self, folder: str | Path) -> None:
        """Write this model's epoch checkpoints under ``folder`` (RefinementRun points it into the run's folder)."""
        self.checkpoint_dir = Path(folder)

    def state(self) -> dict[str, np.ndarray]:
        """Save the weights (safetensors) and return the store's reference to them."""
        if self.checkpoint_dir is None:
            self.checkpoint_dir = Path(tempfile.mkdtemp(prefix="mars-finetune-"))
        final = self.checkpoint_dir / f"epoch-{max(self.fits - 1, 0)}"
        if self.accelerator.is_main_process:
            tmp = final.with_name(final.name + ".partial")
            with _quiet_transformers():
                self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            replace_folder(tmp, final)
        self.accelerator.wait_for_everyone()
        self.last_checkpoint = final
        return checkpoint_state(final, self.fits, self.config.base)

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        folder, fits = read_checkpoint_state(state)
        self._load_weights(folder)
        self.fits = fits
        self.last_checkpoint = folder
        if self.checkpoint_dir is None:  # a reopened run keeps writing beside the epoch it resumed from
            self.checkpoint_dir = folder.parent

    def fresh(self) -> FinetuneRewardModel:
        """A copy from the BASE checkpoint (never the current weights: that would leak held-out folds).

        Costs a model load plus a fit on (k−1)/k of the pairs for each of k folds, so k-fold cross-fitting
        adds about k−1 full fits to a Step (5 folds: ~4×400 pairs more training on the text demo). With this
        model use --folds 0 (in-sample margins, the paper's setting) unless that time is affordable.
        """
        return FinetuneRewardModel(self.config, _shared=(self.tokenizer, self._batchers))

    # -- training -------------------------------------------------------------------------------
    def fit(self, pairs: Sequence[PreferencePair], progress: Progress | None = None) -> FitReport:
        """A linear probe (under ``head_init=linear_probe``), then AdamW on everything for a planned number of
        steps, checked on a by-prompt validation slice and rolled back to its best check (fit_plan.py).

        The slice and the probe. The linear model fits every training pair; a probe that did the same would
        start exactly there, but the slice would then be in-sample for the step-0 check and out-of-sample for
        the encoder's later steps, so early stopping would be biased towards step 0. So while the number of
        steps is chosen the slice is held out of everything: the probe fits the training part, the encoder
        trains on the training part, and every check, step 0 included, is out of sample. Then:
        - best check at step 0 (fine-tuning did not beat the probe): the encoder has not moved, and the head is
          refitted on every pair, slice included: exactly the linear model's fit (the selected estimator refitted
          on all the data after selection; a convex fit on features already computed, no extra pass);
        - best check later: those weights are kept as trained (refitting them on every pair would mean
          fine-tuning again, about twice the time; the slice was spent on choosing the step).
        A prompt keeps its side in every fit of a run (fit_plan.py) and every fit starts with a fresh probe on
        its training part, so no check ever scores a prompt the weights under test were trained on.
        Without a slice (``validation_fraction=0``, or a slice under ``min_validation_pairs``) the probe fits every
        pair and the encoder trains on every pair for the planned steps.
        """
        with global_torch_rng(self.config.seed * 1000 + self.fits + 1):  # dropout masks, this thread only
            return self._fit(pairs, progress)

    def _fit(self, pairs: Sequence[PreferencePair], progress: Progress | None) -> FitReport:
        cfg, acc = self.config, self.accelerator
        start = time.perf_counter()
        if not cfg.warm_start and self.fits > 0:
            self._load_weights(self.source)
        self.fits += 1
        self._scores = {}
        if not pairs:
            return FitReport(float("nan"), 0, 0.0, 0, str(self.device))
        seed = cfg.seed * 1000 + self.fits
        # the same prompts every fit
        train, held = split_by_prompt(pairs, cfg.validation_fraction, cfg.seed, cfg.min_validation_pairs)
        details: dict = {"head_init": cfg.head_init, "pooling": self.model.pooling, "train_pairs": len(train),
                         "validation_pairs": len(held), "max_length": cfg.max_length}
        features = None  # Δh of every pair (training part first) under the encoder as it is before this fit
        if self.probes:
            features = self.head_deltas([*train, *held])[1]
            details.update(self._linear_probe(features[: len(train)], "probe"))
        torch.manual_seed(seed)  # dropout masks (inside global_torch_rng: restored when the fit ends)
        prompts = [p.prompt for p in train]
        plus = self.batcher.encode(prompts, [p.chosen for p in train])
        minus = self.batcher.encode(prompts, [p.rejected for p in train])
        lengths = [max(len(a.ids), len(b.ids)) for a, b in zip(plus, minus)]
        steps_per_pass = math.ceil(len(length_buckets(lengths, cfg.batch_size, seed)) / cfg.grad_accum)
        passes = plan_passes(steps_per_pass, cfg.min_steps, cfg.max_passes)
        micro = [b for e in range(passes) for b in length_buckets(lengths, cfg.batch_size, seed + e)]
        groups = [micro[i:i + cfg.grad_accum] for i in range(0, len(micro), cfg.grad_accum)]
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        scheduler = linear_schedule(optimizer, len(groups), cfg.warmup_fraction)
        stopper = EarlyStopping(cfg.patience, cfg.validation_metric)
        every = cfg.eval_every or max(1, math.ceil(steps_per_pass / 2))
        if held:
            step0 = (features[len(train):] @ self._head_weights()) if features is not None else None
            stopper.record(0, step0 if step0 is not None else self._validation_margins(held), self.model)
        model, optimizer = acc.prepare(self.model, optimizer)
        model.train()
        per_pass = math.ceil(len(micro) / passes)
        done, steps, pass_loss, pass_pairs, stopped = 0, 0, 0.0, 0, False
        notify = progress or (lambda *a, **k: None)
        notify("training", 0, len(micro), f"{len(train)} pairs")
        for group in groups:
            n_group = sum(len(idx) for idx in group)  # the loss is a mean over the pairs of one optimiser step
            for j, batch_idx in enumerate(group):
                # every process takes its share of the rows of the SAME batch and DDP averages the gradients,
                # so the step is one process's step (scaled by the world size to undo DDP's mean)
                idx, weight = rows_of(batch_idx, acc.num_processes, acc.process_index)
                rows = [plus[i].ids for i in idx] + [minus[i].ids for i in idx]
                batch = {k: v.to(self.device) for k, v in pad_batch(rows, self.batcher.pad_id).items()}
                sync = contextlib.nullcontext() if j == len(group) - 1 else acc.no_sync(model)
                with sync, acc.autocast(), self._train_autocast():
                    rewards = model(**batch).logits[:, 0].float()
                    loss_sum = weight * F.softplus(-(rewards[: len(idx)] - rewards[len(idx):])).sum()  # −log σ(Δ)
                    acc.backward(loss_sum * acc.num_processes / n_group)
                if done % per_pass == 0:
                    pass_loss, pass_pairs = 0.0, 0  # report the last pass over the data, not the first
                pass_loss += float(loss_sum.detach())
                pass_pairs += len(idx) if weight else 0
                done += 1
                notify("training", done, len(micro), f"loss {pass_loss / max(pass_pairs, 1):.3f}")
            acc.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
            if held and (steps % every == 0 or steps == len(groups)):
                stopped = stopper.record(steps, self._validation_margins(held), self.model) and steps < len(groups)
                model.train()
                if stopped:
                    break
        self.model = acc.unwrap_model(model, keep_fp32_wrapper=False)
        self.model.eval()
        acc.free_memory()  # drop accelerate's references to this fit's optimiser
        if held:
            stopper.restore_best(self.model, steps)
            self._scores = {}
            if features is not None and stopper.best_step == 0:  # the encoder is where it started: see fit()
                details.update(self._linear_probe(features, "refit"))
        if acc.num_processes > 1:  # the last pass's loss over every process's rows, as one process would see it
            pass_loss, pass_pairs = acc.reduce(torch.tensor([pass_loss, float(pass_pairs)], device=self.device),
                                               reduction="sum").tolist()
        notify("training", len(micro), len(micro), f"loss {pass_loss / max(pass_pairs, 1):.3f}")
        details.update({
            "truncated_pairs": sum(a.truncated or b.truncated for a, b in zip(plus, minus)),
            "response_cut_pairs": sum(a.response_cut or b.response_cut for a, b in zip(plus, minus)),
            "optimizer_steps": steps, "planned_steps": len(groups), "steps_per_pass": steps_per_pass,
            "passes_planned": passes, "passes": round(steps / max(steps_per_pass, 1), 2),
            "stopped_early": stopped, "best_step": stopper.best_step if held else steps,
            "train_dtype": str(self.train_dtype).removeprefix("torch."),
            "validation": stopper.curve,
        })
        return FitReport(
            pass_loss / max(pass_pairs, 1), steps, time.perf_counter() - start, len(pairs), str(self.device),
            details=details,
        )

    def _train_autocast(self) -> contextlib.AbstractContextManager:
        if self.train_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.train_dtype)

    def _linear_probe(self, delta_h: np.ndarray, name: str) -> dict:
        """Fit the head by Bradley-Terry (L-BFGS from zero, the linear model's fit) on these pairs' Δh."""
        weights, report = fit_linear_bt(delta_h, TrainConfig(l2=self.config.probe_l2))
        head = score_layer(self.model)
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(weights, dtype=head.weight.dtype).reshape(head.weight.shape))
            if head.bias is not None:
                head.bias.zero_()
        self._scores = {}
        return {f"{name}_pairs": len(delta_h), f"{name}_loss": report.loss, f"{name}_iterations": report.iterations,
                f"{name}_train_accuracy": float(np.mean(delta_h @ weights > 0))}

    def _head_weights(self) -> np.ndarray:
        return score_layer(self.model).weight.detach().float().cpu().numpy().reshape(-1).astype(np.float64)

    def _validation_margins(self, held: Sequence[PreferencePair]) -> np.ndarray:
        self._scores = {}  # the weights moved since the last check
        margins = self.margins(held)
        self._scores = {}
        return margins

    # -- scoring --------------------------------------------------------------------------------
    def _score(self, prompts: Sequence[str], responses: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Rewards and the score layer's inputs (for curvature), from the cache or one inference pass."""
        keys = list(zip(prompts, responses, strict=True))
        todo = [k for k in dict.fromkeys(keys) if k not in self._scores]
        if todo:
            self._scores.update(self._run_inference(todo))
        if not keys:
            return np.zeros(0), np.zeros((0, 0), dtype=np.float32)
        return np.array([self._scores[k][0] for k in keys]), np.stack([self._scores[k][1] for k in keys])

    def _run_inference(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[float, np.ndarray]]:
        acc = self.accelerator
        encoded = self.batcher.encode([k[0] for k in keys], [k[1] for k in keys])
        batches = length_buckets([len(e.ids) for e in encoded], self.config.score_batch_size, None)
        batches = batches[acc.process_index::acc.num_processes]  # data-parallel scoring; gathered below
        captured: list[torch.Tensor] = []
        hook = score_layer(self.model).register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
        found: list[tuple[int, float, np.ndarray]] = []
        self.model.eval()
        try:
            with torch.inference_mode(), acc.autocast():
                for idx in batches:
                    batch = pad_batch([encoded[i].ids for i in idx], self.batcher.pad_id)
                    out = self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits[:, 0].float().cpu()
                    feats = captured.pop().float().cpu().numpy()
                    found += [(int(i), float(r), f) for i, r, f in zip(idx, out.numpy(), feats)]
        finally:
            hook.remove()
        if acc.num_processes > 1:
            found = gather_object(found)
        return {keys[i]: (r, f) for i, r, f in found}

    def rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return self._score(prompts, responses)[0]

    def margins(self, pairs: Sequence[PreferencePair]) -> np.ndarray:
        if not pairs:
            return np.zeros(0)
        r = self.rewards([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs])
        return r[: len(pairs)] - r[len(pairs):]

    def head_deltas(self, pairs: Sequence[PreferencePair]) -> tuple[np.ndarray, np.ndarray]:
        """(Δ per pair, Δh = h(x, y+) − h(x, y−) at the score layer's input): ∂Δ/∂w of the score layer is Δh."""
        r, h = self._score([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs])
        n = len(pairs)
        return r[:n] - r[n:], (h[:n] - h[n:]).astype(np.float64)

    # -- curvature ------------------------------------------------------------------------------
    def pair_curvature(self, pairs: Sequence[PreferencePair]) -> np.ndarray:
        """σ'(Δ_i)·‖∂Δ_i/∂θ‖² (the Gauss-Newton term) on the parameters named by config.curvature_params.

        ``head``: θ = the score layer (weight and bias); ∂Δ/∂w = Δh exactly, so this costs one scoring pass
        (shared with margins) and is the linear model's quantity with φ = the fine-tuned features.
        ``last_block``: θ = head + pooler + last transformer block, one backward pass per pair.
        """
        if not pairs:
            return np.zeros(0)
        if self.config.curvature_params == "head":
            margins, dh = self.head_deltas(pairs)
            return sigmoid_prime(margins) * np.einsum("ij,ij->i", dh, dh)
        return deep_pair_curvature(self.model, self.batcher, pairs, self.device)

    def spectrum(self, pairs: Sequence[PreferencePair], k: int = 10) -> SpectrumSummary:
        """Top-k, trace (Lanczos + Hutch++ on the BT Gauss-Newton operator) on a seeded subsample of pairs."""
        if not pairs:
            raise ValueError("need at least one pair to compute curvature")
        n = min(len(pairs), self.config.curvature_pairs)
        pick = np.sort(np.random.default_rng(self.config.seed).choice(len(pairs), n, replace=False))
        subset = [pairs[i] for i in pick]
        if self.config.curvature_params == "head":
            margins, dh = self.head_deltas(subset)
            return head_spectrum(dh, margins, k, total_pairs=len(pairs), seed=self.config.seed)
        return deep_spectrum(self.model, self.batcher, subset, self.device, k, len(pairs), self.config.seed)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No load reports or progress bars from transformers inside a Step's own progress display."""
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
