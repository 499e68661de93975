"""The admin channel's allow-list, read from the commands themselves: every command that writes
the store (store_commands.COMMANDS) takes over the channel exactly the arguments of its
dataclass, each of a type the channel checks. A new command, or a new argument of a type the
channel has no check for, fails here before it can be served. The refusals themselves are
tested against a real server in tests/integration/test_admin_channel.py."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from enclave.admin_channel import PROTOCOL, argument_types, parse_request
from enclave.store_commands import COMMANDS, Caller

CALLER = Caller("root", 0, 1, "admin channel")
SAMPLES: dict[Any, Any] = {bool: True, str: "a", str | None: None, list[str]: ["a", "b"]}


def line(command: str, args: dict[str, Any]) -> bytes:
    return json.dumps({"protocol": PROTOCOL, "command": command, "args": args, "cwd": "/srv"}).encode()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_argument_of_every_command_has_a_type_the_channel_checks(command: str) -> None:
    kinds = argument_types(command)
    unchecked = {name: kind for name, kind in kinds.items() if kind not in SAMPLES}
    assert not unchecked, f"`enclave {command}`: give the admin channel a check for {unchecked}"
    args = {name: SAMPLES[kind] for name, kind in kinds.items()}
    call = parse_request(line(command, args), CALLER)
    assert call.command == command and call.caller == CALLER and str(call.cwd) == "/srv"
    assert dataclasses.asdict(call.args) == args


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_value_of_another_type_is_refused_for_every_argument(command: str) -> None:
    kinds = argument_types(command)
    valid = {name: SAMPLES[kind] for name, kind in kinds.items()}
    for name, kind in kinds.items():
        for wrong in (1, 2.5, {"a": 1}, [1], "a" if kind is bool else False):
            if kind == (str | None) and wrong is None:
                continue
            with pytest.raises(ValueError, match=f"argument '{name}' of `enclave {command}`"):
                parse_request(line(command, {**valid, name: wrong}), CALLER)
