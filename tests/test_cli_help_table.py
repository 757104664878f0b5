"""`safetunnel --help` lists commands from a table, without importing them; keep it true."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from safetunnel.cli import _COMMANDS, _SHORT_HELP, LazyGroup, cli


def test_every_command_has_short_help_matching_its_docstring() -> None:
    assert set(_SHORT_HELP) == set(_COMMANDS)
    ctx = click.Context(cli)
    for name in _COMMANDS:
        command = LazyGroup.get_command(cli, ctx, name)
        assert command is not None
        first = (command.short_help or (command.help or "").split("\n\n")[0]).strip()
        assert " ".join(first.split()) == _SHORT_HELP[name], name


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in _COMMANDS:
        assert f"  {name} " in result.output


def test_help_imports_no_command_module() -> None:
    code = (
        "import sys; from safetunnel.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('paramiko', 'safetunnel.cli.')\n"
        "boundary = {'safetunnel.cli.logsetup'}  # the error boundary's half, not a command\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy) and m not in boundary))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
