"""``hosts trust`` and ``hosts setup-key``: the commands that prepare a host once, so later shares
need no prompt.

Registered on the ``hosts`` group by :mod:`safetunnel.cli.hosts`. Prompts live here; the work
is in :mod:`safetunnel.hosts.trust` and :mod:`safetunnel.hosts.setupkey`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click

from safetunnel import paths
from safetunnel.addresses import format_hostport
from safetunnel.errors import CredentialError, HostKeyError, HostKeyUnknown, NotConfirmed
from safetunnel.hosts import setupkey, trust
from safetunnel.hosts.config import load_config, save_config
from safetunnel.hosts.resolve import resolve_host
from safetunnel.secrets.credentials import KeyringAuthSource
from safetunnel.secrets.keystore import KeyringStore
from safetunnel.sharing.engines import choose_engine
from safetunnel.ssh.client import open_session
from safetunnel.ssh.hostkeys import HostKeyStore, host_pattern
from safetunnel.ssh.target import SSHTarget

_KNOWN_HOSTS = click.option(
    "--known-hosts",
    type=click.Path(dir_okay=False),
    help="Read this known_hosts file instead of ~/.ssh/known_hosts.",
)


def _interactive() -> bool:
    return sys.stdin.isatty()


def _say(text: str) -> None:
    click.echo(text, err=True)


@click.command("trust")
@click.argument("host")
@click.option(
    "--fingerprint",
    "expected",
    metavar="SHA256:…",
    help="Pin only if the host key has this fingerprint (for scripts).",
)
@_KNOWN_HOSTS
def trust_command(host: str, expected: str | None, known_hosts: str | None) -> None:
    """Show HOST's SSH host key and pin it in safetunnel's own known_hosts.

    Nothing is sent but the SSH handshake: no login happens. On a terminal you confirm by
    typing yes; without one, --fingerprint must match (exit 4 otherwise).
    """
    user_known = Path(known_hosts) if known_hosts else None
    target = trust.target_for(host)
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
    if not _interactive():
        raise HostKeyUnknown(
            f"The host key of {display} is not known: {key}; not pinned (no terminal to"
            " confirm on).",
            hint=f"Check the fingerprint with the host's administrator, then run "
            f"`safetunnel hosts trust {host} --fingerprint {fingerprint}`.",
        )
    _say("Check this fingerprint with the host's owner before you trust it.")
    answer: str = click.prompt(
        "Type 'yes' to trust and remember this key", default="", show_default=False, err=True
    )
    if answer.strip() != "yes":
        raise HostKeyUnknown(f"The host key of {display} was not trusted; nothing was pinned.")


@click.command("setup-key")
@click.argument("name")
@click.option(
    "--install",
    is_flag=True,
    help="Append the line to ~/.ssh/authorized_keys on the host, over SSH.",
)
@click.option(
    "--unencrypted",
    is_flag=True,
    help="Without a usable keyring, write the key unencrypted (not recommended).",
)
@click.option(
    "--allow-public", is_flag=True, help="Also permit --public shares (remote bind 0.0.0.0)."
)
@click.option("--yes", is_flag=True, help="Install without asking (for scripts).")
@click.option(
    "--identity",
    "login_key",
    type=click.Path(exists=True, dir_okay=False),
    help="Key to log in with for --install (default: as the profile did before).",
)
@click.option(
    "--remote-file",
    default=setupkey.DEFAULT_REMOTE_FILE,
    hidden=True,
    help="authorized_keys path on the host, relative to its home (tests use this).",
)
@_KNOWN_HOSTS
def setup_key_command(
    name: str,
    install: bool,
    unencrypted: bool,
    allow_public: bool,
    yes: bool,
    login_key: str | None,
    remote_file: str,
    known_hosts: str | None,
) -> None:
    """Make a key for profile NAME that can only do safetunnel's remote forward.

    The key is Ed25519, encrypted with a random passphrase kept in the OS keyring, saved under
    safetunnel's config dir and recorded as NAME's identity. The authorized_keys line printed
    allows nothing but a remote forward bound to 127.0.0.1 (and 0.0.0.0 with --allow-public).
    """
    config = load_config()
    config.profile(name)  # a clear error listing the profiles when NAME is not one
    login = resolve_host(name, config)  # before the profile changes: the old credentials
    if login is not None and login_key:
        login = dataclasses.replace(login, identity_files=(login_key,))
    key = setupkey.prepare_key(name, _key_store(unencrypted))
    config.hosts[name].identity = str(key.path)
    save_config(config)
    line = setupkey.authorized_line(key.public_line, allow_public)
    verb = "Created" if key.created else "Reusing"
    _say(f"{verb} {key.path}; host {name} now uses it.")
    _say(
        "Add this line to ~/.ssh/authorized_keys on the host (it allows only safetunnel's "
        "remote forward):"
    )
    click.echo(line)
    if install and login is not None:
        _install(login, key.path, line, remote_file, yes, known_hosts)


def _key_store(unencrypted: bool) -> KeyringStore | None:
    store = KeyringStore()
    status = store.status()
    if status.usable and not unencrypted:
        return store
    if not unencrypted:
        raise CredentialError(
            status.reason or "no usable keyring",
            hint="The key's passphrase must go into a keyring. Install one, "
            "or pass --unencrypted to accept an unencrypted key file.",
        )
    _say(
        "WARNING: writing the key UNENCRYPTED. Anyone who can read the file can open this "
        "tunnel login; it is protected only by its 0600 mode."
    )
    return None


def _install(
    login: SSHTarget, new_key: Path, line: str, remote_file: str, yes: bool, known_hosts: str | None
) -> None:
    where = f"{remote_file} of {login.display}"
    if not yes:
        if not _interactive():
            raise NotConfirmed(
                f"not installed: appending to {where} needs a confirmation",
                hint="Run it in a terminal, or pass --yes.",
            )
        if not click.confirm(f"Append the line to {where}?", default=False, err=True):
            raise NotConfirmed("not installed; add the line by hand")
    # Log in with what worked so far, never with the key that is not installed yet.
    others = tuple(
        f for f in login.identity_files if os.path.abspath(os.path.expanduser(f)) != str(new_key)
    )
    login = dataclasses.replace(login, identity_files=others)
    store = HostKeyStore(Path(known_hosts) if known_hosts else None, paths.own_known_hosts())
    interactive = _interactive()
    auth = KeyringAuthSource(
        KeyringStore(),
        notify=_say,
        host_label=login.label or None,
        prompt=_secret_prompt if interactive else None,
    )
    prompt = _trust_prompt if interactive else None
    with open_session(login, hostkeys=store, on_unknown_key=prompt, auth=auth) as session:
        outcome = setupkey.install_line(session.transport, line, remote_file)
    if outcome == "present":
        _say(f"The line was already in {where}; nothing changed.")
    else:
        _say(f"Installed: appended the line to {where}.")


def _secret_prompt(question: str) -> str | None:
    answer: str = click.prompt(question, hide_input=True, default="", show_default=False, err=True)
    return answer or None


def _trust_prompt(target: SSHTarget, algorithm: str, fingerprint: str) -> bool:
    _say(
        f"The SSH host {target.display} is not known yet.\n  host key: {algorithm} "
        f"{fingerprint}\nCheck this fingerprint with the host's owner before you trust it."
    )
    answer: str = click.prompt(
        "Type 'yes' to trust and remember this key", default="", show_default=False, err=True
    )
    return answer.strip() == "yes"
