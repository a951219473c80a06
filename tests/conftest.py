"""Shared fixtures: the packaged models load once per test session."""

from __future__ import annotations

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
