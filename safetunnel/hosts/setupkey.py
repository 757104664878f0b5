"""``hosts setup-key``: a dedicated key that can do nothing but safetunnel's remote forward.

The authorized_keys options were checked against a real OpenSSH sshd (9.2; see
tests/test_setup_key.py, which re-checks them on every run):

* ``restrict,port-forwarding`` re-enables *both* directions of forwarding, and runs commands.
  ``restrict`` alone keeps exec working (it only drops the pty), and ``port-forwarding`` opens
  ``direct-tcpip`` to anywhere. So the line adds ``permitopen`` and ``command``.
* ``permitlisten`` compares the host string literally with the requested bind address:
  ``127.0.0.1:*`` permits exactly the ``127.0.0.1`` bind safetunnel requests, for port 0 (the
  server picks) and for any fixed ``--remote-port``; it refuses ``localhost`` and ``0.0.0.0``.
  ``--public`` requests ``0.0.0.0`` and needs ``0.0.0.0:*`` as well. A bare ``*`` would permit
  every bind, so it is never emitted.
* Port ``0`` is not a valid permitlisten/permitopen port, and neither is ``none`` in
  authorized_keys: sshd then rejects the *whole key* ("invalid permission port"). Local forwards
  are therefore pinned to ``invalid.invalid:1``: the ``.invalid`` top-level name is reserved so
  that it never resolves.
* ``command="/bin/false"``: a session (shell or exec) runs only that and fails. A forward needs no
  session, so safetunnel never notices it.
"""

from __future__ import annotations

import re
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safetunnel import fsutil, paths
from safetunnel.addresses import LOOPBACK_BIND, PUBLIC_BIND
from safetunnel.errors import ConfigError, SSHError
from safetunnel.secrets.keystore import KeyringStore
from safetunnel.secrets.names import SecretName

LISTEN_LOCAL = f"{LOOPBACK_BIND}:*"
LISTEN_PUBLIC = f"{PUBLIC_BIND}:*"
NO_LOCAL_FORWARD = "invalid.invalid:1"
FORCED_COMMAND = "/bin/false"
DEFAULT_REMOTE_FILE = ".ssh/authorized_keys"  # relative: sshd starts commands in the home dir
# The remote path travels inside a shell command, so only plain path characters are allowed.
_SAFE_REMOTE_PATH = re.compile(r"^[A-Za-z0-9._/-]+$")


@dataclass(frozen=True)
class SetupKey:
    """A dedicated key on disk; ``created`` is False when an earlier one is reused."""

    name: str
    path: Path
    public_line: str  # "ssh-ed25519 AAAA… safetunnel-NAME"
    created: bool


def key_path(name: str) -> Path:
    """Where the key for profile NAME lives: ``<config dir>/keys/NAME_ed25519``."""
    return paths.config_dir() / "keys" / f"{name}_ed25519"


def authorized_line(public_line: str, allow_public: bool = False) -> str:
    """The authorized_keys line that allows only safetunnel's remote forward (see module doc)."""
    listens = [LISTEN_LOCAL] + ([LISTEN_PUBLIC] if allow_public else [])
    options = ["restrict", "port-forwarding"]
    options += [f'permitlisten="{listen}"' for listen in listens]
    options += [f'permitopen="{NO_LOCAL_FORWARD}"', f'command="{FORCED_COMMAND}"']
    return ",".join(options) + " " + public_line


def new_passphrase() -> str:
    """256 random bits; it only ever lives in the keyring."""
    return secrets.token_urlsafe(32)


def create_key(name: str, passphrase: str | None) -> SetupKey:
    """Write a new Ed25519 key (0600 in a 0700 dir) and its .pub; never overwrites."""
    path = key_path(name)
    fsutil.ensure_private_dir(path.parent)
    private = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
        if passphrase
        else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption
    )
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    line = f"{public} safetunnel-{name}"
    try:
        fsutil.create_exclusive(path, pem)
    except FileExistsError:
        raise ConfigError(
            f"{path} already exists; a key is never overwritten",
            hint=f"Run `safetunnel hosts setup-key {name}` again to reuse it, or "
            "move the file away to make a new one.",
        ) from None
    pub = path.with_name(path.name + ".pub")
    pub.unlink(missing_ok=True)  # a stale .pub without its key would describe another key
    fsutil.create_exclusive(pub, (line + "\n").encode())
    return SetupKey(name=name, path=path, public_line=line, created=True)


def existing_key(name: str) -> SetupKey | None:
    """The key made earlier for NAME (reused, never regenerated), or None."""
    path = key_path(name)
    pub = path.with_name(path.name + ".pub")
    if not path.exists():
        return None
    try:
        line = pub.read_text().strip()
    except OSError as err:
        raise ConfigError(
            f"{path} exists but its public half {pub} cannot be read: {err.strerror}",
            hint="Move both files away and run setup-key again.",
        ) from err
    return SetupKey(name=name, path=path, public_line=line, created=False)


def prepare_key(name: str, store: KeyringStore | None) -> SetupKey:
    """Reuse NAME's key, or make one: encrypted with a passphrase kept in ``store``, or
    unencrypted when ``store`` is None (the caller has warned). Nothing is left half made."""
    found = existing_key(name)
    if found is not None:
        return found
    passphrase = new_passphrase() if store is not None else None
    key = create_key(name, passphrase)
    if store is not None and passphrase is not None:
        try:
            store.set(SecretName.passphrase(str(key.path)), passphrase)
        except BaseException:
            # Without its passphrase the new key is useless; we made it, so we remove it.
            key.path.unlink(missing_ok=True)
            key.path.with_name(key.path.name + ".pub").unlink(missing_ok=True)
            raise
    return key


def install_command(remote_file: str = DEFAULT_REMOTE_FILE) -> str:
    """The remote command that appends one line (read from stdin) unless it is already there.

    It runs under ``/bin/sh`` whatever the login shell is; the line comes on stdin, so nothing
    but a fixed script and the file name is in the remote argv. umask 077 gives the 0700 dir
    and 0600 file that sshd's StrictModes wants; a missing final newline is repaired first.
    """
    if not _SAFE_REMOTE_PATH.match(remote_file) or ".." in remote_file.split("/"):
        raise ConfigError(f"unsafe remote authorized_keys path {remote_file!r}")
    script = (
        'umask 077; f="$1"; mkdir -p -- "$(dirname -- "$f")" || exit 1; '
        "IFS= read -r line || exit 1; "
        'if [ -f "$f" ] && grep -qxF -- "$line" "$f"; then echo present; exit 0; fi; '
        'if [ -s "$f" ] && [ -n "$(tail -c 1 -- "$f")" ]; then echo >> "$f"; fi; '
        'printf "%s\\n" "$line" >> "$f" && echo added'
    )
    return f"exec /bin/sh -c {shlex.quote(script)} safetunnel-install {remote_file}"


def install_line(
    transport: paramiko.Transport,
    line: str,
    remote_file: str = DEFAULT_REMOTE_FILE,
    timeout: float = 20.0,
) -> str:
    """Run :func:`install_command` over an authenticated transport; "added" or "present"."""
    command = install_command(remote_file)
    channel = transport.open_session(timeout=timeout)
    try:
        channel.settimeout(timeout)
        channel.exec_command(command)
        channel.sendall((line + "\n").encode())
        channel.shutdown_write()
        out = channel.makefile("rb").read().decode(errors="replace").strip()
        err = channel.makefile_stderr("rb").read().decode(errors="replace").strip()
        status = channel.recv_exit_status()
    except (paramiko.SSHException, OSError) as exc:
        raise SSHError(f"installing the key failed: {exc}") from exc
    finally:
        channel.close()
    if status != 0 or out not in ("added", "present"):
        raise SSHError(
            f"installing the key failed (exit {status}): {err or out or 'no output'}",
            hint="Append the printed line to ~/.ssh/authorized_keys on the host by hand.",
        )
    return out
