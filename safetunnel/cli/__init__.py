"""The ``safetunnel`` command group and the CLI's single error boundary.

Subcommands are imported lazily (see ``_COMMANDS``) so that fast paths such as ``safetunnel list``
never pay for importing paramiko and cryptography.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any

import click

from safetunnel import __version__
from safetunnel.errors import SafetunnelError

# name -> "module:attribute". Each command group lives in its own module under safetunnel.cli.
_COMMANDS: dict[str, str] = {
    "share": "safetunnel.cli.share:share_command",
    "demo": "safetunnel.cli.demo:demo_command",
    "gateway": "safetunnel.cli.gateway:gateway_command",
    "creds": "safetunnel.cli.creds:creds",
    "hosts": "safetunnel.cli.hosts:hosts",
    "extend": "safetunnel.cli.tunnels:extend_cmd",
    "kill": "safetunnel.cli.tunnels:kill_cmd",
    "list": "safetunnel.cli.tunnels:list_cmd",
    "log": "safetunnel.cli.log:log_cmd",
    "status": "safetunnel.cli.tunnels:status_cmd",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="safetunnel")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Share a local service through SSH: confirmed, token-gated and time-limited.

    \b
    Quick start (no SSH host needed; uses the built-in loopback gateway):
      safetunnel demo
      safetunnel share 8000 --ttl 30m
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


def report_error(err: SafetunnelError, verbose: bool) -> None:
    """Print an error the way every command does: ``Error:`` then ``hint:`` on stderr."""
    if verbose:
        traceback.print_exception(err)
    click.echo(f"Error: {err.message}", err=True)
    if err.hint:
        click.echo(f"hint: {err.hint}", err=True)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point: run the group inside the one error boundary."""
    args = sys.argv[1:] if argv is None else argv
    verbose = "-v" in args or "--verbose" in args
    try:
        code = cli.main(args=args, prog_name="safetunnel", standalone_mode=False)
    except SafetunnelError as err:
        report_error(err, verbose)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
