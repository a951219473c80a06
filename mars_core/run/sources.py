"""Turn a run's DataConfig into train and test pairs: a built-in demo suite or a user's file(s).

With ``test_source`` the held-out pairs come from their own file and every pair of the main
file trains; otherwise the main file is split. Either way the load reports travel along, so a
caller can show which rows were skipped and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mars_core.data.loading import LoadReport, SplitReport, load_pairs, split_report, train_test_split
from mars_core.data.pairs import PreferencePair
from mars_core.data.text_suite import text_suite
from mars_core.data.toy import toy_suite
from mars_core.run.config import DataConfig

DEMO_DEFAULT_SIZES = {"demo:text": 500, "demo:toy": 200}
TEST_ID_PREFIX = "test:"  # held-out file's pair ids, so they never collide with the training file's


@dataclass
class SourceData:
    train: list[PreferencePair]
    test: list[PreferencePair]
    description: str  # one line: where the data came from
    reports: list[LoadReport] = field(default_factory=list)  # one per file read (none for a demo)
    split: SplitReport | None = None  # pairs and prompts per side, and prompts on both sides

    @property
    def test_prompts_in_train(self) -> int:
        """Held-out prompts that also occur in training (0 for a split; possible with --test-data)."""
        return self.split.shared_prompts if self.split is not None else 0


def load_source(config: DataConfig) -> SourceData:
    """The run's train and test pairs, a description, and the load report of every file read."""
    if config.is_demo:
        n = config.n_pairs or DEMO_DEFAULT_SIZES[config.source]
        suite = text_suite if config.source == "demo:text" else toy_suite
        pairs = suite(n_pairs=n, noise=config.noise, seed=config.seed)
        name = "demo text suite" if config.source == "demo:text" else "2-D toy"
        train, test = train_test_split(pairs, config.test_fraction, config.seed)
        description = f"{name} ({n} pairs, label noise {config.noise:g}, seed {config.seed})"
        return SourceData(train, test, description, [], split_report(train, test))

    pairs, report = _load_file(config, config.source)
    if config.n_pairs is not None:
        pairs = pairs[: config.n_pairs]
    description = f"{config.source} ({report.format}, {len(pairs)} pairs, {len(report.skipped)} rows skipped)"
    if config.test_source is None:
        train, test = train_test_split(pairs, config.test_fraction, config.seed)
        return SourceData(train, test, description, [report], split_report(train, test))

    test, test_report = _load_file(config, config.test_source)
    test = [p.with_changes(id=TEST_ID_PREFIX + p.id) for p in test]
    split = split_report(pairs, test)
    description += (f"; held out: {config.test_source} ({test_report.format}, {len(test)} pairs, "
                    f"{len(test_report.skipped)} rows skipped)")
    if split.shared_prompts:
        description += f"; {split.shared_prompts} held-out prompts also occur in training"
    return SourceData(pairs, test, description, [report, test_report], split)


def _load_file(config: DataConfig, path: str) -> tuple[list[PreferencePair], LoadReport]:
    return load_pairs(path, config.format, config.column_map, config.axis, strict=config.strict)


def write_problems(report: LoadReport, folder: str | Path) -> Path:
    """Every skipped and duplicate row of one file as CSV in ``folder``: the full list behind the few shown."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return report.write_problems(folder / f"{Path(report.path).name}.problems.csv")
