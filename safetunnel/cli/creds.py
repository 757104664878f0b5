"""``safetunnel creds``: SSH passwords and key passphrases in the OS keyring.

Secrets come from a hidden prompt on a TTY or one line of stdin otherwise, never from argv (argv is
visible to every user in ``ps``). Values are never printed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from safetunnel.cli.helpfmt import FullHelpGroup
from safetunnel.errors import CredentialError
from safetunnel.hosts.config import load_config
from safetunnel.hosts.resolve import HostRef, locate_host
from safetunnel.secrets.credentials import KeyringStore, key_is_encrypted, verify_passphrase
from safetunnel.secrets.names import SecretName

_KEY_OPTION = click.option(
    "--passphrase-for",
    "key_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Act on this private key's passphrase instead of the password.",
)
_DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")


@click.group(cls=FullHelpGroup)
def creds() -> None:
    """Secrets in the OS keyring: SSH passwords and key passphrases."""


@creds.command("set")
@click.argument("host")
@_KEY_OPTION
def set_secret(host: str, key_file: str | None) -> None:
    """Store the SSH password for HOST, or a key passphrase with --passphrase-for.

    The secret is read from a hidden prompt, or from one line of stdin when stdin is not a TTY.
    """
    store = KeyringStore()
    status = store.require_usable()  # refuse before asking for anything
    ref = _resolve(host)
    if key_file:
        name, what = _passphrase_to_store(key_file)
        secret = _read_secret(f"Passphrase for {key_file}", confirm=False)
        if not verify_passphrase(key_file, secret):
            raise CredentialError(
                f"that passphrase does not unlock {key_file}; nothing was stored",
                hint="Check it with `ssh-keygen -y -f KEYFILE`.",
            )
    else:
        name = SecretName.password(ref.user, ref.hostname, ref.port)
        what = f"the SSH password for {ref.display}"
        secret = _read_secret(f"SSH password for {ref.display}", confirm=True)
    store.set(name, secret)
    click.echo(f"Stored {what} in the keyring (backend: {status.name}).")


@creds.command("delete")
@click.argument("host")
@_KEY_OPTION
def delete_secret(host: str, key_file: str | None) -> None:
    """Remove the stored password for HOST (or the key passphrase with --passphrase-for)."""
    store = KeyringStore()
    store.require_usable()
    ref = _resolve(host)
    name, what = (
        _passphrase_names(key_file)
        if key_file
        else (
            SecretName.password(ref.user, ref.hostname, ref.port),
            f"the SSH password for {ref.display}",
        )
    )
    if store.delete(name):
        click.echo(f"Deleted {what} from the keyring.")
    else:
        click.echo(f"Nothing stored for {what}.")


@creds.command("status")
@click.argument("host")
def status(host: str) -> None:
    """Say which secrets for HOST are stored, and where. Never shows a value."""
    ref = _resolve(host)
    store = KeyringStore()
    backend = store.status()
    if not backend.usable:
        click.echo(f"keyring: {backend.name} (not usable)")
        click.echo(backend.reason or "")
        return
    click.echo(f"keyring: {backend.name}")
    stored = store.get(SecretName.password(ref.user, ref.hostname, ref.port)) is not None
    click.echo(f"password for {ref.display}: {_stored(stored)}")
    for key in _candidate_keys(ref):
        stored = store.get(SecretName.passphrase(key)) is not None
        click.echo(f"passphrase for {key}: {_stored(stored)}")


def _resolve(host: str) -> HostRef:
    return locate_host(host, load_config())


def _passphrase_names(key_file: str) -> tuple[SecretName, str]:
    name = SecretName.passphrase(key_file)
    return name, f"the passphrase for {name.subject}"


def _passphrase_to_store(key_file: str) -> tuple[SecretName, str]:
    if not key_is_encrypted(key_file):
        raise CredentialError(f"{key_file} is not encrypted; there is no passphrase to store")
    return _passphrase_names(key_file)


def _read_secret(label: str, confirm: bool) -> str:
    if sys.stdin.isatty():
        secret: str = click.prompt(label, hide_input=True, confirmation_prompt=confirm)
    else:
        # Exactly one line: the newline ends it; spaces inside a password are kept.
        secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise CredentialError(
            "no secret given; nothing was stored",
            hint="Type it at the prompt, or pipe one line on stdin.",
        )
    return secret


def _candidate_keys(ref: HostRef) -> list[str]:
    """Keys this host would try: its profile/alias identities, else the usual default keys."""
    keys = [os.path.abspath(k) for k in ref.identity_files]
    ssh_dir = Path(os.path.expanduser("~")) / ".ssh"
    keys += [str(ssh_dir / name) for name in _DEFAULT_KEYS if (ssh_dir / name).is_file()]
    return list(dict.fromkeys(keys))


def _stored(flag: bool) -> str:
    return "stored" if flag else "not stored"
