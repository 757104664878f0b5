"""Which SSH engine carries a share, and connecting through the OpenSSH one.

The built-in gateway is always reached with paramiko: it lives in this process, with a host key
and a client key that exist only in memory, where OpenSSH's client could not use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from safetunnel.errors import ConfigError
from safetunnel.hosts.config import Config
from safetunnel.secrets.names import SecretName
from safetunnel.sharing.options import EngineChoice
from safetunnel.ssh import openssh
from safetunnel.ssh.client import HostKeyPrompt, SSHSession
from safetunnel.ssh.openssh.connect import open_openssh_session
from safetunnel.ssh.openssh.engine import OpenSSHSession
from safetunnel.ssh.target import SSHTarget

Engine = Literal["openssh", "paramiko"]
ShareSession = SSHSession | OpenSSHSession


def choose_engine(requested: EngineChoice | None, config: Config, builtin: bool) -> Engine:
    """The engine for one share: ``--engine``, else config.toml's ``engine``, else auto.

    ``auto`` prefers OpenSSH: it reaches every host that ``ssh HOST`` reaches (ProxyJump,
    certificates, agents, the whole ssh_config) and carries the bytes at OpenSSH's speed.
    paramiko remains the fallback when no ssh client of the needed version is on PATH.
    """
    if builtin:
        return "paramiko"
    choice = requested or config.engine
    if choice == "paramiko":
        return "paramiko"
    if openssh.usable():
        return "openssh"
    if choice == "openssh":
        found = openssh.openssh_version()
        have = "no ssh client on PATH" if found is None else f"ssh is OpenSSH {found[0]}.{found[1]}"
        raise ConfigError(
            f"--engine openssh needs OpenSSH {'.'.join(map(str, openssh.MIN_VERSION))} or newer"
            f" ({have}).",
            hint="Install or update the OpenSSH client, or use --engine paramiko.",
        )
    return "paramiko"


def open_openssh(
    target: SSHTarget,
    known_hosts: str | None,
    prompt: HostKeyPrompt | None,
    keepalive: float,
    remembered: dict[SecretName, str] | None = None,
) -> OpenSSHSession:
    """Connect with OpenSSH, checking host keys against the user's files (or ``known_hosts``);
    safetunnel's own file is always added by the OpenSSH options. ``remembered``: secrets
    typed earlier for the askpass helper; the ones typed now are added to it."""
    files = [Path(known_hosts)] if known_hosts else []
    return open_openssh_session(
        target,
        known_hosts=files,
        on_unknown_key=prompt,
        keepalive=keepalive,
        remembered=remembered,
    )
