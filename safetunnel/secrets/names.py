"""The keyring's names for safetunnel's secrets, as one value. Pure.

A secret is stored under service ``safetunnel`` and a username of one of two forms:
``password:<user>@<host>:<port>`` (IPv6 hosts in brackets, so the port stays readable) and
``passphrase:<absolute key path>``. Everything that reads, writes or reports a secret builds its
name here, so the auth chain's "this one was rejected" names exactly the entry the keystore holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from safetunnel.addresses import format_hostport

SecretKind = Literal["password", "passphrase"]


@dataclass(frozen=True)
class SecretName:
    """One secret's name. ``subject`` is ``user@host:port`` or the key's absolute path."""

    kind: SecretKind
    subject: str

    @classmethod
    def password(cls, user: str, host: str, port: int) -> SecretName:
        """The SSH password of ``user`` on ``host:port``."""
        return cls("password", f"{user}@{format_hostport(host, port)}")

    @classmethod
    def passphrase(cls, key_path: str) -> SecretName:
        """A private key's passphrase; the path is made absolute (``~`` expanded) so that every
        spelling of the same file finds the same entry."""
        return cls("passphrase", os.path.abspath(os.path.expanduser(key_path)))

    @property
    def username(self) -> str:
        """The keyring username, exactly as stored."""
        return f"{self.kind}:{self.subject}"

    def __str__(self) -> str:
        return self.username
