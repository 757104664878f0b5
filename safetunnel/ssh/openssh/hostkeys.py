"""Stand-in for the OpenSSH engine's host-key check before the control master connects.

It asks the server for its key the way the paramiko engine does and decides with the same
store: pinned, unknown (the prompt may pin it after a typed yes) or changed. The master then
runs with ``StrictHostKeyChecking=yes`` against the same files, so it connects only to a key
found there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from safetunnel.errors import HostKeyUnknown
from safetunnel.ssh.client import fetch_host_key
from safetunnel.ssh.engine import HostKeyState
from safetunnel.ssh.hostkeys import HostKeyStore, fingerprint
from safetunnel.ssh.target import SSHTarget

HostKeyPrompt = Callable[[SSHTarget, str, str], bool]


def verify(
    target: SSHTarget,
    *,
    known_hosts: Sequence[Path],
    on_unknown_key: HostKeyPrompt | None,
) -> tuple[HostKeyState, str, str]:
    """(state, ``SHA256:`` fingerprint, key type); HostKeyUnknown/HostKeyChanged (exit 4)."""
    store = HostKeyStore(known_hosts[0], known_hosts[-1])
    key = fetch_host_key(target, store)
    got = fingerprint(key)
    if store.check(target.hostname, target.port, key) == "known":
        return "pinned", got, key.get_name()
    host = target.label or target.display
    if on_unknown_key is None:
        raise HostKeyUnknown(
            f"The host key of {target.display} is not known: {key.get_name()} {got}",
            hint=f"Check the fingerprint with the host's administrator, then run "
            f"`safetunnel hosts trust {host} --fingerprint {got}`.",
        )
    if not on_unknown_key(target, key.get_name(), got):
        raise HostKeyUnknown(f"The host key of {target.display} ({got}) was not trusted.")
    store.pin(target.hostname, target.port, key)
    return "newly-trusted", got, key.get_name()
