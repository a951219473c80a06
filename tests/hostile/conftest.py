"""Fixtures of the hostile suite: loopback servers that misbehave, closed after each test."""

from __future__ import annotations

import pytest

from tests.hostile.servers import HostileServer

KEY = "sk-hostile-0123456789abcdefXYZ"  # what the servers echo back; must never leave the process


@pytest.fixture
def hostile():
    servers: list[HostileServer] = []

    def start(mode: str, **kwargs) -> HostileServer:  # noqa: ANN003
        servers.append(HostileServer(mode, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
