"""Compare allocation strategies at equal budget over seeds: one stored run per (strategy, seed, sweep point).

Fairness and cost: every run of a comparison lives in one store (``DIR/runs.db``), so encoded features and LM
generations are cached once and shared; at one seed every strategy trains on the same split (the seed varies the
split, the demo draw and the selection seed together), starts from the same epoch-0 model and asks the
paraphraser with the same seeds, so where two strategies pick the same response they get the same paraphrases.
The runs of one seed step together (``execute_runs``): each Step decodes all their rows in one stream.
Resumable: a run's result is written to ``DIR/results/<run>.json`` only when the run is whole; a killed
comparison skips finished runs, resumes a half-done run from its last whole epoch (the store's guarantee) and
redoes nothing else. Aggregation and the report are in ``compare_results``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mars_core.analysis.best_of_n import CandidateSets, best_of_n, text_candidates, toy_candidates
from mars_core.compare.out_folder import check_out_folder
from mars_core.compare.results import Comparison, summarize, write_summary
from mars_core.run.components import build_runtime
from mars_core.run.config import RunConfig, with_overrides
from mars_core.run.epoch_metrics import AllocationSummary, EpochMetrics
from mars_core.run.jobs import Job, JobRunner
from mars_core.run.refine import RefinementRun, step_together
from mars_core.run.sources import load_source
from mars_core.store.sqlite import Store

Progress = Callable[..., None]  # progress(stage, done, total, detail="")

# Each strategy name is a set of config changes on top of the comparison's base config.
STRATEGY_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "none": {"allocation": {"strategy": "none"}},
    "uniform": {"allocation": {"strategy": "uniform"}},
    "won": {"allocation": {"strategy": "won"}},
    "mars": {"allocation": {"strategy": "mars"}},
    "mars-signed": {"allocation": {"strategy": "mars", "margin_mode": "signed"}},
    "mars-std": {"allocation": {"strategy": "mars", "tau_scale": "std"}},
    "mars-semantic": {"allocation": {"strategy": "mars"}, "semantic": {"enabled": True}},
}
DEFAULT_STRATEGIES = ("none", "uniform", "won", "mars")

# sweep name -> (what the value means, default values)
SWEEPS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "none": ("", ()),
    "budget": ("budget_fraction", (0.1, 0.3, 1.0)),
    "noise": ("noise", (0.0, 0.1, 0.2)),
    "tau": ("tau", (0.25, 1.0, 4.0)),
    "margin-mode": ("margin_mode", ("abs", "signed")),
    "tau-scale": ("tau_scale", ("raw", "std")),
}
_USES_BUDGET = {"uniform", "won", "mars", "mars-signed", "mars-std", "mars-semantic"}
_USES_TAU = _USES_BUDGET - {"uniform"}


@dataclass(frozen=True)
class CompareSpec:
    """A comparison: a base run config, the strategies, how many seeds, and at most one sweep."""

    base: RunConfig = field(default_factory=RunConfig)
    strategies: tuple[str, ...] = field(default=DEFAULT_STRATEGIES, metadata={
        "help": f"comma-separated: {', '.join(STRATEGY_SETTINGS)}"})
    seeds: int = field(default=5, metadata={"help": "seeds per strategy; each seed varies split, data and selection"})
    first_seed: int = field(default=0, metadata={"help": "seeds are first_seed, first_seed + 1, ..."})
    sweep: str = field(default="none", metadata={"help": f"one of {', '.join(SWEEPS)}"})
    sweep_values: tuple[Any, ...] = field(default=(), metadata={"help": "values of the swept setting"})
    train_pairs: int | None = field(default=None, metadata={
        "help": "data files: train on this many pairs per seed and hold out all the others"})
    best_of_n: int = field(default=8, metadata={"help": "Best-of-N candidates per prompt on the gold suites; 0: off"})

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGY_SETTINGS]
        if unknown or not self.strategies:
            raise ValueError(f"unknown strategies {unknown or '(none given)'}; choose from {', '.join(STRATEGY_SETTINGS)}")
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"a strategy is listed twice: {', '.join(self.strategies)}")
        if self.seeds < 1 or self.first_seed < 0:
            raise ValueError(f"seeds must be ≥ 1 and first_seed ≥ 0, got {self.seeds} and {self.first_seed}")
        if self.sweep not in SWEEPS:
            raise ValueError(f"unknown sweep {self.sweep!r}; choose from {', '.join(SWEEPS)}")
        if self.sweep == "noise" and not self.base.data.source.startswith("demo:"):
            raise ValueError("a label-noise sweep needs a demo suite (--data demo or toy): a file has no gold "
                             "labels to tell a flipped label from a real disagreement")
        if self.best_of_n == 1 or self.best_of_n < 0:
            raise ValueError(f"best_of_n must be 0 (off) or ≥ 2, got {self.best_of_n}")
        if self.train_pairs is not None and self.train_pairs < 4:
            raise ValueError(f"train_pairs must be at least 4, got {self.train_pairs}")
        if self.sweep != "none":
            for value in self.values:
                _check_sweep_value(self.sweep, value, self.base)

    @property
    def values(self) -> tuple[Any, ...]:
        """The sweep's points (one point, None, without a sweep)."""
        if self.sweep == "none":
            return (None,)
        return tuple(self.sweep_values) or SWEEPS[self.sweep][1]

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "base"}
        d["base"] = self.base.to_dict()
        d["strategies"], d["sweep_values"] = list(self.strategies), list(self.values if self.sweep != "none" else ())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompareSpec:
        rest = {k: v for k, v in d.items() if k != "base"}
        rest["strategies"], rest["sweep_values"] = tuple(rest["strategies"]), tuple(rest.get("sweep_values", ()))
        return cls(base=RunConfig.from_dict(d["base"]), **rest)


def _check_sweep_value(sweep: str, value: Any, base: RunConfig) -> None:
    """Refuse a sweep point before any run starts, naming --sweep-values (no point is silently run as another)."""
    try:
        if sweep in ("budget", "noise", "tau"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{value!r} is not a finite number")
        if sweep == "budget":
            if value <= 0:
                raise ValueError(f"a budget fraction must be > 0, got {value}")
            if round(value * base.refine.budget_per_epoch) < 1:
                raise ValueError(f"{value} of --budget {base.refine.budget_per_epoch} is less than one unit")
        elif sweep == "noise":
            dataclasses.replace(base.data, noise=float(value))
        elif sweep in ("tau", "margin-mode", "tau-scale"):
            dataclasses.replace(base.allocation, **{SWEEPS[sweep][0]: value})
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--sweep-values ({sweep}): {exc}") from None


@dataclass(frozen=True)
class RunKey:
    """What makes a run of a comparison: strategy, seed and the resolved settings that matter to it.

    Settings a strategy ignores are left out (``none`` has no budget, ``uniform`` no τ), so a sweep point where
    two configurations coincide reuses one run instead of running it twice.
    """

    strategy: str
    seed: int
    params: tuple[tuple[str, Any], ...]

    @property
    def name(self) -> str:
        return f"compare {self.strategy} seed={self.seed} " + " ".join(f"{k}={v}" for k, v in self.params)

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.name.removeprefix("compare ")).strip("_")


def run_key(spec: CompareSpec, strategy: str, seed: int, value: Any) -> RunKey:
    alloc = {**dataclasses.asdict(spec.base.allocation), **STRATEGY_SETTINGS[strategy].get("allocation", {})}
    params: dict[str, Any] = {"noise": spec.base.data.noise}
    if strategy in _USES_BUDGET:
        params["budget"] = spec.base.refine.budget_per_epoch
    if strategy in _USES_TAU:
        params.update(tau=alloc["tau"], margin_mode=alloc["margin_mode"], tau_scale=alloc["tau_scale"])
    if spec.sweep == "budget" and "budget" in params:
        params["budget"] = max(1, int(round(float(value) * spec.base.refine.budget_per_epoch)))
    elif spec.sweep == "noise":
        params["noise"] = float(value)
    elif spec.sweep in ("tau", "margin-mode", "tau-scale") and strategy in _USES_TAU:
        name = SWEEPS[spec.sweep][0]
        params[name] = float(value) if name == "tau" else str(value)
    return RunKey(strategy, seed, tuple(sorted(params.items())))


def plan(spec: CompareSpec) -> list[tuple[Any, RunKey]]:
    """(sweep value, run key) in the order they run: seed by seed, so a partial comparison has whole seeds.

    A key shared by several sweep points appears once per point but runs once.
    """
    return [(value, run_key(spec, strategy, seed, value))
            for seed in spec.seed_list() for value in spec.values for strategy in spec.strategies]


def run_config(spec: CompareSpec, key: RunKey) -> RunConfig:
    """The full config of one run: base, then the strategy's settings, then the key's resolved values."""
    params = dict(key.params)
    sections = {name: dict(changes) for name, changes in STRATEGY_SETTINGS[key.strategy].items()}
    alloc = sections.setdefault("allocation", {})
    for name in ("tau", "margin_mode", "tau_scale"):
        if name in params:
            alloc[name] = params[name]
    data = {"seed": key.seed, "noise": params["noise"]}
    if spec.train_pairs is not None:
        data["test_fraction"] = _train_fraction_to_test(spec)
    refine = {"seed": key.seed}
    if "budget" in params:
        refine["budget_per_epoch"] = params["budget"]
    return with_overrides(spec.base, data=data, refine=refine, **sections)


_FILE_SIZES: dict[str, int] = {}  # data config (JSON) -> pairs in the file, so each file is counted once


def _train_fraction_to_test(spec: CompareSpec) -> float:
    data = spec.base.data
    if data.test_source is not None:
        raise ValueError("--train-pairs splits one file; with --test-data use --pairs to size the training file")
    memo = json.dumps(dataclasses.asdict(data), sort_keys=True)
    if memo not in _FILE_SIZES:
        source = load_source(data)
        _FILE_SIZES[memo] = len(source.train) + len(source.test)
    n = _FILE_SIZES[memo]
    if not spec.train_pairs or spec.train_pairs >= n:
        raise ValueError(f"--train-pairs {spec.train_pairs} must be below the {n} pairs of {data.source}")
    return 1.0 - spec.train_pairs / n


# ------------------------------------------------------------------------------------------- running
def run_comparison(spec: CompareSpec, out_dir: str | Path, progress: Progress | None = None) -> Comparison:
    """Run (or continue) every run the spec asks for, then write its summary (DIR/comparison[-SWEEP].json, CSVs)."""
    out = Path(out_dir)
    check_out_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = _spec_for(out, spec)
    (out / "results").mkdir(exist_ok=True)
    notify = progress or _quiet
    store = Store(out / "runs.db")
    keys = list(dict.fromkeys(key for _, key in plan(spec)))
    started = time.perf_counter()
    done = 0
    for seed in spec.seed_list():
        group = [key for key in keys if key.seed == seed]
        notify("runs", done, len(keys), f"seed {seed}, {len(group)} runs together: "
               + ", ".join(k.strategy for k in group))
        pending = [key for key in group if not result_path(out, key).exists()]
        if pending:
            execute_runs(store, spec, pending, out, progress)
        done += len(group)
    notify("runs", len(keys), len(keys), "done")
    comparison = summarize(spec.to_dict(), [(value, load_result(out, key)) for value, key in plan(spec)])
    comparison.extra["wall_seconds_this_call"] = round(time.perf_counter() - started, 2)
    comparison.extra["lm_generations_computed"] = store.generation_count()
    comparison.extra["summary_file"] = str(write_summary(out, comparison))
    return comparison


def _spec_for(out: Path, spec: CompareSpec) -> CompareSpec:
    """Write DIR/spec.json on first use; later calls must agree on everything but strategies, seeds and sweeps.

    Settings are compared where both sides have them: a field added to the config since the folder was made
    (with its default) does not block continuing; a changed value does, and the error names it.
    """
    path = out / "spec.json"
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        new = json.loads(json.dumps(spec.to_dict()))
        differ = [name for name in ("train_pairs", "best_of_n") if stored.get(name) != new[name]]
        differ += _differences(stored.get("base", {}), new["base"], "base")
        if differ:
            raise ValueError(f"{out} holds a comparison with other settings ({', '.join(differ)} differ); "
                             "use another --out, or the same settings to continue it")
    else:
        _atomic_write(path, json.dumps(spec.to_dict(), indent=1))
    return spec


def _differences(old: Any, new: Any, where: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in old.keys() & new.keys() for d in _differences(old[key], new[key], f"{where}.{key}")]
    return [] if old == new else [where]


def result_path(out: Path, key: RunKey) -> Path:
    return out / "results" / f"{key.slug}.json"


def load_result(out: Path, key: RunKey) -> dict[str, Any]:
    return json.loads(result_path(out, key).read_text(encoding="utf-8"))


def execute_runs(store: Store, spec: CompareSpec, keys: list[RunKey], out: Path,
                 progress: Progress | None = None) -> None:
    """Create (or resume) these runs, step them together until each one's stop rule fires, and write each one's
    result file as it finishes.

    Stepped together (refine.step_together): each Step of the group decodes every run's paraphrase rows in one
    stream, so the strategies of a seed share one decoding tail instead of one each. A run's ``wall_seconds``
    is its setup and its stored epochs' seconds (each epoch's own stages and its share of the shared decoding),
    and the scoring of its result.
    """
    runs: list[RefinementRun] = []
    setup: list[float] = []  # building the runtime, and opening the run or creating it with its epoch 0
    counted_from: list[int] = []  # the first epoch whose stored seconds are not in setup
    for key in keys:
        started = time.perf_counter()
        run, created = _open_or_create(store, spec, key, progress)
        runs.append(run)
        setup.append(time.perf_counter() - started)
        counted_from.append(1 if created else 0)
    active = list(range(len(keys)))
    while active:
        for i in [i for i in active if runs[i].stop_reason() is not None]:  # finished: its result, now
            started = time.perf_counter()
            result = run_result(store, runs[i], spec, keys[i])
            result["wall_seconds"] = round(setup[i] + _stored_seconds(store, runs[i], counted_from[i])
                                           + time.perf_counter() - started, 3)
            _atomic_write(result_path(out, keys[i]), json.dumps(result))
            active.remove(i)
        if active:
            step_together([runs[i] for i in active], progress=progress)


def _open_or_create(store: Store, spec: CompareSpec, key: RunKey,
                    progress: Progress | None) -> tuple[RefinementRun, bool]:
    """(the key's stored run, resumed at its last whole epoch, or a new one with its epoch 0; whether new)."""
    config = run_config(spec, key)
    runtime = build_runtime(config, store)
    existing = [r.id for r in store.list_runs() if r.name == key.name and store.last_epoch(r.id) is not None]
    if existing:
        return RefinementRun.open(store, existing[-1], runtime), False
    return RefinementRun.create(store, config, name=key.name, runtime=runtime, progress=progress), True


def _stored_seconds(store: Store, run: RefinementRun, since: int) -> float:
    return sum(float(row.get("seconds") or 0.0) for row in store.epoch_table(run.run_id) if row["epoch"] >= since)


def run_result(store: Store, run: RefinementRun, spec: CompareSpec, key: RunKey) -> dict[str, Any]:
    """Everything the report needs about one finished run, with per-test-pair margins for paired bootstraps."""
    table = store.epoch_table(run.run_id)
    epochs = [EpochMetrics.from_dict(row["metrics"]) for row in table]
    metrics, curvature = epochs[-1], table[-1]["curvature"] or {}
    test = {p.id: p for p in store.get_pairs(run.run_id, split="test")}
    rows = store.margin_rows(run.run_id, run.epoch, "test")
    later = epochs[1:]
    allocations = [AllocationSummary.from_dict(row["allocation"]) for row in table[1:]]
    n_train = len(store.get_pairs(run.run_id, split="train", synthetic=False))
    top = curvature.get("top_k") or [float("nan")]
    result: dict[str, Any] = {
        "run_id": run.run_id, "strategy": key.strategy, "seed": key.seed, "params": dict(key.params),
        "epochs": run.epoch,
        "metrics": {
            "test_accuracy": metrics.test.accuracy, "test_snr": metrics.test.snr,
            "test_gold_accuracy": metrics.test.gold_accuracy, "test_ece": metrics.test.ece,
            "hessian_trace": curvature.get("trace"), "top_eigenvalue": top[0],
            "synthetic_pairs": int(metrics.pairs_trained) - n_train,
            "lm_generations": sum(int(m.augmentation.paraphrases_generated) for m in later),
            "budget_units": sum(int(a.total) for a in allocations if a is not None),
            "paraphrases_kept": sum(int(m.augmentation.paraphrases_kept) for m in later),
            "added_curvature": _mean_of([m.added_curvature for m in later]),
            "epoch0_test_accuracy": epochs[0].test.accuracy,
            "seconds": round(sum(float(r.get("seconds") or 0.0) for r in table), 3),
        },
        "test_ids": [r["pair_id"] for r in rows],
        "test_margins": [float(r["margin"]) for r in rows],
        "test_gold": [test[r["pair_id"]].gold_margin for r in rows],
        "n_train": n_train,
    }
    candidates = bon_candidates(spec, key.seed)
    if candidates is not None:
        prompts, responses = candidates.flat()
        rewards = np.asarray(run.runtime.model.rewards(prompts, responses), dtype=float).reshape(candidates.shape())
        outcome = best_of_n(rewards, candidates.gold)
        result["bon_picked_gold"] = outcome.picked_gold.tolist()
        result["bon_best_gold"] = outcome.best_gold.tolist()
        result["metrics"]["bon_match_rate"] = outcome.match_rate
        result["metrics"]["bon_regret"] = outcome.regret
    return result


def bon_candidates(spec: CompareSpec, seed: int) -> CandidateSets | None:
    """The seed's Best-of-N candidates (the same for every strategy at that seed); None without a gold reward."""
    if spec.best_of_n == 0:
        return None
    if spec.base.data.source == "demo:text":
        return text_candidates(spec.best_of_n, seed)
    if spec.base.data.source == "demo:toy":
        return toy_candidates(spec.best_of_n, seed=seed)
    return None


def _mean_of(values: list[Any]) -> float | None:
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _quiet(stage: str, done: int, total: int, detail: str = "") -> None:
    return None


def comparison_key(out: str | Path) -> str:
    return f"compare:{Path(out).resolve()}"


def start_comparison(runner: JobRunner, spec: CompareSpec, out: str | Path, session: str = "") -> Job:
    """Run the comparison as a background job (one per output folder); its parts are the comparison's runs."""
    job = Job(comparison_key(out), f"comparison into {out}", part_name="run", session=session)

    def report(stage: str, done: int, total: int, detail: str = "") -> None:
        if stage == "runs":  # run_comparison's own stage: which of its runs is next
            job.part(done, total, detail)
        else:
            job.progress(stage, done, total, detail)

    def body(job: Job) -> None:
        job.results.append(run_comparison(spec, out, report))

    return runner.start(job, body)
