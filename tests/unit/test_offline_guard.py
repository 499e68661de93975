"""The offline guard refuses connections outside loopback and the allow-list, naming the host."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from core.errors import EgressBlocked
from core.offline import TELEMETRY_ENV, allow_hosts, blocked_attempts, configure_guard, guard_mode


@pytest.fixture
def strict_guard() -> Iterator[None]:
    previous = guard_mode()
    configure_guard("strict", [])
    yield
    configure_guard(previous, [])


def test_outside_address_is_refused_and_named(strict_guard: None) -> None:
    with socket.socket() as s, pytest.raises(EgressBlocked, match=r"203\.0\.113\.7:443"):
        s.connect(("203.0.113.7", 443))
    assert "203.0.113.7:443" in blocked_attempts()


def test_name_lookup_of_outside_host_is_refused(strict_guard: None) -> None:
    with pytest.raises(EgressBlocked, match=r"huggingface\.co"):
        socket.getaddrinfo("huggingface.co", 443)


def test_loopback_is_allowed(strict_guard: None) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    with server, socket.create_connection(server.getsockname(), timeout=5):
        pass


def test_configured_host_is_allowed() -> None:
    previous = guard_mode()
    configure_guard("strict", ["192.0.2.10"])
    try:
        with socket.socket() as s:
            s.settimeout(0.01)
            # The guard lets it through; the unroutable documentation address then fails
            # (or times out) in the kernel, which is not an EgressBlocked.
            with pytest.raises(OSError) as info:
                s.connect(("192.0.2.10", 9))
            assert not isinstance(info.value, EgressBlocked)
    finally:
        configure_guard(previous, [])


def test_a_source_server_is_allowed_while_the_guard_stays_strict(strict_guard: None) -> None:
    """A configured source's server joins the allow-list of the running guard (issue 17), which
    never leaves strict mode meanwhile, and refuses the rest as before."""
    allow_hosts(["192.0.2.11"])
    assert guard_mode() == "strict"
    with socket.socket() as s:
        s.settimeout(0.01)
        with pytest.raises(OSError) as info:
            s.connect(("192.0.2.11", 445))
        assert not isinstance(info.value, EgressBlocked)
    with socket.socket() as s, pytest.raises(EgressBlocked, match=r"192\.0\.2\.12"):
        s.connect(("192.0.2.12", 445))


def test_cli_sets_offline_switches_before_heavy_imports() -> None:
    code = (
        "import sys, os; import enclave.cli; "
        "heavy = [m for m in ('torch', 'transformers', 'chromadb', 'gradio', 'unstructured') if m in sys.modules]; "
        f"print(heavy); print({{k: os.environ.get(k) for k in {sorted(TELEMETRY_ENV)!r}}})"
    )
    env = {k: v for k, v in os.environ.items() if k not in TELEMETRY_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    heavy, switches = out.stdout.strip().splitlines()
    assert heavy == "[]"
    for key, value in TELEMETRY_ENV.items():
        assert f"'{key}': '{value}'" in switches
