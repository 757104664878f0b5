"""``safetunnel connect``: thin command; the listener and relays live in safetunnel.receiving.

The ticket holds the token, so it is read from stdin (``-``) or a 0600 file and never taken from
the command line: every local user can read every process's argv (``ps``) for as long as it
runs, and shells keep it in their history.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import click

from safetunnel.addresses import format_hostport
from safetunnel.cli.signals import StopSignalScope
from safetunnel.durations import format_remaining
from safetunnel.errors import UsageError
from safetunnel.hosts.config import ENGINES, load_config
from safetunnel.hosts.resolve import resolve_host
from safetunnel.receiving.dialer import WILDCARDS, Dialer, share_destination
from safetunnel.receiving.opensshdial import OpenSSHDialer
from safetunnel.receiving.paramikodial import ParamikoDialer
from safetunnel.receiving.receiver import Receiver
from safetunnel.receiving.tlsdial import TlsDialer
from safetunnel.secrets.credentials import KeyringAuthSource
from safetunnel.ssh import openssh
from safetunnel.ssh.client import open_pinned_session
from safetunnel.ssh.session import SSHSession
from safetunnel.ssh.target import SSHTarget
from safetunnel.tickets import Ticket, decode
from safetunnel.timefmt import iso_z, utc_now

_ARGV_REFUSED = (
    "a ticket on the command line is readable by every local user (ps) and kept in your shell "
    "history; it was not used"
)


@click.command("connect")
@click.argument("ticket", required=False, metavar="TICKET")
@click.option(
    "--ticket-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the ticket from this file (mode 0600) instead of stdin.",
)
@click.option(
    "--local-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port on 127.0.0.1 to listen on; 0 picks a free one.",
)
@click.option("--host", help="Reach the SSH host as this instead: [user@]host[:port] or alias.")
@click.option("--identity", type=click.Path(exists=True, dir_okay=False), help="SSH key file.")
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default=None,
    help="SSH engine: OpenSSH's ssh client (your ssh_config, ProxyJump, agent), paramiko, or "
    "auto (default: engine in config.toml, else auto). Not used for a public TLS share.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON events on stdout, one per line.")
def connect_command(
    ticket: str | None,
    ticket_file: Path | None,
    local_port: int,
    host: str | None,
    identity: str | None,
    engine: str | None,
    as_json: bool,
) -> None:
    """Reach a share from a ticket on a local port; any TCP client works without a token.

    TICKET is `-`: paste it (hidden on a terminal) or pipe it in, e.g.
    `safetunnel connect - < ticket.txt`; or use --ticket-file. The ticket itself is never
    accepted as an argument, because every local user could read it in the process list.

    Your own SSH login reaches the host, with your ssh_config and keys; the host key must be the
    one in the ticket (no known_hosts is asked). A public share whose ticket has a TLS pin is
    reached directly with TLS, pinned to it. Every local user of this machine can use the
    local port while it is open, as with `ssh -L`.

    \b
    Exit codes:
      0  the ticket expired while connected, or SIGTERM/SIGHUP
      1  the share or SSH host could not be reached, a proxy paramiko cannot follow
      2  malformed or expired ticket, ticket on the command line
      4  the SSH host showed a host key other than the ticket's, or a public share a TLS
         key other than the ticket's pin
      5  SSH authentication failed
      8  SSH connection lost and not re-established
      130  Ctrl-C
    """
    parsed = decode(_read_ticket(ticket, ticket_file))
    parsed.check_fresh(utc_now())
    target = _target(parsed, host, identity)
    sys.exit(_serve(parsed, target, local_port, engine, as_json))


def _read_ticket(argument: str | None, path: Path | None) -> str:
    if argument not in (None, "-"):
        raise UsageError(
            _ARGV_REFUSED,
            hint="Run `safetunnel connect -` and paste it, or use --ticket-file FILE "
            "(and clear it from your shell history).",
        )
    if (argument is None) == (path is None):
        raise UsageError("give the ticket as `-` (stdin) or with --ticket-file, one of them")
    if path is not None:
        return _read_file(path)
    if sys.stdin.isatty():
        text: str = click.prompt("Ticket", hide_input=True, err=True)
        return text
    return sys.stdin.readline()


def _read_file(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as file:
            mode = os.fstat(file.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise UsageError(
                    f"{path} can be read by other users, and a ticket is a secret",
                    hint=f"chmod 600 {path}",
                )
            return file.read(4096)
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read the ticket from {path}: {err}") from None


def _target(ticket: Ticket, host: str | None, identity: str | None) -> SSHTarget:
    """The SSH host as the recipient reaches it: --host, else the ticket's name, looked up in
    the recipient's own profiles and ssh_config."""
    text = host or _ticket_host(ticket)
    target = resolve_host(text, load_config())
    if target is None:  # only a missing host means the built-in gateway
        raise UsageError("the ticket names no SSH host")
    if identity:
        target = dataclasses.replace(target, identity_files=(identity,))
    return target


def _ticket_host(ticket: Ticket) -> str:
    if ticket.ssh_port is None:
        return ticket.ssh_host
    user, at, name = ticket.ssh_host.rpartition("@")
    return f"{user}{at}{format_hostport(name, ticket.ssh_port)}"


def _serve(
    ticket: Ticket, target: SSHTarget, local_port: int, engine: str | None, as_json: bool
) -> int:
    view = _View(as_json)
    receiver = Receiver(ticket, _dialer(ticket, target, engine, view), local_port)
    signals = _Signals(receiver)
    with signals:
        try:
            signals.starting = True
            host, port = receiver.start()
            signals.starting = False
            view.listening(format_hostport(host, port), ticket, target)
            while not receiver.wait(1.0):
                view.status(receiver)
        finally:
            signals.starting = False
            receiver.close()
            view.clear()
    if receiver.error is not None:
        raise receiver.error
    view.stopped("signal" if signals.caught else "expired")
    return 130 if signals.interrupted else 0


def _dialer(ticket: Ticket, target: SSHTarget, engine: str | None, view: _View) -> Dialer:
    """How connections reach the share: TLS straight to a public share that serves it, else SSH
    with the chosen engine; each pinned to what the ticket names."""
    if ticket.tls_pin is not None and ticket.remote_bind in WILDCARDS:
        return TlsDialer((target.hostname, ticket.remote_port), ticket.tls_pin, view.say)
    destination = share_destination(ticket)
    if _engine(engine) == "openssh":
        interactive = sys.stdin.isatty()
        return OpenSSHDialer(
            target, ticket.host_key, destination, interactive=interactive, notify=view.say
        )
    label = target.label or target.display
    if sys.stdin.isatty():  # a passphrase or password not in the keyring is asked for
        auth = KeyringAuthSource(prompt=_secret_prompt, notify=view.say, host_label=label)
    else:
        auth = KeyringAuthSource(notify=view.say, host_label=label)

    def open_session() -> SSHSession:
        return open_pinned_session(target, ticket.host_key, ticket.key_type, auth)

    return ParamikoDialer(open_session, destination, label, view.say)


def _engine(requested: str | None) -> str:
    """``--engine``, else config.toml's ``engine``, else auto: OpenSSH when a usable ``ssh``
    is on PATH (it reaches whatever ``ssh HOST`` reaches), paramiko otherwise."""
    choice = requested or load_config().engine
    if choice == "paramiko":
        return "paramiko"
    if openssh.usable():
        return "openssh"
    if choice == "openssh":
        raise UsageError(
            "--engine openssh needs a recent OpenSSH ssh client on PATH",
            hint="Install or update the OpenSSH client, or use --engine paramiko.",
        )
    return "paramiko"


def _secret_prompt(question: str) -> str | None:
    answer: str = click.prompt(question, hide_input=True, default="", show_default=False, err=True)
    return answer or None


class _View:
    """What the user sees: JSON events on stdout with --json, human lines on stderr always."""

    def __init__(self, as_json: bool) -> None:
        self._json = as_json
        self._status_shown = False

    def _event(self, **data: Any) -> None:
        if self._json:
            click.echo(json.dumps(data, separators=(",", ":")))

    def say(self, text: str) -> None:
        self.clear()
        click.echo(text, err=True)

    def listening(self, local: str, ticket: Ticket, target: SSHTarget) -> None:
        expires = iso_z(ticket.expires_at)
        self._event(event="listening", local=local, expires_at=expires)
        where = format_hostport(ticket.remote_bind, ticket.remote_port)
        self.say(
            f"Listening on {local}: connections reach the share at {where} on {target.display}.\n"
            f"Point any client there, without a token; until {expires}. Ctrl-C stops."
        )

    def status(self, receiver: Receiver) -> None:
        if self._json or not sys.stderr.isatty():
            return
        line = (
            f"{format_remaining(receiver.remaining)} left · {receiver.open_connections} open · "
            f"{receiver.total} total · Ctrl-C stops"
        )
        sys.stderr.write("\r\x1b[2K" + line)
        sys.stderr.flush()
        self._status_shown = True

    def clear(self) -> None:
        if self._status_shown:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
            self._status_shown = False

    def stopped(self, reason: str) -> None:
        self._event(event="stopped", reason=reason, ended_at=iso_z(utc_now()))
        self.say("The ticket expired; connect stopped." if reason == "expired" else "Stopped.")


class _Signals(StopSignalScope):
    """SIGINT, SIGTERM and SIGHUP stop the receiver, so its close() runs on the main thread.
    While it starts they cancel the start too, as they cancel a share's setup: a login that
    hangs (an outage, a password asked on the terminal) would otherwise hold connect until it
    gave up by itself. The start closes what it had opened on the way out."""

    def __init__(self, receiver: Receiver) -> None:
        super().__init__()
        self._receiver = receiver
        self.starting = False

    def stop(self) -> None:
        self._receiver.stop()
        if self.starting:
            self.starting = False
            raise click.exceptions.Exit(130 if self.interrupted else 0)
