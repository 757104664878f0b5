"""The SSH handshake with a deadline of our own, and a failure told as what the far end did.

paramiko's ``start_client(timeout=...)`` returns silently when its time is up, and its errors for
a peer that is not an SSH server are empty (an ``EOFError()``) or name its internals ("No existing
session"). A user who pointed ``--host`` at the wrong port needs one sentence instead: the far end
accepted and said nothing, closed, answered with something that is not SSH, or stopped in the
middle of the key exchange.
"""

from __future__ import annotations

import logging
import threading
import time

import paramiko

from safetunnel.errors import SSHError

# paramiko's own banner and handshake timers must not fire before our deadline: when they do,
# the failure is an empty EOFError that cannot be told apart from the peer closing.
_PARAMIKO_MARGIN = 5.0
HANDSHAKE_TIMEOUT = 10.0  # seconds for TCP connect, greeting and key exchange, on both engines
_SHOWN = 60  # characters of a peer's non-SSH greeting shown back, no more
# paramiko's transport thread logs a failed handshake with its traceback at ERROR; with no
# handler configured, Python's last-resort handler would print it under our one-line error.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
HINT = "Check the host and port: they must be those of an SSH server (sshd)."


def run_handshake(transport: paramiko.Transport, display: str, timeout: float) -> None:
    """Run the key exchange on ``transport``, or raise SSHError saying what the far end did.

    The transport is closed on failure."""
    transport.banner_timeout = timeout + _PARAMIKO_MARGIN
    transport.handshake_timeout = timeout + _PARAMIKO_MARGIN
    done = threading.Event()
    deadline = time.monotonic() + timeout
    transport.start_client(event=done)
    while not done.wait(0.05):
        if not transport.is_active() or time.monotonic() >= deadline:
            break
    if done.is_set() and transport.is_active():
        return
    error = transport.get_exception()
    greeting = transport.remote_version or ""
    _discard(transport)
    raise SSHError(_describe(display, greeting, error, timeout), hint=HINT) from error


def _discard(transport: paramiko.Transport) -> None:
    """Close the transport, and cancel paramiko's handshake timer: it is not a daemon thread, so
    left running it would keep the process alive after the error."""
    transport.packetizer.complete_handshake()
    transport.close()


def _describe(display: str, greeting: str, error: BaseException | None, timeout: float) -> str:
    if error is None:  # our deadline: the far end was silent
        if not greeting:
            return silent(display, timeout)
        return stalled_after_greeting(display, greeting, timeout)
    if not greeting:
        return closed_before_greeting(display) if _closed(error) else not_ssh(display)
    reason = str(error).strip()
    if _closed(error) or not reason:
        return closed_during_kex(display, greeting)
    return f"SSH key exchange with {display} failed: {printable(reason)}"


# What a far end did, in the words both engines use (the OpenSSH engine reads the same faults
# from ssh's messages): one sentence each, naming the address as host:port.


def no_answer(display: str, timeout: float) -> str:
    return f"{display} did not answer within {timeout:g} s"


def silent(display: str, timeout: float) -> str:
    return f"{display} accepted the connection but sent no SSH greeting within {timeout:g} s"


def closed_before_greeting(display: str) -> str:
    return f"{display} closed the connection without sending an SSH greeting"


def not_ssh(display: str) -> str:
    return f"{display} answered, but not with an SSH greeting"


def stalled_after_greeting(display: str, greeting: str, timeout: float) -> str:
    return (
        f"{display} sent an SSH greeting ({printable(greeting)}) but did not complete "
        f"the key exchange within {timeout:g} s"
    )


def closed_during_kex(display: str, greeting: str) -> str:
    return (
        f"{display} closed the connection during the SSH key exchange "
        f"(after its greeting {printable(greeting)})"
    )


def _closed(error: BaseException) -> bool:
    """paramiko wraps the end of input while it reads the greeting in an SSHException."""
    peer_gone = (EOFError, ConnectionError)
    return isinstance(error, peer_gone) or isinstance(error.__context__, peer_gone)


def printable(text: str) -> str:
    """Peer-controlled text made safe to print: no control characters, and short."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return clean if len(clean) <= _SHOWN else clean[:_SHOWN] + "…"
