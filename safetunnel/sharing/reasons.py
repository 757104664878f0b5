"""Why a tunnel stopped: one vocabulary, with the exit code and the human text of each reason.

The values are the ``reason`` of the ``stopped`` JSON event and of the audit log, so they are part
of the published interface and never change spelling.
"""

from __future__ import annotations

from enum import StrEnum


class StopReason(StrEnum):
    """The first reason given to :meth:`Tunnel.request_stop`; later ones are ignored."""

    TTL = "ttl"
    IDLE = "idle"
    KILLED = "killed"
    SIGNAL = "signal"
    SSH_LOST = "ssh-lost"
    MAX_FAILURES = "max-failures"
    ERROR = "error"
    AUDIT_FAILED = "audit-failed"

    @property
    def exit_code(self) -> int:
        """What ``safetunnel share`` exits with when the tunnel ended for this reason."""
        return _TABLE[self][0]

    @property
    def text(self) -> str:
        """Completes "the tunnel stopped because ..."."""
        return _TABLE[self][1]


# Ending on schedule or on request is success; losing the SSH connection has its own code so
# scripts can tell "retry later" from "something is wrong"; everything else is a plain failure.
_TABLE: dict[StopReason, tuple[int, str]] = {
    StopReason.TTL: (0, "the time limit was reached"),
    StopReason.IDLE: (0, "the idle limit was reached"),
    StopReason.KILLED: (0, "it was killed"),
    StopReason.SIGNAL: (0, "a signal asked it to"),
    StopReason.SSH_LOST: (8, "the SSH connection was lost"),
    StopReason.MAX_FAILURES: (1, "too many refused attempts (--max-failures)"),
    StopReason.ERROR: (1, "an error"),
    # A plain failure (1): nothing the user asked for, and no retry helps until the state dir
    # is fixed; the codes 2-8 already mean something else to scripts.
    StopReason.AUDIT_FAILED: (1, "its audit log could not be written"),
}
