"""Stand-in for the askpass helper's environment: no secrets reach OpenSSH yet."""

from __future__ import annotations

from safetunnel.ssh.target import SSHTarget


def askpass_env(target: SSHTarget) -> dict[str, str]:
    """The environment that lets ``ssh`` ask safetunnel's helper for ``target``'s secrets."""
    return {}
