"""RefinementRun: the MARS epoch loop, one `step()` per epoch, everything persisted in the store.

    score → allocate → paraphrase → filter → cross pairs → retrain → evaluate → curvature → commit

Nothing of an epoch is visible until its single commit, so a killed process leaves the run at
its last whole epoch and `RefinementRun.open` resumes it from there; generated paraphrases and
encoded features are cached in the store as they are made, so the redo costs no LM time.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mars_core.analysis.margins import ks_statistic, summarize_margins
from mars_core.augment.allocation import Allocation, allocate, split_sides
from mars_core.augment.cross_pairs import cross_pairs
from mars_core.augment.filters import Candidate, ParaphraseRequest, filter_candidates, pass_rates_by_length
from mars_core.augment.semantic import select_for_sharpening, semantic_distance, sharpen_contrast
from mars_core.data.pairs import PreferencePair
from mars_core.model.reward import cross_fitted_margins
from mars_core.model.train import seed_everything
from mars_core.run.components import Components, build_components
from mars_core.run.config import RunConfig
from mars_core.run.sources import load_source
from mars_core.run.store import EpochRecord, MarginRow, ParaphraseRecord, Store

log = logging.getLogger(__name__)

STAGES = ("scoring", "allocating", "paraphrasing", "filtering", "training", "evaluating", "curvature", "saving")

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
    metrics: dict[str, Any]
    stage_seconds: dict[str, float] = field(default_factory=dict)


class RefinementRun:
    """A stored run plus the live components that advance it."""

    def __init__(self, store: Store, run_id: int, config: RunConfig, components: Components) -> None:
        self.store = store
        self.run_id = run_id
        self.config = config
        self.components = components
        self._load_last_epoch()

    def _load_last_epoch(self) -> None:
        last = self.store.last_epoch(self.run_id)
        if last is None:
            raise RuntimeError(f"run {self.run_id} has no epoch 0; it was never initialised")
        self.epoch = last
        state = self.store.get_epoch(self.run_id, last, with_model=True).model_state
        if state is not None:
            self.components.model.load_state(state)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(
        cls, store: Store, config: RunConfig, name: str | None = None, components: Components | None = None,
        progress: Progress | None = None,
    ) -> RefinementRun:
        """Load the data, store it, fit epoch 0 (no augmentation) and commit it."""
        train, test, description = load_source(config.data)
        components = components or build_components(config, store)
        run_id = store.create_run(name or description, config.to_dict(), description, train, test)
        seed_everything(config.refine.seed)
        notify = progress or _quiet
        notify("training", 0, 1)
        start = time.perf_counter()
        fit = components.model.fit(train)
        notify("evaluating", 0, 1)
        metrics, margins = _evaluate(components, train, [], test, epoch=0, allocation=None, alloc_margins=None)
        metrics.update(fit_loss=fit.loss, fit_iterations=fit.iterations, pairs_trained=len(train))
        curvature = components.model.spectrum(train, k=config.refine.curvature_k).to_dict()
        record = EpochRecord(
            epoch=0, metrics=metrics, allocation={}, curvature=curvature, model_state=components.model.state(),
            margins=margins, seconds=time.perf_counter() - start,
        )
        store.commit_epoch(run_id, record)
        return cls(store, run_id, config, components)

    @classmethod
    def open(cls, store: Store, run_id: int, components: Components | None = None) -> RefinementRun:
        """Resume a stored run (after a restart, in another process, or from the app's run picker)."""
        config = RunConfig.from_dict(store.get_run(run_id).config)
        return cls(store, run_id, config, components or build_components(config, store))

    # -- status ------------------------------------------------------------------------------
    def budget_spent(self) -> int:
        return sum(int(row["allocation"].get("total", 0)) for row in self.store.epoch_table(self.run_id))

    def budget_left(self) -> int:
        return max(0, self.config.refine.budget_total - self.budget_spent())

    def stop_reason(self) -> str | None:
        """Why the run will not step again, or None if it can."""
        refine = self.config.refine
        if self.epoch >= refine.epochs:
            return f"reached the last epoch ({refine.epochs})"
        if self.config.allocation.strategy != "none" and self.budget_left() == 0:
            return f"augmentation budget spent ({refine.budget_total} paraphrase generations)"
        if refine.ks_threshold > 0 and self.epoch >= 1:
            ks = self.store.get_epoch(self.run_id, self.epoch).metrics.get("ks_vs_previous")
            if ks is not None and ks < refine.ks_threshold:
                return f"margins settled (KS {ks:.3f} < {refine.ks_threshold})"
        return None

    # -- the step ------------------------------------------------------------------------------
    def step(self, progress: Progress | None = None, lock_owner: str | None = None) -> StepOutcome:
        """Advance one epoch and commit it; raises RunFinished or StepInProgress instead of stepping."""
        reason = self.stop_reason()
        if reason:
            raise RunFinished(f"run {self.run_id} is finished: {reason}")
        owner = lock_owner or f"step-{id(self)}-{time.time()}"
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
            return self._step(progress or _quiet)
        finally:
            self.store.release_step_lock(self.run_id, owner)

    def _step(self, progress: Progress) -> StepOutcome:
        cfg, comp, epoch = self.config, self.components, self.epoch + 1
        seed = cfg.refine.seed * 1000 + epoch
        seed_everything(seed)
        timer = _StageTimer(progress)
        start = time.perf_counter()

        with timer("scoring"):
            train = self.store.training_pairs(self.run_id, cfg.refine.review_policy)
            originals = [p for p in train if not p.is_synthetic]
            synthetic = [p for p in train if p.is_synthetic]
            if cfg.refine.cross_fit_folds >= 2:
                alloc_margins = cross_fitted_margins(comp.model, originals, synthetic, cfg.refine.cross_fit_folds, seed)
            else:
                alloc_margins = comp.model.margins(originals)
            picked_view = comp.model.pair_curvature(originals)  # curvature under the model that allocates

        with timer("allocating"):
            budget = min(cfg.refine.budget_per_epoch, self.budget_left())
            allocation = allocate(alloc_margins, budget, cfg.allocation, seed=seed)

        requests, counts = _paraphrase_requests(originals, allocation, seed)
        with timer("paraphrasing", total=len(requests)):
            outputs, failures = _generate(comp, requests, counts, seed, lambda done: progress("paraphrasing", done, len(requests)))

        with timer("filtering"):
            candidates = _judge(comp, cfg, requests, outputs)
            records, new_pairs = _build_synthetic(originals, candidates, epoch, comp.paraphraser.name)
            sharpened = self._sharpen(originals, allocation, epoch, seed)
            records += sharpened[0]
            new_pairs += sharpened[1]

        # the paper's claim is about these: curvature the added pairs bring, under the model that chose them
        added_curvature = comp.model.pair_curvature(new_pairs) if new_pairs else np.zeros(0)

        with timer("training"):
            trainable_new = new_pairs if cfg.refine.review_policy == "auto" else []
            fit = comp.model.fit(train + trainable_new)

        with timer("evaluating"):
            test = self.store.get_pairs(self.run_id, split="test")
            metrics, margin_rows = _evaluate(
                comp, originals, new_pairs, test, epoch, allocation, alloc_margins
            )
            previous = [r["margin"] for r in self.store.margin_rows(self.run_id, self.epoch, "test")]
            test_margins = [r.margin for r in margin_rows if r.split == "test"]
            metrics["ks_vs_previous"] = ks_statistic(previous, test_margins) if previous and test_margins else None

        with timer("curvature"):
            curvature = comp.model.spectrum(train + trainable_new, k=cfg.refine.curvature_k).to_dict()

        counts_arr = np.asarray(allocation.counts, dtype=float)
        kept = [c for c in candidates if c.kept]
        metrics.update(
            pairs_added=len(new_pairs),
            pairs_trained=len(train) + len(trainable_new),
            paraphrases_requested=int(counts_arr.sum()),
            paraphrases_generated=sum(len(o) for o in outputs),
            paraphrases_kept=len(kept),
            paraphrase_failures=failures,
            filter_reasons=_reason_counts(candidates),
            pass_rates_by_length=_frame_records(pass_rates_by_length(candidates)) if candidates else [],
            picked_curvature=_weighted_mean(picked_view, counts_arr),
            added_curvature=float(np.mean(added_curvature)) if len(added_curvature) else None,
            mean_curvature=float(np.mean(picked_view)) if len(picked_view) else float("nan"),
            fit_loss=fit.loss,
            fit_iterations=fit.iterations,
            contrast_rewrites=len(sharpened[0]),
        )
        metrics["stage_seconds"] = timer.seconds
        with timer("saving"):
            record = EpochRecord(
                epoch=epoch, metrics=metrics, allocation=_allocation_summary(allocation, cfg), curvature=curvature,
                model_state=comp.model.state(), margins=margin_rows, new_pairs=new_pairs,
                new_paraphrases=records, seconds=time.perf_counter() - start,
            )
            self.store.commit_epoch(self.run_id, record)
        self.epoch = epoch
        return StepOutcome(epoch, metrics, timer.seconds)

    def _sharpen(
        self, originals: list[PreferencePair], allocation: Allocation, epoch: int, seed: int
    ) -> tuple[list[ParaphraseRecord], list[PreferencePair]]:
        """Paper v2: contrast-sharpening rewrites for picked pairs whose two responses are too alike."""
        sem = self.config.semantic
        comp = self.components
        if not sem.enabled or comp.encoder is None or not hasattr(comp.paraphraser, "generate"):
            return [], []
        low_contrast = select_for_sharpening(semantic_distance(
            [p.chosen for p in originals], [p.rejected for p in originals], comp.encoder))
        picked = [p for p, c, low in zip(originals, allocation.counts, low_contrast) if c > 0 and low]
        if not picked:
            return [], []
        results = sharpen_contrast(picked, comp.paraphraser, comp.encoder, seed, sem)
        by_id = {p.id: p for p in picked}
        records, pairs = [], []
        for res in results:
            if not res.accepted:
                continue
            parent = by_id[res.pair_id]
            pid = f"e{epoch}:{parent.id}:{res.side[0]}x"
            records.append(ParaphraseRecord(
                id=pid, pair_id=parent.id, side=res.side, epoch=epoch, source_text=res.old_text, text=res.new_text,
                model=comp.paraphraser.name, similarity=None,
                verdicts={"kind": "contrast_rewrite", "old_distance": res.old_distance, "new_distance": res.new_distance},
            ))
            changed = {"chosen": res.new_text, "chosen_paraphrase_id": pid} if res.side == "chosen" else {
                "rejected": res.new_text, "rejected_paraphrase_id": pid}
            pairs.append(parent.with_changes(
                id=f"{parent.id}~e{epoch}~sharp", source="synthetic", parent_id=parent.id, epoch_added=epoch, **changed
            ))
        return records, pairs


# -- pieces of a step (module functions: each testable alone) ---------------------------------------
def _quiet(stage: str, done: int, total: int, detail: str = "") -> None:
    return None


class _StageTimer:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str, total: int = 1) -> Iterator[None]:
        self.progress(stage, 0, total)
        start = time.perf_counter()
        yield
        self.seconds[stage] = round(time.perf_counter() - start, 4)


def _paraphrase_requests(
    originals: list[PreferencePair], allocation: Allocation, seed: int
) -> tuple[list[ParaphraseRequest], list[int]]:
    requests: list[ParaphraseRequest] = []
    counts: list[int] = []
    odd_to_rejected = np.random.default_rng([seed, 7]).random(len(originals)) < 0.5  # see split_sides
    for pair, count, coin in zip(originals, allocation.counts, odd_to_rejected, strict=True):
        n_plus, n_minus = split_sides(int(count), bool(coin))
        if n_plus:
            requests.append(ParaphraseRequest(pair.id, "chosen", pair.chosen, pair.rejected, pair.prompt))
            counts.append(n_plus)
        if n_minus:
            requests.append(ParaphraseRequest(pair.id, "rejected", pair.rejected, pair.chosen, pair.prompt))
            counts.append(n_minus)
    return requests, counts


def _generate(
    comp: Components, requests: list[ParaphraseRequest], counts: list[int], seed: int,
    on_done: Callable[[int], None],
) -> tuple[list[list[str]], int]:
    """Paraphrases per request, grouped by how many each needs; a failing group costs only its own texts."""
    outputs: list[list[str]] = [[] for _ in requests]
    by_n: dict[int, list[int]] = defaultdict(list)
    for i, n in enumerate(counts):
        by_n[n].append(i)
    failures = 0
    done = 0
    for n, idx in sorted(by_n.items()):
        try:
            got = comp.paraphraser.paraphrase([requests[i].text for i in idx], n, seed)
        except Exception:  # the epoch goes on without these texts' paraphrases
            log.exception("paraphraser failed on %d texts (n=%d); they get no paraphrases this epoch", len(idx), n)
            got = [[] for _ in idx]
            failures += len(idx)
        for i, texts in zip(idx, got):
            outputs[i] = list(texts)[:n]
        done += len(idx)
        on_done(done)
    failures += len(getattr(comp.paraphraser, "failures", []) or [])
    if hasattr(comp.paraphraser, "failures"):
        comp.paraphraser.failures.clear()
    return outputs, failures


def _judge(comp: Components, cfg: RunConfig, requests: list[ParaphraseRequest], outputs: list[list[str]]) -> list[Candidate]:
    if comp.encoder is not None:
        return filter_candidates(requests, outputs, comp.encoder, cfg.filters)
    # the toy: a paraphrase is a small perturbation of φ, label-preserving by construction
    return [
        Candidate(r.pair_id, r.side, r.prompt, r.text, r.other_text, k, text, float("nan"), float("nan"),
                  1.0, "neutral", "neutral", [] if text else ["empty"])
        for r, texts in zip(requests, outputs) for k, text in enumerate(texts)
    ]


def _build_synthetic(
    originals: list[PreferencePair], candidates: list[Candidate], epoch: int, model_name: str
) -> tuple[list[ParaphraseRecord], list[PreferencePair]]:
    """Store every candidate (kept ones await review, filtered ones keep their reasons) and cross the kept."""
    records: list[ParaphraseRecord] = []
    kept: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for cand in candidates:
        pid = f"e{epoch}:{cand.pair_id}:{cand.side[0]}{cand.candidate_index}"
        records.append(ParaphraseRecord(
            id=pid, pair_id=cand.pair_id, side=cand.side, epoch=epoch, source_text=cand.source_text,
            text=cand.text, model=model_name,
            similarity=None if np.isnan(cand.similarity) else float(cand.similarity),
            verdicts={
                "reasons": list(cand.reasons), "other_similarity": _finite(cand.other_similarity),
                "length_ratio": _finite(cand.length_ratio), "polarity_source": cand.polarity_source,
                "polarity_candidate": cand.polarity_candidate,
            },
            status="pending" if cand.kept else "filtered",
        ))
        if cand.kept:
            kept[(cand.pair_id, cand.side)].append((pid, cand.text))
    new_pairs: list[PreferencePair] = []
    for parent in originals:
        plus, minus = kept.get((parent.id, "chosen"), []), kept.get((parent.id, "rejected"), [])
        if plus or minus:
            new_pairs += cross_pairs(parent, plus, minus, epoch)
    return records, new_pairs


def _evaluate(
    comp: Components, originals: Sequence[PreferencePair], new_pairs: Sequence[PreferencePair],
    test: Sequence[PreferencePair], epoch: int, allocation: Allocation | None, alloc_margins: np.ndarray | None,
) -> tuple[dict[str, Any], list[MarginRow]]:
    model = comp.model
    train_margins = model.margins(originals)
    train_curv = model.pair_curvature(originals)
    test_margins = model.margins(test) if test else np.zeros(0)
    gold = [p.gold_margin for p in test]
    metrics = {f"test_{k}": v for k, v in summarize_margins(test_margins, gold).to_dict().items()}
    metrics.update({f"train_{k}": v for k, v in summarize_margins(train_margins, [p.gold_margin for p in originals]).to_dict().items()})
    metrics["epoch"] = epoch
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
    return metrics, rows


def _allocation_summary(allocation: Allocation, cfg: RunConfig) -> dict[str, Any]:
    return {
        "strategy": cfg.allocation.strategy, "tau": cfg.allocation.tau, "tau_in_force": allocation.tau_in_force,
        "margin_mode": cfg.allocation.margin_mode, "tau_scale": cfg.allocation.tau_scale,
        "margin_source": f"{cfg.refine.cross_fit_folds}-fold cross-fitted" if cfg.refine.cross_fit_folds >= 2 else "in-sample",
        "budget": allocation.budget, "total": allocation.total, "effective_n": allocation.effective_n,
        "pairs_picked": int(np.count_nonzero(allocation.counts)),
    }


def _reason_counts(candidates: list[Candidate]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for cand in candidates:
        for reason in cand.reasons:
            counts[reason] += 1
    return dict(counts)


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float | None:
    return float(np.average(values, weights=weights)) if weights.sum() > 0 else None


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _frame_records(frame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


