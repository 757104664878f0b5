"""``hosts setup-key``: a key for one profile that can only do safetunnel's remote forward.

Registered on the ``hosts`` group by :mod:`safetunnel.cli.hosts`; the work is in
:mod:`safetunnel.hosts.setupkey`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import click

from safetunnel import paths
from safetunnel.cli.hostkeys import KNOWN_HOSTS, interactive, say, secret_prompt, trust_prompt
from safetunnel.errors import CredentialError, NotConfirmed
from safetunnel.hosts import setupkey
from safetunnel.hosts.config import load_config, save_config
from safetunnel.hosts.resolve import resolve_host
from safetunnel.secrets.credentials import KeyringAuthSource
from safetunnel.secrets.keystore import KeyringStore
from safetunnel.ssh.client import open_session
from safetunnel.ssh.hostkeys import HostKeyStore
from safetunnel.ssh.target import SSHTarget


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
@KNOWN_HOSTS
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
    say(f"{verb} {key.path}; host {name} now uses it.")
    say(
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
    say(
        "WARNING: writing the key UNENCRYPTED. Anyone who can read the file can open this "
        "tunnel login; it is protected only by its 0600 mode."
    )
    return None


def _install(
    login: SSHTarget, new_key: Path, line: str, remote_file: str, yes: bool, known_hosts: str | None
) -> None:
    where = f"{remote_file} of {login.display}"
    if not yes:
        if not interactive():
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
    on_tty = interactive()
    auth = KeyringAuthSource(
        KeyringStore(),
        notify=say,
        host_label=login.label or None,
        prompt=secret_prompt if on_tty else None,
    )
    prompt = trust_prompt if on_tty else None
    with open_session(login, hostkeys=store, on_unknown_key=prompt, auth=auth) as session:
        outcome = setupkey.install_line(session.transport, line, remote_file)
    if outcome == "present":
        say(f"The line was already in {where}; nothing changed.")
    else:
        say(f"Installed: appended the line to {where}.")
