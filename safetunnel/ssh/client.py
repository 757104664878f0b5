"""Connecting with paramiko: TCP, key exchange, the host-key check and authentication.

What comes back is an :class:`~safetunnel.ssh.session.SSHSession`, the paramiko engine's
session (forward, keepalive watchdog, close).
"""

from __future__ import annotations

from collections.abc import Callable

import paramiko

from safetunnel.addresses import format_hostport
from safetunnel.errors import HostKeyChanged, HostKeyUnknown
from safetunnel.ssh._auth import AuthSource, authenticate
from safetunnel.ssh._transport import TunedTransport, connect_socket
from safetunnel.ssh.engine import HostKeyState
from safetunnel.ssh.handshake import run_handshake
from safetunnel.ssh.hostkeys import HostKeyStore, fingerprint
from safetunnel.ssh.session import SSHSession
from safetunnel.ssh.target import SSHTarget, refuse_proxy

HostKeyPrompt = Callable[[SSHTarget, str, str], bool]


def _prefer_key_types(transport: paramiko.Transport, types: tuple[str, ...]) -> None:
    """Ask for the host key types we already pin, first (as OpenSSH does), so a server that
    still has its pinned key is never mistaken for a changed one."""
    wanted: list[str] = []
    for name in types:
        wanted += ["rsa-sha2-512", "rsa-sha2-256"] if name == "ssh-rsa" else [name]
    options = transport.get_security_options()
    current = list(options.key_types)
    first = [name for name in wanted if name in current]
    options.key_types = tuple(first + [name for name in current if name not in first])


def _verify_host_key(
    target: SSHTarget,
    transport: paramiko.Transport,
    hostkeys: HostKeyStore | None,
    on_unknown_key: HostKeyPrompt | None,
    expected_key: paramiko.PKey | None,
) -> HostKeyState:
    key = transport.get_remote_server_key()
    got = fingerprint(key)
    if expected_key is not None:
        if key.asbytes() != expected_key.asbytes():
            raise HostKeyChanged(
                f"The built-in gateway presented {key.get_name()} {got}, "
                f"expected {fingerprint(expected_key)}."
            )
        return "builtin"
    if hostkeys is not None and hostkeys.check(target.hostname, target.port, key) == "known":
        return "pinned"
    host = target.label or target.display
    if on_unknown_key is None:
        raise HostKeyUnknown(
            f"The host key of {target.display} is not known: {key.get_name()} {got}",
            hint=f"Check the fingerprint with the host's administrator, then run "
            f"`safetunnel hosts trust {host} --fingerprint {got}`.",
        )
    if not on_unknown_key(target, key.get_name(), got):
        raise HostKeyUnknown(f"The host key of {target.display} ({got}) was not trusted.")
    if hostkeys is not None:
        hostkeys.pin(target.hostname, target.port, key)
    return "newly-trusted"


def fetch_host_key(
    target: SSHTarget, hostkeys: HostKeyStore | None, timeout: float = 10.0
) -> paramiko.PKey:
    """The server's host key, from a handshake only: nothing is authenticated or sent.

    Used by ``hosts trust``. It goes through the same transport as :func:`open_session` (same
    algorithm policy, timeouts and preferred key types), so the key shown is the key a share
    will be offered later.
    """
    transport = _handshake(target, hostkeys, None, timeout)
    try:
        key: paramiko.PKey = transport.get_remote_server_key()
        return key
    finally:
        transport.close()


def _handshake(
    target: SSHTarget,
    hostkeys: HostKeyStore | None,
    expected_key: paramiko.PKey | None,
    timeout: float,
) -> TunedTransport:
    """TCP connect and SSH key exchange, preferring the host key types already pinned (as
    OpenSSH does), so that a pinned host is not offered a key of another type first. A far end
    that is not an SSH server is an SSHError that says what it did (see run_handshake)."""
    refuse_proxy(target)
    transport = TunedTransport(connect_socket(target.hostname, target.port, timeout), timeout)
    try:
        if expected_key is not None:
            _prefer_key_types(transport, (expected_key.get_name(),))
        elif hostkeys is not None:
            _prefer_key_types(transport, hostkeys.known_types(target.hostname, target.port))
    except BaseException:
        transport.close()
        raise
    run_handshake(transport, format_hostport(target.hostname, target.port), timeout)
    return transport


def open_session(
    target: SSHTarget,
    *,
    hostkeys: HostKeyStore | None,
    on_unknown_key: HostKeyPrompt | None,
    auth: AuthSource | None,
    client_key: paramiko.PKey | None = None,
    expected_key: paramiko.PKey | None = None,
    timeout: float = 10.0,
) -> SSHSession:
    """Connect and authenticate. ``expected_key`` trusts exactly that host key (built-in
    gateway) and skips the files; otherwise ``hostkeys`` decides and ``on_unknown_key`` asks.

    Raises HostKeyUnknown/HostKeyChanged (4), AuthFailed (5) or SSHError (1).
    """
    transport = _handshake(target, hostkeys, expected_key, timeout)
    try:
        state = _verify_host_key(target, transport, hostkeys, on_unknown_key, expected_key)
        authenticate(transport, target, auth, client_key)
    except BaseException:
        transport.close()
        raise
    return SSHSession(transport, target, state, timeout)


def open_pinned_session(
    target: SSHTarget,
    host_key: str,
    key_type: str,
    auth: AuthSource | None,
    timeout: float = 10.0,
) -> SSHSession:
    """Connect and authenticate, trusting exactly the host key with fingerprint ``host_key``.

    For a recipient of a ticket: the ticket is the trust anchor, so no known_hosts file is read
    or written and nobody is asked; any other key is HostKeyChanged (exit 4), before a single
    credential is offered. ``key_type`` ("" when unknown) is asked for first, so a server with
    several host keys shows the pinned one.
    """
    refuse_proxy(target)
    transport = TunedTransport(connect_socket(target.hostname, target.port, timeout), timeout)
    try:
        if key_type:
            _prefer_key_types(transport, (key_type,))
        run_handshake(transport, format_hostport(target.hostname, target.port), timeout)
        key = transport.get_remote_server_key()
        if fingerprint(key) != host_key:
            raise HostKeyChanged(
                f"{target.display} showed the host key {key.get_name()} {fingerprint(key)}, "
                f"but the ticket names {host_key}. Someone may be intercepting the connection.",
                hint="Nothing was sent. Check the host with the sharer, or ask for a new ticket.",
            )
        authenticate(transport, target, auth, None)
    except BaseException:
        transport.close()
        raise
    return SSHSession(transport, target, "pinned", timeout)


__all__ = [
    "AuthSource",
    "HostKeyPrompt",
    "SSHSession",
    "fetch_host_key",
    "open_pinned_session",
    "open_session",
]
