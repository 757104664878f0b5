from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from e2e import run_cli

from safetunnel import __version__, errors

EXPECTED_CODES = {
    errors.SafetunnelError: 1,
    errors.NotConfirmed: 3,
    errors.HostKeyUnknown: 4,
    errors.HostKeyChanged: 4,
    errors.AuthFailed: 5,
    errors.ForwardRefused: 6,
    errors.NothingListening: 7,
    errors.ConnectionLost: 8,
}


@pytest.mark.parametrize(("cls", "code"), EXPECTED_CODES.items())
def test_exit_codes_follow_design(cls: type[errors.SafetunnelError], code: int) -> None:
    err = cls("boom", hint="do this")
    assert err.exit_code == code
    assert isinstance(err, errors.SafetunnelError)
    assert str(err) == "boom"
    assert err.hint == "do this"


def test_default_hint_is_used() -> None:
    assert "safetunnel list" in (errors.TunnelNotFound("no such tunnel").hint or "")


def console_script() -> str:
    return str(Path(sys.executable).with_name("safetunnel"))


def test_console_script_version() -> None:
    out = subprocess.run(
        [console_script(), "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in out.stdout


def test_module_entry_point_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "safetunnel", "--help"], capture_output=True, text=True, check=True
    )
    assert "Usage: safetunnel" in out.stdout


def test_unknown_command_is_usage_error() -> None:
    out = run_cli("no-such-command")
    assert out.returncode == 2 and out.stdout == ""
    assert "No such command" in out.stderr
