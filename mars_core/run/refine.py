"""RefinementRun: the MARS epoch loop, one `step()` per epoch, everything persisted in the store.

    read → score → allocate → (load the LM) → generate and filter (select the best, retry the empty) → cross pairs
    → sharpen (optional) → curvature of the added pairs → retrain → evaluate → spectrum → save → commit

Each arrow is a stage of ``STAGES``, timed by the clock that times the epoch: an epoch's stored
``stage_seconds`` add up to its stored ``seconds`` (all of it but the commit, which cannot time itself).

Nothing of an epoch is visible until its single commit, so a killed process leaves the run at
its last whole epoch and `RefinementRun.open` resumes it from there; generated paraphrases and
encoded features are cached in the store as they are made, so the redo costs no LM time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mars_core.analysis.margins import MarginMetrics, ks_statistic, summarize_margins
from mars_core.augment.allocation import Allocation, allocate
from mars_core.augment.remote import remote_work
from mars_core.augment.selection import (
    ParaphraserFailed,
    Selection,
    SelectionTask,
    check_paraphrase_failures,
    select_together,
)
from mars_core.data.pairs import PreferencePair
from mars_core.model.checkpoints import new_run_folder
from mars_core.model.reward import cross_fitted_margins
from mars_core.run.components import LazyParaphraser, Runtime, build_runtime
from mars_core.run.config import RunConfig
from mars_core.run.distributed import is_main, on_main, world_size
from mars_core.run.epoch_metrics import AllocationSummary, EpochMetrics
from mars_core.run.sources import SourceData, load_source
from mars_core.run.status import RunStatus
from mars_core.run.step_augment import (
    augmentation_metrics,
    build_synthetic,
    paraphrase_requests,
    rows_used,
    sharpen,
)
from mars_core.store.locks import new_owner
from mars_core.store.sqlite import EpochRecord, MarginRow, ParaphraseRecord, Store

# A Step's stages in order, each named for what it times (progress reports them; stage_seconds stores them):
#   reading        the run's pairs, paraphrase rows used and last margins, from the store
#   scoring        margins the allocation sees (cross-fitted or in-sample) and each pair's curvature
#   allocating     budget units per pair, split into per-side paraphrase requests
#   loading paraphraser  the language model's first load in this job (only when it has units to fill)
#   generating     the paraphraser's rows, retries streamed in (LM generation or cache reads); progress counts units filled
#   filtering      the filters judging each unit's candidates as they come back, and picking the best per unit
#   crossing       stored records of every candidate, and the kept ones crossed into new pairs
#   sharpening     contrast rewrites (semantic strategy only)
#   added curvature  the added pairs' curvature under the model that chose them
#   training       the reward model's fit on originals (+ added pairs the review policy lets train)
#   evaluating     margins and summaries on train and test, and the KS distance to the last epoch
#   spectrum       top eigenvalues and trace of the loss Hessian of the trained model
#   saving         the model's state (a checkpoint on disk for the fine-tuned model) and the epoch's record
STAGES = (
    "reading", "scoring", "allocating", "loading paraphraser", "generating", "filtering", "crossing", "sharpening",
    "added curvature", "training", "evaluating", "spectrum", "saving",
)
EPOCH0_STAGES = ("training", "evaluating", "spectrum", "scoring", "saving")  # scoring: out-of-fold margins

# progress(stage, done, total, detail=""): called at the start of each stage and as its work advances;
# detail is a short free text (e.g. "loss 0.61") that a status line may show
Progress = Callable[..., None]


class RunFinished(RuntimeError):
    """The run's stop rule has fired; the message says which."""


class StepInProgress(RuntimeError):
    """Another tab or process is stepping this run right now."""


@dataclass
class StepOutcome:
    epoch: int
    metrics: dict[str, Any]  # as stored (EpochMetrics.to_dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # the epoch's stored seconds: the stages' sum, up to rounding


class RefinementRun:
    """A stored run plus the runtime (models, caches, this run's views of shared models) that advances it."""

    def __init__(self, store: Store, run_id: int, config: RunConfig, runtime: Runtime) -> None:
        self.store = store
        self.run_id = run_id
        self.config = config
        self.runtime = runtime
        self._load_last_epoch()

    def _load_last_epoch(self) -> None:
        last = self.store.last_epoch(self.run_id)
        if last is None:
            raise RuntimeError(f"run {self.run_id} has no epoch 0: its creation was interrupted; delete it with "
                               f"`python -m mars_core delete --run {self.run_id}`")
        self.epoch = last
        state = self.store.get_epoch(self.run_id, last, with_model=True).model_state
        if state is not None:
            self.runtime.model.load_state(state)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(
        cls, store: Store, config: RunConfig, name: str | None = None, runtime: Runtime | None = None,
        progress: Progress | None = None, data: SourceData | None = None,
    ) -> RefinementRun:
        """Load the data (unless given), fit epoch 0 (no augmentation), then store the run and epoch 0 at once."""
        data = data or load_source(config.data)
        train, test, description = data.train, data.test, data.description
        config.check_training_size(len(train))
        runtime = runtime or build_runtime(config, store)
        model = runtime.model
        timer = _StageTimer(progress or _quiet)
        with timer("training"):
            # one folder for every process: the main one writes the weights there, the others read them back
            model.use_checkpoint_dir(on_main(lambda: new_run_folder(store.path)))
            fit = model.fit(train, progress=timer.progress)
        with timer("evaluating"):
            test_summary, train_summary, margins = _evaluate(runtime, train, [], test, None, None)
        with timer("spectrum"):
            curvature = model.spectrum(train, k=config.refine.curvature_k).to_dict()
        with timer("scoring"):  # out-of-fold margins for label-error scores, after every other draw
            oof = _epoch0_oof_margins(config, runtime, train)
            if oof is not None:
                margins = [replace(r, alloc_margin=float(oof[i])) for i, r in enumerate(margins[: len(train)])] + \
                    margins[len(train):]
        with timer("saving"):
            state = model.state()
        metrics = EpochMetrics(
            epoch=0, test=test_summary, train=train_summary, pairs_trained=len(train), fit_loss=fit.loss,
            fit_iterations=fit.iterations, fit_details=fit.details, stage_seconds=timer.seconds,
        ).to_dict()
        record = EpochRecord(epoch=0, metrics=metrics, allocation={}, curvature=curvature, model_state=state,
                             margins=margins, seconds=timer.elapsed())
        run_id = store.create_run(name or description, config.to_dict(), description, train, test, epoch0=record)
        return cls(store, run_id, config, runtime)

    @classmethod
    def open(cls, store: Store, run_id: int, runtime: Runtime | None = None) -> RefinementRun:
        """Resume a stored run (after a restart, in another process, or from the app's run picker)."""
        config = RunConfig.from_dict(store.get_run(run_id).config)
        return cls(store, run_id, config, runtime or build_runtime(config, store))

    # -- status ------------------------------------------------------------------------------
    def status(self) -> RunStatus:
        """Epoch, budget and stop reason by the one rule the app's sidebar also uses (run/status.py)."""
        return RunStatus.of(self.config, self.epoch, self.store.epoch_table(self.run_id))

    def budget_spent(self) -> int:
        return self.status().budget_spent

    def budget_left(self) -> int:
        return self.status().budget_left

    def stop_reason(self) -> str | None:
        """Why the run will not step again, or None if it can."""
        return self.status().stop_reason

    # -- the step ------------------------------------------------------------------------------
    def step(self, progress: Progress | None = None, lock_owner: str | None = None) -> StepOutcome:
        """Advance one epoch and commit it; raises RunFinished or StepInProgress instead of stepping."""
        with self._stepping(lock_owner), remote_work(self.config.refine.remote_deadline_s, progress):
            # one deadline for the Step's remote requests
            epoch = self._epoch(progress or _quiet)
            task = next(epoch)
            # several processes: main generates, all receive
            return _finish(epoch, on_main(lambda: select_together([task])[0]))

    @contextmanager
    def _stepping(self, lock_owner: str | None = None) -> Iterator[None]:
        """Hold this run's step lock, with the run at the store's last epoch and not finished."""
        reason = self.stop_reason()
        if reason:
            raise RunFinished(f"run {self.run_id} is finished: {reason}")
        owner = lock_owner or new_owner()
        if not self.store.acquire_step_lock(self.run_id, owner):
            raise StepInProgress(
                f"run {self.run_id} is being stepped elsewhere ({self.store.step_lock_owner(self.run_id)}); "
                "wait for that epoch to finish"
            )
        try:
            if self.store.last_epoch(self.run_id) != self.epoch:  # another process stepped meanwhile
                self._load_last_epoch()
                reason = self.stop_reason()
                if reason:
                    raise RunFinished(f"run {self.run_id} is finished: {reason}")
            yield
        finally:
            self.store.release_step_lock(self.run_id, owner)

    def _read_inputs(self) -> _StepInputs:
        """Everything the Step needs from the store, read once at its start."""
        cfg = self.config
        train = self.store.training_pairs(self.run_id, cfg.refine.review_policy)
        return _StepInputs(
            train=train,
            originals=[p for p in train if not p.is_synthetic],
            synthetic=[p for p in train if p.is_synthetic],
            test=self.store.get_pairs(self.run_id, split="test"),
            previous_test_margins=[r["margin"] for r in self.store.margin_rows(self.run_id, self.epoch, "test")],
            rows_used=rows_used(self.store.get_paraphrases(self.run_id)),
            budget_left=self.budget_left(),
        )

    def _epoch(self, progress: Progress) -> Generator[SelectionTask, Selection, StepOutcome]:
        """The Step as a generator: it yields its paraphrase selection's inputs and is sent the Selection, so a
        caller may select for several runs at once (``step_together``); returns the committed epoch's outcome."""
        cfg, rt, epoch = self.config, self.runtime, self.epoch + 1
        seed = cfg.refine.seed * 1000 + epoch  # the epoch's random streams are generators seeded from this
        timer = _StageTimer(progress)

        with timer("reading"):
            inputs = self._read_inputs()
            train, originals = inputs.train, inputs.originals

        with timer("scoring"):
            if cfg.cross_fits:
                alloc_margins = cross_fitted_margins(
                    rt.model, originals, inputs.synthetic, cfg.refine.cross_fit_folds, seed)
            else:
                alloc_margins = rt.model.margins(originals)
            picked_view = rt.model.pair_curvature(originals)  # curvature under the model that allocates

        with timer("allocating"):
            budget = min(cfg.refine.budget_per_epoch, inputs.budget_left)
            allocation = allocate(alloc_margins, budget, cfg.allocation, seed=seed)
            requests, counts = paraphrase_requests(originals, allocation, seed)

        if requests and is_main() and isinstance(rt.paraphraser, LazyParaphraser) and not rt.paraphraser.loaded:
            with timer("loading paraphraser"):
                rt.paraphraser.model()

        with timer("generating", total=int(sum(counts))):
            # rows are seeded by the run seed, not the epoch: row k of a text is the same for every
            # strategy and epoch that asks (the cache shares it), and each epoch starts after the rows used
            asked = time.perf_counter()
            selection = yield SelectionTask(
                rt.paraphraser, requests, counts, rt.encoder, cfg.filters,
                cfg.paraphrase.candidates_per_unit, cfg.paraphrase.generations_per_unit, cfg.refine.seed,
                first=[inputs.rows_used.get((r.pair_id, r.side), 0) for r in requests],
                on_round=lambda filled, total: progress("generating", filled, total),
            )
            # run with others (step_together): the time their stages took meanwhile is not this epoch's
            timer.exclude(time.perf_counter() - asked - selection.seconds)
        timer.split("generating", "filtering", selection.filter_seconds)  # the filters ran meanwhile
        check_paraphrase_failures(selection, cfg.refine.max_failed_share)  # failure is not a result

        with timer("crossing"):
            records, new_pairs = build_synthetic(originals, selection.candidates, epoch, rt.paraphraser.name)

        contrast: tuple[list[ParaphraseRecord], list[PreferencePair]] = ([], [])
        if cfg.semantic.enabled and rt.encoder is not None:
            with timer("sharpening"):
                contrast = on_main(lambda: sharpen(originals, allocation, rt.paraphraser, rt.encoder,
                                                   cfg.semantic, epoch, seed))
        records += contrast[0]
        new_pairs += contrast[1]

        with timer("added curvature"):
            # the paper's claim is about these: curvature the added pairs bring, under the model that chose them
            added_curvature = rt.model.pair_curvature(new_pairs) if new_pairs else np.zeros(0)

        with timer("training"):
            trainable_new = new_pairs if cfg.refine.review_policy == "auto" else []
            fit = rt.model.fit(train + trainable_new, progress=progress)

        with timer("evaluating"):
            test_summary, train_summary, margin_rows = _evaluate(
                rt, originals, new_pairs, inputs.test, allocation, alloc_margins
            )
            test_margins = [r.margin for r in margin_rows if r.split == "test"]
            previous = inputs.previous_test_margins
            ks = ks_statistic(previous, test_margins) if previous and test_margins else None

        with timer("spectrum"):
            curvature = rt.model.spectrum(train + trainable_new, k=cfg.refine.curvature_k).to_dict()

        with timer("saving"):
            state = rt.model.state()
            allocation_summary = _allocation_summary(allocation, cfg).to_dict()
            counts_arr = np.asarray(allocation.counts, dtype=float)
            augmentation = augmentation_metrics(counts, selection, len(new_pairs), len(contrast[0]))
        seconds = timer.elapsed()
        metrics = EpochMetrics(
            epoch=epoch, test=test_summary, train=train_summary,
            pairs_trained=len(train) + len(trainable_new), fit_loss=fit.loss, fit_iterations=fit.iterations,
            fit_details=fit.details, augmentation=augmentation, ks_vs_previous=ks,
            picked_curvature=_weighted_mean(picked_view, counts_arr),
            added_curvature=float(np.mean(added_curvature)) if len(added_curvature) else None,
            mean_curvature=float(np.mean(picked_view)) if len(picked_view) else None,
            stage_seconds=timer.seconds,
        ).to_dict()
        record = EpochRecord(
            epoch=epoch, metrics=metrics, allocation=allocation_summary, curvature=curvature, model_state=state,
            margins=margin_rows, new_pairs=new_pairs, new_paraphrases=records, seconds=seconds,
        )
        self.store.commit_epoch(self.run_id, record)
        self.epoch = epoch
        return StepOutcome(epoch, metrics, timer.seconds, seconds)


def step_together(runs: Sequence[RefinementRun], progress: Progress | None = None) -> list[StepOutcome]:
    """One epoch of each run (distinct runs), their paraphrase rows decoded in one stream (``select_together``).

    Why: a run's Step decodes with a tail of few rows in flight, where a decoding step costs most of a full
    batch's; runs stepped together (a comparison's strategies at one seed) share one tail. Each run's epoch is
    what its own Step would compute from the rows it gets, committed on its own; only which batch generates a
    row changes (with int8 layers, its sample: see int8_linear.py). Its stored seconds count its own stages and
    its share of the shared decoding (selection.select_together). A run whose paraphraser failed on too many of
    its rows (ParaphraserFailed) does not keep the others from committing their epochs; the first such error is
    raised after. Any other error stops the Steps still unfinished at once. With one run, or several processes,
    the runs step one after another.
    """
    if len(runs) < 2 or world_size() > 1:
        return [run.step(progress) for run in runs]
    if len({run.run_id for run in runs}) != len(runs):
        raise ValueError("step_together: a run is listed twice")
    with ExitStack() as held:
        for run in runs:
            held.enter_context(run._stepping())
        held.enter_context(remote_work(max(run.config.refine.remote_deadline_s for run in runs), progress))
        epochs = [run._epoch(progress or _quiet) for run in runs]
        selections = select_together([next(epoch) for epoch in epochs])
        outcomes, errors = [], []
        for epoch, selection in zip(epochs, selections):
            try:
                outcomes.append(_finish(epoch, selection))
            except ParaphraserFailed as err:  # raised below, once the other runs have committed
                errors.append(err)
        if errors:
            raise errors[0]
        return outcomes


def _finish(epoch: Generator[SelectionTask, Selection, StepOutcome], selection: Selection) -> StepOutcome:
    try:
        epoch.send(selection)
    except StopIteration as done:
        return done.value
    raise RuntimeError("a Step asked for a second selection")


# -- pieces of a step (module functions: each testable alone) ---------------------------------------
@dataclass
class _StepInputs:
    train: list[PreferencePair]  # originals + synthetic pairs the review policy lets train
    originals: list[PreferencePair]
    synthetic: list[PreferencePair]
    test: list[PreferencePair]
    previous_test_margins: list[float]
    rows_used: dict[tuple[str, str], int]  # (pair, side) -> first paraphrase row not used yet
    budget_left: int


def _quiet(stage: str, done: int, total: int, detail: str = "") -> None:
    return None


class _StageTimer:
    """Times stages back to back on one clock started with the epoch: each stage runs from the end of the one
    before (the few lines between two stages, or a wait for the GIL there, count to the stage they lead
    into), so the stages add up to the epoch exactly, whatever else runs in the process."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.started = self._mark = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str, total: int = 1) -> Iterator[None]:
        self.progress(stage, 0, total)  # inside the stage: a slow listener's time is the epoch's time too
        yield
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._mark, 5)
        self._mark = now

    def exclude(self, seconds: float) -> None:
        """Leave ``seconds`` just passed out of the epoch's clock: time the process spent on other runs' work."""
        seconds = max(0.0, seconds)
        self.started += seconds
        self._mark += seconds

    def split(self, stage: str, part: str, seconds: float) -> None:
        """Move ``seconds`` of a timed stage to ``part``: work that ran interleaved inside it."""
        moved = round(min(max(seconds, 0.0), self.seconds[stage]), 5)
        self.seconds[stage] = round(self.seconds[stage] - moved, 5)
        self.seconds[part] = moved

    def elapsed(self) -> float:
        """Seconds since the epoch started: the stages' sum when called right after the last one."""
        return time.perf_counter() - self.started


def _evaluate(
    runtime: Runtime, originals: Sequence[PreferencePair], new_pairs: Sequence[PreferencePair],
    test: Sequence[PreferencePair], allocation: Allocation | None, alloc_margins: np.ndarray | None,
) -> tuple[MarginMetrics, MarginMetrics, list[MarginRow]]:
    """(test summary, train summary, margin rows) under the current model."""
    model = runtime.model
    train_margins = model.margins(originals)
    train_curv = model.pair_curvature(originals)
    test_margins = model.margins(test) if test else np.zeros(0)
    test_summary = summarize_margins(test_margins, [p.gold_margin for p in test])
    train_summary = summarize_margins(train_margins, [p.gold_margin for p in originals])
    rows = [
        MarginRow(
            p.id, "train", float(m),
            None if alloc_margins is None else float(alloc_margins[i]),
            None if allocation is None else float(allocation.q[i]),
            None if allocation is None else int(allocation.counts[i]),
            float(c),
        )
        for i, (p, m, c) in enumerate(zip(originals, train_margins, train_curv))
    ]
    if new_pairs:
        rows += [MarginRow(p.id, "synthetic", float(m)) for p, m in zip(new_pairs, model.margins(new_pairs))]
    rows += [MarginRow(p.id, "test", float(m)) for p, m in zip(test, test_margins)]
    return test_summary, train_summary, rows


def _epoch0_oof_margins(config: RunConfig, runtime: Runtime, train: Sequence[PreferencePair]) -> np.ndarray | None:
    """Out-of-fold margins of the original pairs at creation, for label-error scores (analysis.label_errors).

    Only for the linear head (k fits on cached features: seconds); a fine-tuned model would pay k fine-tunes,
    so its scores start at epoch 1, where a cross-fitting strategy computes these margins anyway.
    """
    folds = config.refine.cross_fit_folds
    if folds < 2 or len(train) < folds or config.reward.kind != "linear":
        return None
    return cross_fitted_margins(runtime.model, train, [], folds, config.refine.seed * 1000)


def _allocation_summary(allocation: Allocation, cfg: RunConfig) -> AllocationSummary:
    return AllocationSummary(
        strategy=cfg.allocation.strategy, budget=allocation.budget, total=allocation.total, tau=cfg.allocation.tau,
        tau_in_force=allocation.tau_in_force, margin_mode=cfg.allocation.margin_mode,
        tau_scale=cfg.allocation.tau_scale,
        margin_source=f"{cfg.refine.cross_fit_folds}-fold cross-fitted" if cfg.cross_fits else "in-sample",
        effective_n=allocation.effective_n, pairs_picked=int(np.count_nonzero(allocation.counts)),
    )


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float | None:
    return float(np.average(values, weights=weights)) if weights.sum() > 0 else None
