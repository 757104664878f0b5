"""Key helpers paramiko lacks: generating Ed25519 keys, in memory or once on disk."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safetunnel.fsutil import create_exclusive, ensure_private_dir


def _new_openssh_pem() -> str:
    private = Ed25519PrivateKey.generate()
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode("ascii")


def generate_ed25519() -> paramiko.Ed25519Key:
    """A fresh Ed25519 key that never touches the disk (ephemeral gateway host/client keys).

    paramiko can load Ed25519 keys but not generate them, so the key is made by cryptography and
    handed over in OpenSSH's private key format.
    """
    return paramiko.Ed25519Key(file_obj=io.StringIO(_new_openssh_pem()))


def load_or_create_host_key(path: Path) -> paramiko.Ed25519Key:
    """The standalone gateway's host key: made once (0600, O_EXCL), then reused.

    A stable host key is what lets clients pin it; an ephemeral one would train users to accept
    unknown keys.
    """
    if not path.exists():
        ensure_private_dir(path.parent)
        # FileExistsError: another gateway process made it first; use theirs.
        with contextlib.suppress(FileExistsError):
            create_exclusive(path, _new_openssh_pem().encode("ascii"))
    return paramiko.Ed25519Key.from_private_key_file(str(path))
