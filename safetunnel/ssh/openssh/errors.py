"""What ``ssh`` said on stderr, as safetunnel's error with its exit code and a hint.

``ssh`` reports everything with exit status 255, so the text is all there is. The phrases matched
here are OpenSSH's own, stable for many releases; anything unrecognised is an :class:`SSHError`
that quotes ssh's last lines, never a silent success.
"""

from __future__ import annotations

import re
import shlex

from safetunnel.addresses import format_hostport
from safetunnel.errors import (
    AuthFailed,
    ConfigError,
    ForwardRefused,
    HostKeyChanged,
    HostKeyUnknown,
    SafetunnelError,
    SSHError,
)
from safetunnel.ssh import handshake
from safetunnel.ssh.openssh.askpass import Answer
from safetunnel.ssh.target import SSHTarget

CHANGED = ("REMOTE HOST IDENTIFICATION HAS CHANGED", "REVOKED HOST KEY", "has changed and you have")
UNKNOWN = ("Host key verification failed",)
AUTH = ("Permission denied", "Too many authentication failures", "No more authentication methods")
FORWARD = ("remote port forwarding failed", "Could not request remote forwarding")
# How ssh reports a far end that is not (or stopped being) an SSH server. The remote software
# version is logged at DEBUG1, which the engine's ssh processes run at.
_CONNECT = re.compile(r"^ssh: connect to host (\S+) port (\d+): (.+)$", re.MULTILINE)
_UNRESOLVED = re.compile(r"^ssh: Could not resolve hostname (\S+?): (.+)$", re.MULTILINE)
_CONNECT_HINT = "Check the host name and port, and that sshd is running there."
_GREETING = re.compile(
    r"Remote protocol version (\S+), remote software version (.*)$", re.MULTILINE
)
_NO_GREETING = "Connection timed out during banner exchange"
_CLOSED = ("Connection closed by", "Connection reset by", "Broken pipe")
_TIMED_OUT = re.compile(r"^Connection to \S+ port \d+ timed out", re.MULTILINE)
_NOT_SSH = ("kex_exchange_identification: banner line", "invalid format", "too many")
CONFIG = ("Bad owner or permissions", "Bad configuration option", "Can't open user config")


# ssh's own advice for a changed key (edit known_hosts by hand): safetunnel's hint says what to
# do instead, and quoting both would contradict it.
_ADVICE = ("remove with:", "ssh-keygen -f ", "Add correct host key in", "Please contact your")


def ssh_lines(stderr: str, count: int = 3) -> str:
    """ssh's last messages, without its debug chatter, banners and advice, for an error."""
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip()
        and not line.startswith(("debug", "@@@"))
        and not line.strip().startswith(_ADVICE)
    ]
    return " / ".join(lines[-count:]) or "no message"


def without_debug(stderr: str) -> str:
    """ssh's own messages only: a server's debug messages (``debug1: Remote: ...``) are text
    the far end chose, so no decision is made on them."""
    return "\n".join(line for line in stderr.splitlines() if not line.startswith("debug"))


def _has(stderr: str, phrases: tuple[str, ...]) -> bool:
    return any(phrase in stderr for phrase in phrases)


def connection_fault(stderr: str, target: SSHTarget, timeout: float) -> SSHError | None:
    """What the far end did, when ssh never got through the key exchange: the same sentences
    as the paramiko engine's; None when ssh's messages describe something else."""
    connect = _CONNECT.search(stderr)
    if connect is not None:
        host, port, reason = connect.groups()
        if "timed out" in reason:
            return SSHError(handshake.no_answer(format_hostport(host, int(port)), timeout))
        return SSHError(f"Cannot connect to {host} port {port}: {reason}", hint=_CONNECT_HINT)
    unresolved = _UNRESOLVED.search(stderr)
    if unresolved is not None:  # ssh names no port here; the paramiko engine's words do
        host, reason = unresolved.groups()
        text = f"Cannot connect to {host} port {target.port}: {reason}"
        return SSHError(text, hint=_CONNECT_HINT)
    display = format_hostport(target.hostname, target.port)
    if _NO_GREETING in stderr:
        return SSHError(handshake.silent(display, timeout), hint=handshake.HINT)
    greeting = _GREETING.search(stderr)
    if "SSH2_MSG_NEWKEYS received" in stderr:
        return None  # past the key exchange: not a greeting or kex fault
    if greeting is None:
        if "kex_exchange_identification:" not in stderr:
            return None
        said = handshake.not_ssh(display) if _has(stderr, _NOT_SSH) else None
        return SSHError(said or handshake.closed_before_greeting(display), hint=handshake.HINT)
    hello = f"SSH-{greeting.group(1)}-{greeting.group(2).strip()}"
    if _TIMED_OUT.search(stderr):
        text = handshake.stalled_after_greeting(display, hello, timeout)
        return SSHError(text, hint=handshake.HINT)
    if _has(stderr, _CLOSED):
        return SSHError(handshake.closed_during_kex(display, hello), hint=handshake.HINT)
    return None


def errors_from_ssh(
    stderr: str, target: SSHTarget, timeout: float = handshake.HANDSHAKE_TIMEOUT
) -> SafetunnelError:
    """The error that ``ssh``'s stderr describes, checked from the most to the least serious."""
    host = target.label or target.display
    said = ssh_lines(stderr)
    fault = connection_fault(stderr, target, timeout)
    stderr = without_debug(stderr)
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
    if fault is not None:
        return fault
    if _has(stderr, FORWARD):
        return ForwardRefused(f"{target.display} refused the remote forward ({said}).")
    if _has(stderr, CONFIG):
        return ConfigError(f"ssh cannot use its configuration for {host}: {said}")
    return SSHError(f"ssh to {target.display} failed: {said}")


def login_failure(lines: list[str], target: SSHTarget, answers: list[Answer]) -> SafetunnelError:
    """Why the master exited before it was logged in, from its last lines and what the askpass
    helper noted: a stored secret that was offered and refused is named, as on paramiko (ssh
    asks for each secret once, so an offered one that did not log in was refused)."""
    error = errors_from_ssh("\n".join(lines), target)
    if not isinstance(error, AuthFailed):
        return error
    host = target.label or target.display
    stored = [answer for answer in answers if answer.source == "stored"]
    if stored:
        kind, _, subject = stored[-1]
        extra = f" --passphrase-for {shlex.quote(subject)}" if kind == "passphrase" else ""
        return AuthFailed(
            f"The stored {kind} for {subject} was rejected. {error.message}",
            hint=f"Replace it with `safetunnel creds set {host}{extra}`.",
        )
    # ssh asks for a secret again only when the answer before was wrong.
    wrong = [
        answer
        for i, answer in enumerate(answers)
        if answer.source == "typed"
        and any((a.kind, a.subject) == (answer.kind, answer.subject) for a in answers[i + 1 :])
    ]
    if wrong:
        kind, _, subject = wrong[-1]
        return AuthFailed(f"Wrong {kind} for {subject}. {error.message}", hint=error.hint)
    # As the paramiko engine says it: which key could not be unlocked, and why no keyring.
    locked = [a.subject for a in answers if (a.kind, a.source) == ("passphrase", "none")]
    said = [f"Tried: {subject} (encrypted, no passphrase available)." for subject in locked[-1:]]
    said += [answer.subject for answer in answers if answer.source == "unusable"][-1:]
    if said:
        return AuthFailed(" ".join([error.message, *said]), hint=error.hint)
    return error
