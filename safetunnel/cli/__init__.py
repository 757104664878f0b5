"""The ``safetunnel`` command group and the CLI's single error boundary.

Subcommands are imported lazily (see ``_COMMANDS``) so that fast paths such as ``safetunnel list``
never pay for importing paramiko and cryptography.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from typing import Any

import click

from safetunnel import __version__
from safetunnel.cli import logsetup
from safetunnel.errors import SafetunnelError
from safetunnel.ssh._invoke import block_for_paramiko

# name -> "module:attribute". Each command group lives in its own module under safetunnel.cli.
_COMMANDS: dict[str, str] = {
    "share": "safetunnel.cli.share:share_command",
    "connect": "safetunnel.cli.connect:connect_command",
    "demo": "safetunnel.cli.demo:demo_command",
    "gateway": "safetunnel.cli.gateway:gateway_command",
    "creds": "safetunnel.cli.creds:creds",
    "hosts": "safetunnel.cli.hosts:hosts",
    "extend": "safetunnel.cli.tunnels:extend_cmd",
    "kill": "safetunnel.cli.tunnels:kill_cmd",
    "list": "safetunnel.cli.tunnels:list_cmd",
    "log": "safetunnel.cli.log:log_cmd",
    "status": "safetunnel.cli.tunnels:status_cmd",
    "ticket": "safetunnel.cli.recipients:ticket_cmd",
    "revoke": "safetunnel.cli.recipients:revoke_cmd",
}

# Short help for `safetunnel --help`, kept here so that listing the commands imports none of them
# (importing them all pulled in paramiko and cryptography: 0.38 s for --help). Each entry must be
# the first paragraph of the command's docstring; tests/test_cli_help_table.py checks they agree.
_SHORT_HELP: dict[str, str] = {
    "share": "Share the service on 127.0.0.1:PORT through an SSH host, after confirmation.",
    "connect": "Reach a share from a ticket on a local port; any TCP client works without a token.",
    "demo": "Serve a demo page on 127.0.0.1:62893 and share it for 5 minutes through this machine.",
    "gateway": "Run the built-in SSH gateway: it accepts only remote forwards, bound to loopback.",
    "creds": "Secrets in the OS keyring: SSH passwords and key passphrases.",
    "hosts": "Saved SSH hosts (profiles) and the default host.",
    "extend": "Move a running tunnel's expiry later (never past max_ttl from its start).",
    "kill": "Stop tunnels by id (or all), waiting until each has exited and cleaned up.",
    "list": "List running tunnels (stale entries are cleaned up). CONNS is open/total.",
    "log": "Show audit entries (all tunnels, or one), oldest first.",
    "status": "Show a tunnel's record, live counters and last connections.",
    "ticket": "Mint a token for one recipient of a running share and print its ticket.",
    "revoke": "Withdraw a recipient's token at once and close its open connections.",
}


# Summaries are shown whole and wrapped, never cut with "..." (as safetunnel.cli.helpfmt does for
# the sub-groups; not imported here, so that --help loads no module of safetunnel.cli).
_NO_CUT = 10_000


class StdoutClosed(Exception):
    """Whoever read stdout went away (``safetunnel log | head``).

    Not an OSError: click's own main turns a broken pipe into exit 1, and this is no failure.
    """


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as err:
            raise StdoutClosed from err

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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, from ``_SHORT_HELP``: no command module is imported."""
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            if name in _COMMANDS and name in _SHORT_HELP:
                rows.append((name, _SHORT_HELP[name]))  # whole; write_dl wraps, never cuts
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(_NO_CUT)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


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


def _os_error_text(err: OSError) -> str:
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{err.strerror or err}"


def _quiet_closed_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point: run the group inside the one error boundary."""
    args = sys.argv[1:] if argv is None else argv
    block_for_paramiko()  # invoke costs ~13 MB RSS per share; see safetunnel.ssh._invoke
    verbose = "-v" in args or "--verbose" in args
    logsetup.setup(verbose)
    try:
        code = cli.main(args=args, prog_name="safetunnel", standalone_mode=False)
    except StdoutClosed:
        _quiet_closed_stdout()  # `safetunnel log | head`: the reader had enough; not an error
        sys.exit(0)
    except SafetunnelError as err:
        report_error(err, verbose)
        sys.exit(err.exit_code)
    except OSError as err:
        # A state or config dir that broke under us (read-only, full, gone): one line, not a
        # traceback; what failed and where is all the user can act on.
        report_error(SafetunnelError(_os_error_text(err)), verbose)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
