"""Shared fixtures: the packaged models load once per test session."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


@pytest.fixture(scope="session")
def text_encoder():
    """The packaged MiniLM sentence encoder (real weights, loaded once)."""
    from mars_core.model.encoders import TextEncoder

    return TextEncoder()


class _CollectWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def transformers_warnings():
    """The warning messages transformers logs during a test (its own handler does not propagate outside CI)."""
    collect = _CollectWarnings()
    logger = logging.getLogger("transformers")
    logger.addHandler(collect)
    try:
        yield collect.messages
    finally:
        logger.removeHandler(collect)
