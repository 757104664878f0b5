"""Shared set-up for tests that run one behaviour on each SSH engine, and with an encrypted key."""

from __future__ import annotations

from pathlib import Path

import paramiko
from conftest import Sandbox
from e2e import public_line
from sshd import SSHD, SSHDFactory

ENGINES = ["openssh", "paramiko"]


def pin_engine(sandbox: Sandbox, engine: str) -> str:
    """Make every share of this sandbox use ``engine``, as a user's config.toml would."""
    sandbox.config_dir.mkdir(mode=0o700, exist_ok=True)
    config = sandbox.config_dir / "config.toml"
    config.write_text(f'engine = "{engine}"\n')
    config.chmod(0o600)
    return engine


def sshd_accepting(sshd_factory: SSHDFactory, key_file: Path, passphrase: str) -> SSHD:
    """A real sshd that lets the user in with the (encrypted) private key in ``key_file``."""
    key = paramiko.Ed25519Key.from_private_key_file(str(key_file), passphrase)
    return sshd_factory(extra_authorized_lines=[public_line(key)])
