"""docs/results.md from stored comparisons: every number printed beside the command that produced it.

    .venv/bin/python bench/results_report.py run toy toy-budget     # run (or continue) experiments by name
    .venv/bin/python bench/results_report.py report                 # write docs/results.md from what is stored
    .venv/bin/python bench/results_report.py report --carry         # ... keeping the sections not stored here

The experiments are listed once, below; `run` executes exactly the listed command (resumable: a killed or
partial run continues), `report` reads runs/results/<name>/ and never runs anything. Verdicts are computed from
the stored intervals by fixed rules (see mars_core/present/results_markdown.py), never picked by hand.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mars_core.cli.main import main as cli  # noqa: E402
from mars_core.compare.results import load_comparison, load_run_results  # noqa: E402
from mars_core.present.results_markdown import (  # noqa: E402
    carried_lines,
    carried_section,
    claim_rows,
    experiment_section,
    not_winning_lines,
    old_section,
    shows_results,
)

RESULTS = ROOT / "runs" / "results"
HH = "../shared/data/hh_harmless_dev.jsonl"


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    folder: str  # runs/results/<folder>: a dataset's comparisons share one store and its LM generation cache
    args: str  # after `python -m mars_core compare`; --out is added
    sweep: str = "none"

    @property
    def out(self) -> Path:
        return RESULTS / self.folder

    @property
    def summary(self) -> Path:
        return self.out / ("comparison.json" if self.sweep == "none" else f"comparison-{self.sweep}.json")

    @property
    def command(self) -> str:
        return f"python -m mars_core compare {self.args} --out runs/results/{self.folder}"


TOY = "--data toy --pairs 1000 --epochs 3 --budget 80 --seeds 10"
PIN = "--candidates-per-unit 2 --generations-per-unit 6"  # the paraphraser's selection, pinned against default drift
DEMO = f"--data demo --epochs 1 --budget 24 {PIN}"
HH_BASE = f"--data {HH} --train-pairs 300 --epochs 1 --budget 24 {PIN}"
EXPERIMENTS = [
    Experiment("toy", "2-D toy: all strategies", "toy", f"{TOY} --strategies none,uniform,won,mars,mars-signed,mars-std"),
    Experiment("toy-budget", "2-D toy: budget fraction", "toy",
               f"{TOY} --strategies none,uniform,won,mars --sweep budget --sweep-values 0.1,0.3,1.0", "budget"),
    Experiment("toy-noise", "2-D toy: label-flip noise", "toy",
               f"{TOY} --strategies none,uniform,won,mars --sweep noise --sweep-values 0,0.1,0.2", "noise"),
    Experiment("toy-tau", "2-D toy: τ ablation", "toy",
               f"{TOY} --strategies uniform,mars --sweep tau --sweep-values 0.25,1,4,16", "tau"),
    Experiment("toy-tau-scale", "2-D toy: τ on raw vs std-scaled margins", "toy",
               f"{TOY} --strategies uniform,mars --sweep tau-scale", "tau-scale"),
    Experiment("demo", "Text demo: all strategies", "demo", f"{DEMO} --strategies none,uniform,won,mars --seeds 3"),
    Experiment("demo-budget", "Text demo: budget fraction", "demo",
               f"{DEMO} --strategies none,uniform,mars --seeds 3 --sweep budget --sweep-values 0.3,1.0", "budget"),
    Experiment("demo-noise", "Text demo: label-flip noise", "demo",
               f"{DEMO} --strategies none,uniform,mars --seeds 3 --sweep noise --sweep-values 0,0.1", "noise"),
    Experiment("hh-linear", "Real HH-RLHF harmless pairs, linear reward model", "hh-linear",
               f"{HH_BASE} --strategies none,uniform,won,mars --seeds 20"),
    Experiment("hh-finetune", "Real HH-RLHF harmless pairs, fine-tuned MiniLM reward model", "hh-finetune",
               f"{HH_BASE} --strategies none,uniform,mars --seeds 3 --reward-model finetune --folds 0"),
]
BY_NAME = {e.name: e for e in EXPERIMENTS}
DATA_LABELS = {  # the verdict table's data column, and the experiments whose numbers its rows quote
    "HH-RLHF, linear": ("hh-linear",),
    "HH-RLHF, fine-tuned": ("hh-finetune",),
    "text demo": ("demo", "demo-budget", "demo-noise"),
    "2-D toy": ("toy", "toy-budget", "toy-noise", "toy-tau", "toy-tau-scale"),
}
VERDICTS = "Verdicts on the paper's claims"
NOT_WINNING = "Where MARS does not win"
RESOLUTION = "Resolution on real data"


def run(names: list[str]) -> int:
    for name in names:
        exp = BY_NAME[name]
        print(f"$ {exp.command}", flush=True)
        started = time.perf_counter()
        code = cli(["compare", *shlex.split(exp.args), "--out", str(exp.out)])
        print(f"[{name}] exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            return code
    return 0


MORE = "<!-- more sections below -->"  # what follows this line in docs/results.md is written by others: kept


def unstored_sections(text: str, stored: dict) -> list[str]:
    """Experiments whose section in ``text`` shows results that are not stored here (a report would lose them)."""
    lost = []
    for exp in EXPERIMENTS:
        if exp.name not in stored and shows_results(old_section(text, exp.title)):
            lost.append(exp.name)
    return lost


def report(path: Path, force: bool = False, carry: bool = False) -> None:
    """Write the report from the stored comparisons; with ``carry``, sections not stored here keep their old text."""
    stored = {e.name: load_comparison(e.summary) for e in EXPERIMENTS if e.summary.exists()}
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    before = old.split(MORE, 1)[0]
    lost = unstored_sections(before, stored)
    carried_labels = {label for label, names in DATA_LABELS.items() if not any(n in stored for n in names)}
    if carry:
        partly = [label for label, names in DATA_LABELS.items()
                  if label not in carried_labels and any(n in lost for n in names)]
        if partly and not force:
            raise SystemExit(f"--carry keeps a data set's verdict rows whole: {', '.join(partly)} has some "
                             "comparisons stored and some not. Run the rest, or pass --force.")
        lost = []
    if lost and not force:
        raise SystemExit(f"{path} shows results of {', '.join(lost)} that are not stored under {RESULTS}: "
                         "regenerating would drop them. Copy their comparisons there, pass --carry to keep "
                         "their sections as they are, or --force to drop them.")
    carried = {e.name: carried_section(before, e.title, e.name) for e in EXPERIMENTS if carry and e.name not in stored}
    carried_labels = carried_labels if carry else set()
    tail = old.split(MORE, 1)[1] if MORE in old else "\n"
    lines = [
        "# Does MARS beat its baselines? Results",
        "",
        "Generated by `.venv/bin/python bench/results_report.py report` from the comparisons stored under "
        "`runs/results/`; each section gives the command that produced its numbers (run from the repository "
        "root; `bench/results_report.py run NAME` runs exactly that command, and a rerun continues a killed one). "
        "Accuracy numbers are fractions (0.012 = 1.2 points). Differences are paired: at one seed every strategy "
        "trains on the same split, starts from the same epoch-0 model and is scored on the same test pairs; the "
        "95% intervals come from a bootstrap over seeds and, within each seed, test pairs "
        "(`mars_core/analysis/bootstrap.py`; it errs wide, see there). *Smallest detectable* is the difference "
        "this comparison would have found with 80% power; anything smaller is invisible at this size.",
        "",
        "How to read the columns. *Budget units*: the paper's B_t, counted as kept paraphrases "
        "(`mars_core/augment/selection.py`); every augmenting strategy gets the same units, and *LM gens* says what "
        "they cost in generations. *Synthetic pairs*: pairs the paraphrases added by crossing "
        "(a pair given several units yields more pairs, so this differs between strategies at equal budget). "
        "*test acc* is agreement with the data's labels; on the demo suites the labels are Bradley-Terry draws "
        "(and, in the noise sweeps, flipped on the test side too), so *gold acc* (agreement with the known gold "
        "reward) is the clean measure there. *Curvature of added pairs*: mean σ'(Δ)‖∇Δ‖² of the pairs a strategy "
        "added, under the model that chose them. *s/run*: time a run actually spent; a run whose paraphrases were "
        "already in the store's cache (generated for another strategy or sweep point at the same seed) spends "
        "almost none on the LM, so compare cost through *LM gens*, not seconds. Best-of-N: each model picks one of N candidates per prompt of the "
        "gold suite; nothing can beat gold's own pick, so the win rate against it is reported as the share of "
        "prompts where the pick ties gold's best (*picks gold's best*) and the gold reward given up (*regret*).",
        "",
        f"## {VERDICTS}",
        "",
        "| claim | data | evidence (MARS − baseline, 95% CI) | verdict |",
        "|---|---|---|---|",
        *claim_rows(stored, {e.name: e.out for e in EXPERIMENTS}),
        *carried_lines(before, VERDICTS, carried_labels),
        "",
        "Rules (fixed before looking): *reproduced* when the interval excludes 0 in the claimed direction; "
        "*refuted* when it excludes 0 in the other direction, or when it lies entirely inside ± the smallest "
        "detectable difference of the same comparison while that is below 1 point (no effect of a useful size); "
        "otherwise *not resolvable at this size*, with the number of test pairs × seeds that would detect the "
        "observed difference.",
        "",
    ]
    lines += [f"## {NOT_WINNING}", "",
              "Every MARS − baseline interval (first sweep point of each plain comparison) that does not show MARS "
              "better; ECE counts as better when lower.", ""]
    lines += (not_winning_lines(stored, {names[0]: label for label, names in DATA_LABELS.items()})
              + carried_lines(before, NOT_WINNING, carried_labels)) or ["- (none)"]
    lines.append("")
    resolution = old_section(before, RESOLUTION) if carried.get("hh-linear") else None
    lines += [f"## {RESOLUTION}", "", *resolution, ""] if resolution else \
        resolution_lines(stored.get("hh-linear"), BY_NAME["hh-linear"].command)
    for exp in EXPERIMENTS:
        if carried.get(exp.name):
            lines += carried[exp.name]
            continue
        lines += experiment_section(exp.title, exp.command, stored.get(exp.name))
        if exp.name == "toy-tau":
            lines += tau_note(stored.get(exp.name), exp.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + MORE + tail, encoding="utf-8")
    print(f"wrote {path}")


def tau_note(comparison, folder: Path) -> list[str]:
    """Say so when every τ gave MARS the very same runs (identical test margins at every seed)."""
    if comparison is None:
        return []
    results = load_run_results(folder)
    by_value: dict = {}
    for row in comparison.runs:
        if row["strategy"] == "mars" and row["run_id"] in results:
            by_value.setdefault(row["sweep_value"], {})[row["seed"]] = results[row["run_id"]]["test_margins"]
    groups: list[list] = []
    for value in by_value:
        for group in groups:
            if by_value[group[0]] == by_value[value]:
                group.append(value)
                break
        else:
            groups.append([value])
    tied = [g for g in groups if len(g) > 1]
    if not tied:
        return []
    text = "; ".join("τ ∈ {" + ", ".join(f"{v:g}" for v in g) + "}" for g in tied)
    return [f"On the toy, {text} gave MARS identical runs (identical test margins at every seed). The reason is in "
            "the allocation, not the data: with a budget below one unit per pair, largest-remainder rounding gives "
            "each pair 0 or 1 units, so MARS at any such τ picks the same B pairs (the smallest |Δ|); τ matters only "
            "once it concentrates enough to give some pairs a second unit.", ""]


def resolution_lines(comparison, command: str) -> list[str]:
    """Issue 16's resolution targets on real data: MARS − uniform detectable down to 0.6 points; 5 seeds in ≤ 8 min."""
    lines = [f"## {RESOLUTION}", ""]
    if comparison is None:
        return lines + ["*hh-linear was not run in this session.*", ""]
    diff = comparison.difference("mars", "uniform", "test_accuracy")
    if not diff or diff.get("ci_low") is None:
        return lines + ["*No MARS − uniform interval stored yet (too few finished seeds).*", ""]
    runs = {r["run_id"]: r for r in comparison.runs}.values()
    minutes = sum(r.get("wall_seconds") or 0.0 for r in runs) / 60
    sizes = sorted({(r.get("n_train"), r.get("n_test")) for r in runs})
    seeds = len(comparison.points[0]["strategies"]["mars"]["seeds"])
    per_five = minutes * 5 / seeds
    half, mdd = diff["half_width"], diff["mdd"]
    lines += [
        f"`{command}`: MARS − uniform test accuracy {diff['estimate']:+.4f} "
        f"[{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}], half-width {100 * half:.2f} points, **smallest "
        f"detectable difference {100 * mdd:.2f} points** (target ≤ 0.6: {'met' if mdd <= 0.006 else 'not met'}); "
        f"{seeds} seeds, training / test pairs per seed "
        f"{', '.join(f'{a} / {b}' for a, b in sizes[:2])}{' …' if len(sizes) > 2 else ''}; "
        f"{minutes:.1f} minutes of run time for all {len(runs)} runs, **{per_five:.1f} minutes per 5 seeds** "
        f"(target ≤ 8: {'met' if per_five <= 8 else 'not met'}; the runs of a seed stepped together on the shared "
        "2 cores, encoding of the file's texts and every LM generation included, cached generations shared between strategies).",
        "",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run (or continue) experiments")
    run_p.add_argument("names", nargs="+", choices=list(BY_NAME))
    rep = sub.add_parser("report", help="write docs/results.md")
    rep.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    rep.add_argument("--force", action="store_true", help="write even if sections whose comparisons are not "
                     "stored here would lose their results")
    rep.add_argument("--carry", action="store_true", help="keep the sections, verdict rows and not-winning lines "
                     "of experiments not stored here as the old report shows them (marked as carried over)")
    args = parser.parse_args()
    if args.command == "run":
        return run(args.names)
    report(Path(args.out), args.force, args.carry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
