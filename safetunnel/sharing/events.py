"""What a running tunnel reports, as values: one frozen dataclass per kind of event.

``to_json()`` gives the exact dict that ``share --json`` prints one per line and that the audit
log records, key order included, so scripts that read either keep working. ``parse`` is the
inverse, for code that gets an event back as JSON (the ``--background`` foreground, and callers
that still build dicts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from safetunnel.sharing.reasons import StopReason


@dataclass(frozen=True)
class Started:
    """The forward is up and the tunnel is published; ``token`` is None with a token file."""

    id: str
    pid: int
    local: str
    ssh_host: str
    remote_bind: str
    remote_port: int
    protocol: str
    token: str | None
    started_at: str
    expires_at: str
    url: str
    engine: str | None = None  # "openssh" or "paramiko"; None leaves the key out
    ticket: str | None = None  # a secret like the token; None leaves the key out
    tls_pin: str | None = None  # the served key's pin (a made certificate); None leaves it out

    kind: ClassVar[str] = "started"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.kind, "id": self.id, "pid": self.pid}
        out |= {"local": self.local, "ssh_host": self.ssh_host, "remote_bind": self.remote_bind}
        out |= {"remote_port": self.remote_port, "protocol": self.protocol}
        if self.token is not None:
            out["token"] = self.token
        out |= {"started_at": self.started_at, "expires_at": self.expires_at, "url": self.url}
        if self.engine is not None:  # last: scripts that read the keys in order keep working
            out["engine"] = self.engine
        if self.ticket is not None:
            out["ticket"] = self.ticket
        if self.tls_pin is not None:
            out["tls_pin"] = self.tls_pin
        return out


@dataclass(frozen=True)
class Connection:
    """The gate decided about one connection (``reason`` says why it was refused)."""

    id: str
    origin: str
    protocol: str
    allowed: bool
    reason: str | None = None
    recipient: str = ""  # whose token let it in: a name, never the token

    kind: ClassVar[str] = "connection"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.kind, "id": self.id, "origin": self.origin}
        out |= {"protocol": self.protocol, "allowed": self.allowed}
        if not self.allowed:
            out["reason"] = self.reason
        if self.recipient:
            out["recipient"] = self.recipient
        return out


@dataclass(frozen=True)
class ConnectionClosed:
    """One connection ended; what the audit log keeps about it."""

    id: str
    origin: str
    protocol: str
    allowed: bool
    reason: str
    bytes_in: int
    bytes_out: int
    duration: float
    recipient: str = ""  # a name, and only for a connection that showed a token

    kind: ClassVar[str] = "connection-closed"

    def to_json(self) -> dict[str, Any]:
        out = {"event": self.kind, **self.__dict__}
        if not self.recipient:
            del out["recipient"]
        return out


@dataclass(frozen=True)
class Request:
    """One HTTP request got its whole answer. ``path`` has no query and only printable ASCII
    (the gate made it so); ``duration`` is in seconds, ``bytes_in`` what reached the service,
    ``bytes_out`` what reached the client."""

    id: str
    method: str
    path: str
    status: int
    duration: float
    bytes_in: int
    bytes_out: int

    kind: ClassVar[str] = "request"

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, **self.__dict__}


@dataclass(frozen=True)
class Warning:  # always used as events.Warning, never bare
    """Something the sharer should know: the tunnel expires soon, or its local service stopped
    (or started again) answering. ``code`` tells the kinds apart for scripts; the expiry warning
    has none, and then the key is left out."""

    id: str
    message: str
    code: str | None = None

    kind: ClassVar[str] = "warning"

    def to_json(self) -> dict[str, Any]:
        out = {"event": self.kind, "id": self.id, "message": self.message}
        if self.code is not None:
            out["code"] = self.code
        return out


@dataclass(frozen=True)
class Reconnecting:
    """The SSH connection was lost (or the last attempt failed); the next attempt comes in
    ``delay`` seconds, for the same remote port. ``error`` is one line saying what failed."""

    id: str
    attempt: int
    remote_port: int
    delay: float
    error: str

    kind: ClassVar[str] = "reconnecting"

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, **self.__dict__}


@dataclass(frozen=True)
class Reconnected:
    """A new SSH session carries the forward again, on the same remote port."""

    id: str
    attempt: int
    remote_port: int

    kind: ClassVar[str] = "reconnected"

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, **self.__dict__}


@dataclass(frozen=True)
class Stopped:
    """The tunnel is down: forward cancelled, connections closed, session closed."""

    id: str
    reason: StopReason
    ended_at: str

    kind: ClassVar[str] = "stopped"

    def to_json(self) -> dict[str, Any]:
        reason = self.reason.value
        return {"event": self.kind, "id": self.id, "reason": reason, "ended_at": self.ended_at}


TunnelEvent = (
    Started
    | Connection
    | ConnectionClosed
    | Request
    | Warning
    | Reconnecting
    | Reconnected
    | Stopped
)
