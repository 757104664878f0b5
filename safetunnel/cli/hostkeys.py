"""``hosts trust``, and the terminal prompts of the ``hosts`` commands that log in.

Registered on the ``hosts`` group by :mod:`safetunnel.cli.hosts`. The work is in
:mod:`safetunnel.hosts.trust`; ``hosts setup-key`` and ``hosts add`` reuse the prompts here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from safetunnel import paths
from safetunnel.addresses import format_hostport
from safetunnel.errors import (
    HostKeyChanged,
    HostKeyError,
    HostKeyUnknown,
)
from safetunnel.hosts import answers, trust
from safetunnel.hosts.config import load_config
from safetunnel.sharing.engines import choose_engine
from safetunnel.ssh.hostkeys import host_pattern
from safetunnel.ssh.target import SSHTarget

KNOWN_HOSTS = click.option(
    "--known-hosts",
    type=click.Path(dir_okay=False),
    help="Read this known_hosts file instead of ~/.ssh/known_hosts.",
)


def interactive() -> bool:
    return sys.stdin.isatty()


def say(text: str) -> None:
    click.echo(text, err=True)


@click.command("trust")
@click.argument("host")
@click.option(
    "--fingerprint",
    "expected",
    metavar="SHA256:…",
    help="Pin only if the host key has this fingerprint (for scripts).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Replace the key pinned for HOST (after a changed-key error); needs --fingerprint.",
)
@KNOWN_HOSTS
def trust_command(host: str, expected: str | None, replace: bool, known_hosts: str | None) -> None:
    """Show HOST's SSH host key and pin it in safetunnel's own known_hosts.

    Nothing is sent but the SSH handshake: no login happens. On a terminal you confirm by
    typing yes (or pasting the fingerprint); without one, --fingerprint must match (exit 4
    otherwise). --replace swaps a key pinned earlier for the one HOST shows now, only when that
    one has the --fingerprint you checked with the host's administrator.
    """
    user_known = Path(known_hosts) if known_hosts else None
    target = trust.target_for(host)
    if not replace:
        _trust_host(target, host, expected, user_known)
        return
    if expected is None:
        raise click.UsageError("--replace needs --fingerprint SHA256:… (the checked new key)")
    removed = trust.unpin(host_pattern(target.hostname, target.port))
    try:
        _trust_host(target, host, expected, user_known)
    except HostKeyChanged as err:
        trust.restore(removed)
        where = user_known or Path("~/.ssh/known_hosts").expanduser()
        name = host_pattern(target.hostname, target.port)
        raise HostKeyChanged(
            f"{err.message} The old key is pinned in {where}, which safetunnel never writes.",
            hint=f"Once the new key is checked, remove the old line with `ssh-keygen -R "
            f"'{name}' -f {where}`, then run this again.",
        ) from None
    except BaseException:
        trust.restore(removed)
        raise
    if removed:
        say(f"Replaced {len(removed)} earlier key line(s) for {target.display}.")


def _trust_host(
    target: SSHTarget, host: str, expected: str | None, user_known: Path | None
) -> None:
    if choose_engine(None, load_config(), builtin=False) == "openssh":
        _trust_with_openssh(target, host, expected, user_known)
        return
    info = trust.inspect_host(host, user_known)
    click.echo(f"{info.target.display} presents host key {info.algorithm} {info.fingerprint}")
    if expected is not None:
        trust.check_fingerprint(info, expected)  # exit 4 on a mismatch, pinned or not
        click.echo("The fingerprint matches.")
    if info.state == "known":
        click.echo(f"This key is already trusted for {info.name}; nothing to do.")
        return
    if expected is None:
        _confirm_trust(info.target.display, f"{info.algorithm} {info.fingerprint}", host)
    click.echo(f"Pinned {info.name} in {trust.pin(info)}.")


def _trust_with_openssh(
    target: SSHTarget, host: str, expected: str | None, known_hosts: Path | None
) -> None:
    """The same rules through OpenSSH, hop by hop: ``--fingerprint`` vouches for HOST's own key
    only; a jump host's unknown key needs a typed yes (or its own ``hosts trust``)."""
    pinned: list[str] = []

    def decide(hop: SSHTarget, key_type: str, fingerprint: str) -> bool:
        click.echo(f"{hop.display} presents host key {key_type} {fingerprint}")
        if hop is target and expected is not None:
            _check_expected(target, key_type, fingerprint, expected)
        else:
            trust_cmd = host if hop is target else format_hostport(hop.hostname, hop.port)
            _confirm_trust(hop.display, f"{key_type} {fingerprint}", trust_cmd)
        pinned.append(host_pattern(hop.hostname, hop.port))
        return True

    verified = trust.verify_with_openssh(target, known_hosts, decide)
    own = paths.own_known_hosts()
    if verified.state == "pinned":
        key = f"{verified.key_type} {verified.fingerprint}"
        click.echo(f"{target.display} presents host key {key}")
        if expected is not None:
            _check_expected(target, verified.key_type, verified.fingerprint, expected)
        if verified.certified:
            click.echo("It is certified by a CA that your known_hosts trusts.")
        click.echo(f"This key is already trusted for {target.display}; nothing to do.")
    for name in pinned:
        click.echo(f"Pinned {name} in {own}.")


def _check_expected(target: SSHTarget, key_type: str, fingerprint: str, expected: str) -> None:
    wanted = trust.normalize_fingerprint(expected)
    if wanted != fingerprint:
        raise HostKeyError(
            f"{target.display} presented {key_type} {fingerprint}, not the expected {wanted}."
            " Nothing was pinned.",
            hint="Check the fingerprint with the host's administrator; a mismatch can mean "
            "someone is intercepting the connection.",
        )
    click.echo("The fingerprint matches.")


def _confirm_trust(display: str, key: str, host: str) -> None:
    """A typed yes on a terminal; without one, exit 4 showing what --fingerprint to pass."""
    fingerprint = key.split()[-1]
    if not interactive():
        raise HostKeyUnknown(
            f"The host key of {display} is not known: {key}; not pinned (no terminal to"
            " confirm on).",
            hint=f"Check the fingerprint with the host's administrator, then run "
            f"`safetunnel hosts trust {host} --fingerprint {fingerprint}`.",
        )
    say("Check this fingerprint with the host's owner before you trust it.")
    if not answers.ask_trust(_ask, fingerprint):
        raise HostKeyUnknown(f"The host key of {display} was not trusted; nothing was pinned.")


def secret_prompt(question: str) -> str | None:
    answer: str = click.prompt(question, hide_input=True, default="", show_default=False, err=True)
    return answer or None


def trust_prompt(target: SSHTarget, algorithm: str, fingerprint: str) -> bool:
    """The terminal's question about an unknown host key (``hosts add``, ``setup-key``)."""
    say(
        f"The SSH host {target.display} is not known yet.\n  host key: {algorithm} "
        f"{fingerprint}\nCheck this fingerprint with the host's owner before you trust it."
    )
    return answers.ask_trust(_ask, fingerprint)


def _ask(question: str) -> str:
    """One answer; end of input (Ctrl-D) is no answer, which declines."""
    try:
        answer: str = click.prompt(question, default="", show_default=False, err=True)
    except click.exceptions.Abort:
        return ""
    return answer
