"""Loopback helpers shared by the tests: a free port, and the check that a test made no attempt
to leave loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from core.offline import blocked_attempts, install_guard


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (free to start a server on, or closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def nothing_left_loopback() -> Iterator[None]:
    """Autouse where imported: the strict guard is on, and the test refused no connection."""
    install_guard("strict")
    before = len(blocked_attempts())
    yield
    assert blocked_attempts()[before:] == []
