"""Key helpers paramiko lacks: generating Ed25519 keys in memory."""

from __future__ import annotations

import io

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def generate_ed25519() -> paramiko.Ed25519Key:
    """A fresh Ed25519 key that never touches the disk (ephemeral gateway host/client keys).

    paramiko can load Ed25519 keys but not generate them, so the key is made by cryptography and
    handed over in OpenSSH's private key format.
    """
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode("ascii")
    return paramiko.Ed25519Key(file_obj=io.StringIO(pem))
