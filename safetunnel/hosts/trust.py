"""``hosts trust``: fetch a host's key without logging in, and pin it, so a non-interactive share
never meets an unknown key.

The CLI decides *whether* to pin (typed yes, or a matching ``--fingerprint``); this module only
looks the key up, compares and pins, so the decision rules are testable without a terminal.

Two ways to look, as for a share: paramiko's handshake (:func:`inspect_host`), or OpenSSH itself
(:func:`verify_with_openssh`), which reaches the host as ``ssh HOST`` would, through ProxyJump
and ProxyCommand too, and asks about each hop's unknown key in turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import paramiko

from safetunnel import fsutil, paths
from safetunnel.errors import ConfigError, HostKeyError
from safetunnel.hosts.config import load_config
from safetunnel.hosts.resolve import resolve_host
from safetunnel.ssh.client import fetch_host_key
from safetunnel.ssh.hostkeys import HostKeyStore, fingerprint, host_pattern
from safetunnel.ssh.openssh import config as openssh_config
from safetunnel.ssh.openssh.hostkeys import HostKeyPrompt, VerifiedHostKey, verify
from safetunnel.ssh.target import SSHTarget

_PROBE_KEEPALIVE = 15.0  # written into the probe's config; the probe sets its own deadlines


@dataclass(frozen=True)
class HostKeyInfo:
    """What the server presented, and what the known_hosts files say about it.

    ``state`` is "known" (pinned already, in either file) or "unknown"; a changed key never gets
    this far: :meth:`HostKeyStore.check` raises HostKeyChanged (exit 4), with no override.
    """

    target: SSHTarget
    key: paramiko.PKey
    state: Literal["known", "unknown"]
    store: HostKeyStore

    @property
    def algorithm(self) -> str:
        return self.key.get_name()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)

    @property
    def name(self) -> str:
        """The known_hosts name the key is (or will be) pinned under."""
        return host_pattern(self.target.hostname, self.target.port)


def target_for(host: str) -> SSHTarget:
    """Resolve HOST like ``share`` does (profile, ~/.ssh/config alias, literal)."""
    target = resolve_host(host, load_config())
    if target is None:  # only happens for an empty text; the CLI always passes HOST
        raise ConfigError("hosts trust needs a HOST")
    return target


def inspect_host(host: str, known_hosts: Path | None = None, timeout: float = 10.0) -> HostKeyInfo:
    """Resolve HOST like ``share`` does, fetch its key with paramiko's handshake."""
    target = target_for(host)
    store = HostKeyStore(known_hosts, paths.own_known_hosts())
    key = fetch_host_key(target, store, timeout)
    state = store.check(target.hostname, target.port, key)
    return HostKeyInfo(target=target, key=key, state=state, store=store)


def normalize_fingerprint(text: str) -> str:
    """``SHA256:abc`` as OpenSSH prints it; also accepts the form without prefix or padding."""
    value = text.strip()
    if value.upper().startswith("SHA256:"):
        value = value[len("SHA256:") :]
    elif ":" in value:
        raise ConfigError(
            f"{text!r} is not a SHA256 fingerprint",
            hint="Use the SHA256:… form that `ssh-keygen -lf` prints "
            "(MD5 fingerprints are not accepted).",
        )
    return "SHA256:" + value.rstrip("=")


def check_fingerprint(info: HostKeyInfo, expected: str) -> None:
    """HostKeyError (exit 4) unless the presented key has exactly the expected fingerprint."""
    wanted = normalize_fingerprint(expected)
    if wanted != info.fingerprint:
        raise HostKeyError(
            f"{info.target.display} presented {info.algorithm} {info.fingerprint}, not the "
            f"expected {wanted}. Nothing was pinned.",
            hint="Check the fingerprint with the host's administrator; a mismatch can mean "
            "someone is intercepting the connection.",
        )


def pin(info: HostKeyInfo) -> Path:
    """Append the key to safetunnel's own known_hosts; returns that file."""
    info.store.pin(info.target.hostname, info.target.port, info.key)
    return info.store.own_known_hosts


def verify_with_openssh(
    target: SSHTarget, known_hosts: Path | None, decide: HostKeyPrompt
) -> VerifiedHostKey:
    """Check every hop's key with OpenSSH; ``decide(hop, key_type, fingerprint)`` is asked about
    each unknown one (and raises to refuse loudly), and a key it accepts is pinned in
    safetunnel's own known_hosts. A changed key is HostKeyChanged (exit 4), as everywhere."""
    files = [known_hosts] if known_hosts else []
    options = openssh_config.ssh_options(target, known_hosts=files, keepalive=_PROBE_KEEPALIVE)
    return verify(target, known_hosts=files, on_unknown_key=decide, options=options)


def unpin(name: str) -> list[str]:
    """Remove the lines for ``name`` from safetunnel's own known_hosts (never the user's);
    returns them, so that :func:`restore` can put them back when the new key is not pinned."""
    path = paths.own_known_hosts()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    removed = [line for line in lines if name in line.split(" ", 1)[0].split(",")]
    if removed:
        kept = [line for line in lines if line not in removed]
        fsutil.atomic_write(path, "".join(line + "\n" for line in kept).encode())
    return removed


def restore(lines: list[str]) -> None:
    """Put back what :func:`unpin` removed."""
    for line in lines:
        fsutil.append_line(paths.own_known_hosts(), line)
