"""Turn a run's DataConfig into train and test pairs: a built-in demo suite or a user's file."""

from __future__ import annotations

from mars_core.data.loading import load_pairs, train_test_split
from mars_core.data.pairs import PreferencePair
from mars_core.data.synthetic import text_suite, toy_suite
from mars_core.run.config import DataConfig

DEMO_DEFAULT_SIZES = {"demo:text": 500, "demo:toy": 200}


def load_source(config: DataConfig) -> tuple[list[PreferencePair], list[PreferencePair], str]:
    """(train, test, a one-line description of where the data came from)."""
    if config.source == "demo:text":
        n = config.n_pairs or DEMO_DEFAULT_SIZES[config.source]
        pairs = text_suite(n_pairs=n, noise=config.noise, seed=config.seed)
        description = f"demo text suite ({n} pairs, label noise {config.noise:g}, seed {config.seed})"
    elif config.source == "demo:toy":
        n = config.n_pairs or DEMO_DEFAULT_SIZES[config.source]
        pairs = toy_suite(n_pairs=n, noise=config.noise, seed=config.seed)
        description = f"2-D toy ({n} pairs, label noise {config.noise:g}, seed {config.seed})"
    else:
        pairs, report = load_pairs(config.source, config.format, config.column_map, config.axis)
        if config.n_pairs is not None:
            pairs = pairs[: config.n_pairs]
        description = f"{config.source} ({report.format}, {len(pairs)} pairs, {len(report.skipped)} rows skipped)"
    train, test = train_test_split(pairs, config.test_fraction, config.seed)
    return train, test, description
