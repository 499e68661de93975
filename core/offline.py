"""Offline by construction: telemetry switched off and a guard on every outgoing connection.

`disable_telemetry()` must run before any heavy library is imported (the CLI does it first).
`install_guard()` adds an audit hook on `socket.connect` that refuses, or logs, any connection
to a host that is neither loopback nor on the allow-list. Audit hooks cannot be removed, so the
guard is installed once per process and re-configured with `configure_guard()`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse

from core.errors import EgressBlocked

log = logging.getLogger(__name__)

TELEMETRY_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ORT_DISABLE_TELEMETRY": "1",
    "ANONYMIZED_TELEMETRY": "False",  # chromadb's setting, read from the environment
    "TOKENIZERS_PARALLELISM": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_TRACING": "false",
}


def disable_telemetry() -> None:
    """Set every switch that keeps the libraries we use from phoning home or downloading."""
    os.environ.update(TELEMETRY_ENV)


class _Guard:
    def __init__(self) -> None:
        self.mode = "off"
        self.allowed: set[str] = set()
        self.blocked: list[str] = []
        self.lock = threading.Lock()

    def allows(self, host: str) -> bool:
        host = host.strip("[]").lower()
        if host in self.allowed or host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False

    def check(self, address: Any) -> None:
        if self.mode == "off" or not isinstance(address, tuple) or not address:
            return  # AF_UNIX paths and the like never leave the machine
        host = str(address[0])
        if self.allows(host):
            return
        target = f"{host}:{address[1]}" if len(address) > 1 else host
        with self.lock:
            self.blocked.append(target)
        message = (
            f"offline guard: connection to {target} refused; Enclave only talks to loopback and "
            "configured services (network.allowed_hosts, llm.base_url, store.host, the servers of "
            "configured sources, auth.ldap.urls and the auth.oidc issuer)"
        )
        # Logged in both modes: a library may swallow the exception, the log line stays.
        log.warning(message)
        if self.mode == "strict":
            raise EgressBlocked(message)


_guard = _Guard()
_installed = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect":
        _guard.check(args[1])
    elif event == "socket.getaddrinfo" and _guard.mode != "off":
        host = args[0]
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if host and not _guard.allows(str(host)):
            _guard.check((str(host), args[1]))


def _resolve(host: str) -> set[str]:
    names = {host.lower()}
    try:
        ipaddress.ip_address(host)
        return names
    except ValueError:
        pass
    try:
        for info in socket.getaddrinfo(host, None):
            names.add(str(info[4][0]).lower())
    except OSError:
        pass  # an unresolvable host is simply not reachable; the name stays allowed
    return names


def host_of(url: str | None) -> str | None:
    if not url:
        return None
    return urlparse(url if "://" in url else f"http://{url}").hostname


def configure_guard(mode: str, allowed_hosts: Iterable[str] = ()) -> None:
    """Set the guard's mode and allow-list (names are resolved now, before the guard bites)."""
    _guard.mode = "off"  # resolving the allow-list must not trip the previous configuration
    allowed: set[str] = set()
    for host in allowed_hosts:
        if host:
            allowed |= _resolve(host)
    _guard.allowed = allowed
    _guard.mode = mode


def allow_hosts(hosts: Iterable[str]) -> None:
    """Add `hosts` (a configured source's server) to the allow-list of the running guard, with
    their addresses. The guard stays on: each name is allowed before it is resolved, so its own
    lookup passes."""
    for host in hosts:
        if not host or _guard.allows(host):
            continue
        name = host.strip("[]").lower()
        with _guard.lock:
            _guard.allowed = _guard.allowed | {name}
        addresses = _resolve(name)
        with _guard.lock:
            _guard.allowed = _guard.allowed | addresses


def install_guard(mode: str = "strict", allowed_hosts: Iterable[str] = ()) -> None:
    """Install the audit hook once per process and configure it."""
    global _installed
    configure_guard(mode, allowed_hosts)
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True


def blocked_attempts() -> list[str]:
    """Targets refused (strict) or reported (warn) since the process started."""
    with _guard.lock:
        return list(_guard.blocked)


def guard_mode() -> str:
    return _guard.mode
