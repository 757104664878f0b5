"""What ``ssh`` said on stderr, as safetunnel's error with its exit code and a hint.

``ssh`` reports everything with exit status 255, so the text is all there is. The phrases matched
here are OpenSSH's own, stable for many releases; anything unrecognised is an :class:`SSHError`
that quotes ssh's last lines, never a silent success.
"""

from __future__ import annotations

from safetunnel.errors import (
    AuthFailed,
    ConfigError,
    ForwardRefused,
    HostKeyChanged,
    HostKeyUnknown,
    SafetunnelError,
    SSHError,
)
from safetunnel.ssh.target import SSHTarget

CHANGED = ("REMOTE HOST IDENTIFICATION HAS CHANGED", "REVOKED HOST KEY", "has changed and you have")
UNKNOWN = ("Host key verification failed",)
AUTH = ("Permission denied", "Too many authentication failures", "No more authentication methods")
FORWARD = ("remote port forwarding failed", "Could not request remote forwarding")
CONFIG = ("Bad owner or permissions", "Bad configuration option", "Can't open user config")


def ssh_lines(stderr: str, count: int = 3) -> str:
    """ssh's last messages, without its debug chatter and banners, for an error message."""
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("debug") and not line.startswith("@@@")
    ]
    return " / ".join(lines[-count:]) or "no message"


def _has(stderr: str, phrases: tuple[str, ...]) -> bool:
    return any(phrase in stderr for phrase in phrases)


def errors_from_ssh(stderr: str, target: SSHTarget) -> SafetunnelError:
    """The error that ``ssh``'s stderr describes, checked from the most to the least serious."""
    host = target.label or target.display
    said = ssh_lines(stderr)
    if _has(stderr, CHANGED):
        return HostKeyChanged(
            f"HOST KEY CHANGED or revoked for {target.display}: ssh refused it ({said}). "
            "Someone may be intercepting the connection.",
            hint="safetunnel will not connect. Verify the key with the host's administrator; only"
            " if the host was really reinstalled, remove the old line from your known_hosts.",
        )
    if _has(stderr, UNKNOWN):
        return HostKeyUnknown(
            f"The host key of {target.display} is not known ({said}).",
            hint=f"Check the fingerprint with the host's administrator, then run "
            f"`safetunnel hosts trust {host}`.",
        )
    if _has(stderr, AUTH):
        return AuthFailed(
            f"SSH authentication to {target.display} failed ({said}).",
            hint="Install your public key on the host, pass --identity FILE, store a password "
            f"with `safetunnel creds set {host}`, or a key's passphrase with `safetunnel creds "
            f"set {host} --passphrase-for KEYFILE`.",
        )
    if _has(stderr, FORWARD):
        return ForwardRefused(f"{target.display} refused the remote forward ({said}).")
    if _has(stderr, CONFIG):
        return ConfigError(f"ssh cannot use its configuration for {host}: {said}")
    return SSHError(f"ssh to {target.display} failed: {said}")
